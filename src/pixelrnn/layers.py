"""Masked convolutions and the PixelCNN residual block (paper sections 3.4, 3.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .masks import causal_mask, channel_groups


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution whose weights are multiplied by a causal mask before every use.

    Shapes: input (B, in_features, H, W) -> output (B, out_features, H, W); the
    padding keeps H and W ("same" convolution, centre at ``(kh // 2, kw // 2)``).

    Args:
        in_groups, out_groups: channel group of each input / output feature map,
            see :func:`pixelrnn.masks.channel_groups`. Their lengths set the
            numbers of features.
        kernel_size: (kh, kw), any positive sizes.
        mask_type: ``"A"`` (sees only earlier channels at the centre) or ``"B"``.
    """

    def __init__(
        self,
        in_groups: torch.Tensor,
        out_groups: torch.Tensor,
        kernel_size: tuple[int, int] | int,
        mask_type: str,
        bias: bool = True,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        super().__init__(
            len(in_groups), len(out_groups), (kh, kw), padding=0, bias=bias
        )
        self.mask_type = mask_type
        # The zero-padding keeps the output on the input grid; asymmetric for even kernels.
        self._pad = (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2)
        self.register_buffer("mask", causal_mask((kh, kw), in_groups, out_groups, mask_type))
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self._pad):
            x = F.pad(x, self._pad)
        return F.conv2d(x, self.masked_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_type={self.mask_type}"


def masked_1x1(in_features: int, out_features: int, channels: int) -> MaskedConv2d:
    """A 1x1 convolution with mask B between two evenly grouped feature stacks."""
    return MaskedConv2d(
        channel_groups(in_features, channels), channel_groups(out_features, channels), 1, "B"
    )


class PixelCNNBlock(nn.Module):
    """Residual block of the PixelCNN (section 3.5), (B, 2h, H, W) -> (B, 2h, H, W).

    ReLU -> 1x1 (2h -> h) -> ReLU -> 3x3 mask B (h -> h) -> ReLU -> 1x1 (h -> 2h),
    every convolution respecting the channel groups. The residual identity is
    added by the model (so that it can be switched off).
    """

    def __init__(self, hidden: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        groups_h = channel_groups(hidden, channels)
        self.reduce = masked_1x1(2 * hidden, hidden, channels)
        self.conv = MaskedConv2d(groups_h, groups_h, kernel_size, "B")
        self.expand = masked_1x1(hidden, 2 * hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(torch.relu(x))
        x = self.conv(torch.relu(x))
        return self.expand(torch.relu(x))
