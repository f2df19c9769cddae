"""The PixelCNN's residual block (paper section 3.5)."""

from __future__ import annotations

import torch

from ..layers import MaskedConv2d, channel_groups, masked_1x1
from .block import Block, BlockCache, padded_map, plus


class PixelCNNBlock(Block):
    """Residual block of the PixelCNN, channels-last (B, H, W, 2h) -> (B, H, W, 2h).

    ReLU -> 1x1 (2h -> h) -> ReLU -> k x k mask B (h -> h) -> ReLU -> 1x1 (h -> 2h),
    every convolution respecting the channel groups. The residual identity is
    added by the model (so that it can be switched off). ``condition`` (B, H, W, h),
    optional, is added to the masked convolution's output (the conditional
    network of a Multi-Scale PixelRNN, section 3.6).
    """

    name = "pixelcnn"
    title = "PixelCNN"
    paper = "van den Oord et al. 2016, section 3.5"

    def __init__(self, hidden: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        groups_h = channel_groups(hidden, channels)
        self.reduce = masked_1x1(2 * hidden, hidden, channels)
        self.conv = MaskedConv2d(groups_h, groups_h, kernel_size, "B")
        self.expand = masked_1x1(hidden, 2 * hidden, channels)
        self.condition_features = hidden

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        # The inner ReLUs run in place on fresh convolution outputs (which their
        # backward does not need): no extra map is allocated and written.
        x = self.reduce.forward_nhwc(torch.relu(x))
        x = self.conv.forward_nhwc(x.relu_())
        if condition is not None:
            x = x + condition
        return self.expand.forward_nhwc(x.relu_())

    def incremental(self, batch: int, height: int, width: int, pad: int) -> BlockCache:
        return _PixelCNNCache(self, batch, height, width, pad)


class _PixelCNNCache(BlockCache):
    """Keeps the 1x1 reduction's output map, which the k x k convolution reads."""

    def __init__(self, block: PixelCNNBlock, batch: int, height: int, width: int, pad: int) -> None:
        self.pad = pad
        self.reduce, self.expand = block.reduce.at_pixels(pad), block.expand.at_pixels(pad)
        self.conv = block.conv.at_pixels(pad)
        like = block.reduce.weight
        self.reduced = padded_map(batch, height, width, block.conv.in_features, pad, like)

    def at(self, stream, i, j, bias):
        p = self.pad
        self.reduced[:, p + i, p + j] = torch.relu(self.reduce.pointwise(torch.relu(stream[:, p + i, p + j])))
        return self.expand.pointwise(torch.relu(plus(self.conv.at(self.reduced, i, j), bias)))
