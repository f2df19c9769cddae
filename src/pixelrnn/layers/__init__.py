"""The building blocks that every model shares: causal masks with RGB channel groups, masked
convolutions (whole map or one pixel), the LSTM update and its fused scan (CPU kernel or PyTorch)."""

from .masked_conv import MaskedConv2d, PixelConv, masked_1x1
from .masks import causal_mask, channel_groups

__all__ = ["MaskedConv2d", "PixelConv", "causal_mask", "channel_groups", "masked_1x1"]
