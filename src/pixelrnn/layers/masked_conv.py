"""Masked convolutions (paper section 3.4), on whole maps and at one pixel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .masks import causal_mask, channel_groups


class MaskedConv2d(nn.Module):
    """A 2-D convolution whose weights are multiplied by a causal mask before every use.

    Shapes: input (B, in_features, H, W) -> output (B, out_features, H, W), the
    output on the input grid with the kernel centred at ``(kh // 2, kw // 2)``.

    The rows below the centre are masked out entirely, so the stored kernel is
    cropped to the ``kh // 2 + 1`` rows that can be non-zero and the input is
    zero-padded on top, left and right only: the same function, a third fewer
    multiplications for a 3x3 kernel. The models keep their feature maps
    channels-last, (B, H, W, F), and call :meth:`forward_nhwc`: a 1x1 kernel is
    then one matrix product, and a k x k one a convolution in PyTorch's fast
    channels-last memory format.

    Args:
        in_groups, out_groups: channel group of each input / output feature map,
            see :func:`pixelrnn.masks.channel_groups`. Their lengths set the
            numbers of features.
        kernel_size: (kh, kw), any positive sizes.
        mask_type: ``"A"`` (sees only earlier channels at the centre), ``"B"``, or a vertical
            stack's ``"above"`` / ``"vertical"`` (see :mod:`pixelrnn.layers.masks`).
    """

    def __init__(
        self,
        in_groups: torch.Tensor,
        out_groups: torch.Tensor,
        kernel_size: tuple[int, int] | int,
        mask_type: str,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.in_features, self.out_features = len(in_groups), len(out_groups)
        self.kernel_size, self.mask_type = (kh, kw), mask_type
        rows = kh // 2 + 1
        self._pad = (kw // 2, (kw - 1) // 2, kh // 2, 0)
        full_mask = causal_mask((kh, kw), in_groups, out_groups, mask_type)
        self.register_buffer("mask", full_mask[:, :, :rows].contiguous(), persistent=False)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features, rows, kw))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's Conv2d initialisation, with fan-in counted over the open weights."""
        fan_in = max(1, int(self.mask.sum(dim=(1, 2, 3)).max()))
        bound = 1.0 / fan_in**0.5
        with torch.no_grad():
            self.weight.uniform_(-bound, bound).mul_(self.mask)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H, W)."""
        return self.forward_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last maps, (B, H, W, in) -> (B, H, W, out); a 1x1 kernel takes any (..., in)."""
        if self.kernel_size == (1, 1):
            return F.linear(x, self.masked_weight().flatten(1), self.bias)
        left, right, top, bottom = self._pad
        x = F.pad(x, (0, 0, left, right, top, bottom)).permute(0, 3, 1, 2)
        return F.conv2d(x, self.masked_weight(), self.bias).permute(0, 2, 3, 1)

    def forward_row(self, x: torch.Tensor, width_dim: int) -> torch.Tensor:
        """A 1 x k kernel along dimension ``width_dim`` of a map with features last, as one matrix
        product: mask B or A leaves only the taps at and left of the centre, so the input is the
        concatenation of the map shifted right by 0 .. k // 2 columns. (..., in) -> (..., out)."""
        kh, kw = self.kernel_size
        if kh != 1:
            raise ValueError(f"forward_row needs a 1 x k kernel, not {kh} x {kw}")
        centre, width, dim = kw // 2, x.shape[width_dim], width_dim % x.dim()
        pad = [0, 0] * (x.dim() - dim - 1) + [centre, 0]
        padded = F.pad(x, pad)
        taps = torch.cat([padded.narrow(dim, k, width) for k in range(centre + 1)], dim=-1)
        weight = self.masked_weight()[:, :, 0, : centre + 1]  # (out, in, taps)
        return F.linear(taps, weight.permute(0, 2, 1).flatten(1), self.bias)

    def at_pixels(self, pad: int) -> PixelConv:
        """This convolution with its weights frozen, evaluated one pixel at a time on maps
        zero-padded by ``pad`` cells (sampling); see :class:`PixelConv`."""
        return PixelConv(self, pad)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, kernel_size={self.kernel_size}, "
            f"mask_type={self.mask_type}, bias={self.bias is not None}"
        )


def masked_1x1(in_features: int, out_features: int, channels: int) -> MaskedConv2d:
    """A 1x1 convolution with mask B between two evenly grouped feature stacks."""
    return MaskedConv2d(
        channel_groups(in_features, channels), channel_groups(out_features, channels), 1, "B"
    )


class PixelConv:
    """A masked convolution evaluated at single pixels of a padded channels-last map.

    ``at(padded, i, j)``: the output (B, out) at pixel (i, j) of a map (B, H + 2P, W + 2P, in)
    whose border of P >= k // 2 cells holds the zero padding; ``pointwise(x)``: a 1x1
    convolution of features (..., in). The weights are taken once, detached.
    """

    def __init__(self, conv: MaskedConv2d, pad: int) -> None:
        weight = conv.masked_weight().detach()  # (out, in, kh // 2 + 1, kw)
        self.bias = conv.bias.detach() if conv.bias is not None else None
        kh, kw = conv.kernel_size
        if pad < max(kh, kw) // 2:
            raise ValueError(f"a {kh} x {kw} kernel needs a border of {max(kh, kw) // 2} cells, got {pad}")
        self.rows, self.cols = kh // 2 + 1, kw
        self.top, self.left = pad - kh // 2, pad - kw // 2
        self.flat = weight.permute(0, 2, 3, 1).flatten(1)  # (out, rows * kw * in)

    def at(self, padded: torch.Tensor, i: int, j: int) -> torch.Tensor:
        patch = padded[:, self.top + i : self.top + i + self.rows, self.left + j : self.left + j + self.cols]
        return F.linear(patch.flatten(1), self.flat, self.bias)

    def row(self, padded: torch.Tensor, i: int, width: int) -> torch.Tensor:
        """The outputs (B, W, out) at every pixel of row i (for blocks that work a row ahead)."""
        return torch.stack([self.at(padded, i, j) for j in range(width)], dim=1)

    def pointwise(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.flat, self.bias)
