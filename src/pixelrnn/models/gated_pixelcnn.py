"""The Gated PixelCNN (van den Oord et al., NeurIPS 2016, "Conditional Image Generation with
PixelCNN Decoders", section 2.2): a vertical and a horizontal stack, gated units, no blind spot.

The 2h features of the stream interleave the two stacks: even features are the vertical
stack v (h), odd ones the horizontal stack z (h). Both stacks are residual (the model adds
the branch; the paper's vertical stack is not, which changes nothing of causality).

* Vertical stack: at row i it depends on the image rows above i only, so it belongs to no
  channel group and may be read at any column. Its first layer reads the image through a
  k x k kernel open above the centre row (mask "above"); later layers read v through a
  kernel open in the centre row and above (mask "vertical"). The paper's shift down by one
  row is built in: the stack never sees row i at row i. This is what removes the PixelCNN's
  blind spot: v at (i, j) sees k // 2 columns either side per layer, in every row above.
* Horizontal stack: a 1 x k kernel over the current row, mask A in the first layer and mask B
  after, with RGB channel groups; it receives the vertical stack's pre-activations at the same
  pixel through a 1x1 link (safe: v holds rows above only).
* Gated unit: tanh(a) * sigmoid(b) of 2h pre-activations, a and b of unit k in unit k's
  channel group; the horizontal output goes through a 1x1 mask-B layer.

``condition`` (B, H, W, 4h), optional: added to the vertical (first 2h) and horizontal (last
2h) pre-activations, the paper's conditioning bias (h^T V y), as the Multi-Scale stage uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import MaskedConv2d, channel_groups
from .block import Block, BlockCache, plus


def interleave(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """(..., h) and (..., h) -> the stream layout (..., 2h): v0, z0, v1, z1, ..."""
    return torch.stack([vertical, horizontal], dim=-1).flatten(-2)


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) for x = [a | b] (..., 2h) -> (..., h)."""
    a, b = x.chunk(2, dim=-1)
    return torch.tanh(a) * torch.sigmoid(b)


def _stack_groups(hidden: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel groups of the vertical (even) and horizontal (odd) stream features."""
    groups = channel_groups(2 * hidden, channels)
    return groups[0::2], groups[1::2]


class GatedInput(nn.Module):
    """The first layer: image (B, H, W, C) -> stream (B, H, W, 2h), v from the rows above
    (k x k, mask "above"), z from the pixels left of the current one (1 x k, mask A)."""

    def __init__(self, hidden: int, channels: int, kernel_size: int) -> None:
        super().__init__()
        image = torch.arange(channels)
        v_groups, z_groups = _stack_groups(hidden, channels)
        self.vertical = MaskedConv2d(image, v_groups, kernel_size, "above")
        self.horizontal = MaskedConv2d(image, z_groups, (1, kernel_size), "A")

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        return interleave(self.vertical.forward_nhwc(x), self.horizontal.forward_row(x, width_dim=2))

    def at_pixels(self, pad: int) -> _GatedInputPixels:
        return _GatedInputPixels(self.vertical.at_pixels(pad), self.horizontal.at_pixels(pad))


class _GatedInputPixels:
    def __init__(self, vertical, horizontal) -> None:
        self.vertical, self.horizontal = vertical, horizontal

    def at(self, canvas, i, j):
        return interleave(self.vertical.at(canvas, i, j), self.horizontal.at(canvas, i, j))

    def row(self, canvas, i, width):
        """Row i's stream with its vertical part (rows above i only); the horizontal part zero."""
        vertical = self.vertical.row(canvas, i, width)
        return interleave(vertical, torch.zeros_like(vertical))


class GatedPixelCNNBlock(Block):
    """One gated layer of both stacks, channels-last (B, H, W, 2h) -> (B, H, W, 2h)."""

    name = "gated_pixelcnn"
    title = "Gated PixelCNN"
    paper = "van den Oord et al. 2016b (PixelCNN decoders), section 2.2"
    looks_ahead = True  # its vertical stack at row i is known before row i starts

    @classmethod
    def input_layer(cls, config) -> GatedInput:
        return GatedInput(config.hidden, config.channels, config.input_kernel)

    def __init__(self, hidden: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        v_groups, z_groups = _stack_groups(hidden, channels)
        self.vertical = MaskedConv2d(v_groups, v_groups.repeat(2), kernel_size, "vertical")
        self.horizontal = MaskedConv2d(z_groups, z_groups.repeat(2), (1, kernel_size), "B")
        self.link = nn.Linear(2 * hidden, 2 * hidden)  # v pre-activations -> z (rows above only)
        self.out = MaskedConv2d(z_groups, z_groups, 1, "B")
        self.condition_features = 4 * hidden

    def forward(self, stream: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        v_bias, z_bias = (None, None) if condition is None else condition.chunk(2, dim=-1)
        v_pre = plus(self.vertical.forward_nhwc(stream[..., 0::2]), v_bias)
        z_pre = self.horizontal.forward_row(stream[..., 1::2], width_dim=2) + self.link(v_pre)
        return interleave(gate(v_pre), self.out.forward_nhwc(gate(plus(z_pre, z_bias))))

    def incremental(self, batch: int, height: int, width: int, pad: int) -> BlockCache:
        return _GatedCache(self, width, pad)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, kernel_size={self.horizontal.kernel_size[1]}"


class _GatedCache(BlockCache):
    """At the start of row i: the vertical stack's pre-activations for the whole row (its
    inputs, rows above i, are known); at pixel (i, j): the horizontal stack."""

    def __init__(self, block: GatedPixelCNNBlock, width: int, pad: int) -> None:
        self.width = width
        self.vertical, self.horizontal = block.vertical.at_pixels(pad), block.horizontal.at_pixels(pad)
        self.out = block.out.at_pixels(pad)
        self.link_weight, self.link_bias = block.link.weight.detach(), block.link.bias.detach()

    def begin_row(self, stream, i, bias):
        v_bias = None if bias is None else bias.chunk(2, dim=-1)[0]
        self.v_pre = plus(self.vertical.row(stream[..., 0::2], i, self.width), v_bias)  # (B, W, 2h)
        self.v_out = gate(self.v_pre)
        return interleave(self.v_out, torch.zeros_like(self.v_out))

    def at(self, stream, i, j, bias):
        z_bias = None if bias is None else bias.chunk(2, dim=-1)[1]
        link = F.linear(self.v_pre[:, j], self.link_weight, self.link_bias)
        z_pre = self.horizontal.at(stream[..., 1::2], i, j) + link
        return interleave(self.v_out[:, j], self.out.pointwise(gate(plus(z_pre, z_bias))))
