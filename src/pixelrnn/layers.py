"""Masked convolutions and the PixelCNN residual block (paper sections 3.4, 3.5)."""

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


class PixelCNNBlock(nn.Module):
    """Residual block of the PixelCNN (section 3.5), channels-last (B, H, W, 2h) -> (B, H, W, 2h).

    ReLU -> 1x1 (2h -> h) -> ReLU -> 3x3 mask B (h -> h) -> ReLU -> 1x1 (h -> 2h),
    every convolution respecting the channel groups. The residual identity is
    added by the model (so that it can be switched off). ``condition`` (B, H, W, h),
    optional, is added to the masked convolution's output (the conditional
    network of a Multi-Scale PixelRNN, section 3.6).
    """

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
