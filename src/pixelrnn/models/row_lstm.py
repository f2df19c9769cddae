"""Row LSTM layer (paper section 3.1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import MaskedConv2d, channel_groups, masked_1x1
from ..layers.lstm import gate_groups, lstm_update
from ..layers.lstm_scan import ScanPlan, lstm_scan
from .block import Block, BlockCache, padded_map, plus


class RowLSTM(Block):
    """Row LSTM residual branch, channels-last (B, H, W, 2h) -> (B, H, W, 2h).

    Processes the map one row at a time, top to bottom:

    * input-to-state: a 1 x k convolution along the row with mask B, computed
      for the whole map at once -> 4h gate maps [i, f, o, g];
    * state-to-state: an unmasked 1 x k convolution (zero-padded) of the
      previous row's hidden state, whose values all lie in the past -> 4h;
    * the LSTM update; a learned initial state (h0, c0) enters row 0;
    * a 1x1 mask-B convolution back to 2h features (the residual projection).

    ``condition`` (B, H, W, 4h), optional, is added to the input-to-state maps
    (the conditional network of a Multi-Scale PixelRNN, section 3.6).

    Each output pixel sees a triangle of rows above it plus the pixels left of
    it that the masked input convolution reaches. ``fused=True`` runs the
    recurrence with :func:`pixelrnn.lstm_scan.lstm_scan`; ``fused=False`` runs
    the plain autograd loop of :meth:`reference_recurrence`, same weights.
    """

    name = "row_lstm"
    title = "Row LSTM"
    paper = "van den Oord et al. 2016, section 3.1"

    def __init__(self, hidden: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Row LSTM kernel size must be odd and positive, got {kernel_size}")
        self.hidden, self.kernel_size, self.fused = hidden, kernel_size, True
        self.condition_features = 4 * hidden
        self.input_to_state = MaskedConv2d(
            channel_groups(2 * hidden, channels), gate_groups(hidden, channels), (1, kernel_size), "B"
        )
        # (1 direction, k taps x h, 4h): tap k reads column j + k - k // 2 of the previous row.
        bound = 1.0 / math.sqrt(kernel_size * hidden)
        self.state_to_state = nn.Parameter(
            torch.empty(1, kernel_size * hidden, 4 * hidden).uniform_(-bound, bound)
        )
        self.h0 = nn.Parameter(torch.zeros(1, hidden))
        self.c0 = nn.Parameter(torch.zeros(1, hidden))
        self.expand = masked_1x1(hidden, 2 * hidden, channels)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        batch, height, width, _ = x.shape
        if not self.fused:
            gates_in = self.input_to_state.forward_nhwc(x)
            if condition is not None:
                gates_in = gates_in + condition
            hidden = self.reference_recurrence(gates_in.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            return self.expand.forward_nhwc(hidden)
        cells = x.permute(1, 2, 0, 3).contiguous()  # (H, W, B, 2h): the scan's layout
        gates_in = self.input_to_state.forward_row(cells, width_dim=1)  # (H, W, B, 4h)
        if condition is not None:
            gates_in = gates_in + condition.permute(1, 2, 0, 3)
        gates_in = gates_in.unsqueeze(3)  # (H, W, B, 1 direction, 4h)
        offsets = tuple(range(-(self.kernel_size // 2), self.kernel_size // 2 + 1))
        plan = ScanPlan("rows", height, width, offsets)
        hidden = lstm_scan(gates_in, self.state_to_state, self.h0, self.c0, plan).squeeze(3)
        return self.expand.forward_nhwc(hidden).permute(2, 0, 1, 3)

    def reference_recurrence(self, gates_in: torch.Tensor) -> torch.Tensor:
        """The recurrence written plainly: (B, 4h, H, W) gates -> (B, h, H, W) states."""
        batch, _, height, width = gates_in.shape
        kernel = self.state_to_state[0].view(self.kernel_size, self.hidden, -1).permute(2, 1, 0)
        h = self.h0.view(1, -1, 1).expand(batch, self.hidden, width)
        c = self.c0.view(1, -1, 1).expand(batch, self.hidden, width)
        rows = []
        for row_gates in gates_in.unbind(2):
            gates = row_gates + F.conv1d(h, kernel, padding=self.kernel_size // 2)
            h, c = lstm_update(gates, c, dim=1)
            rows.append(h)
        return torch.stack(rows, dim=2)

    def incremental(self, batch: int, height: int, width: int, pad: int) -> BlockCache:
        return _RowLSTMCache(self, batch, height, width, pad)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, kernel_size={self.kernel_size}, fused={self.fused}"


class _RowLSTMCache(BlockCache):
    """Keeps the hidden and cell states of every pixel; pixel (i, j) reads row i - 1's."""

    def __init__(self, block: RowLSTM, batch: int, height: int, width: int, pad: int) -> None:
        self.pad, self.k = pad, block.kernel_size
        self.input_to_state, self.expand = block.input_to_state.at_pixels(pad), block.expand.at_pixels(pad)
        self.weight = block.state_to_state[0].detach()  # (k * h, 4h): taps j - k//2 .. j + k//2
        shape = (batch, height, width, block.hidden, pad, block.h0)
        self.h, self.c = padded_map(*shape), padded_map(*shape)  # zeros beyond the row ends, as conv1d
        self.h[:, pad - 1, pad : pad + width] = block.h0.detach()[0]  # the state "above" row 0
        self.c[:, pad - 1, pad : pad + width] = block.c0.detach()[0]

    def at(self, stream, i, j, bias):
        p, half = self.pad, self.k // 2
        above = self.h[:, p + i - 1, p + j - half : p + j + half + 1].flatten(1)
        gates = plus(self.input_to_state.at(stream, i, j), bias) + above @ self.weight
        h, c = lstm_update(gates, self.c[:, p + i - 1, p + j])
        self.h[:, p + i, p + j], self.c[:, p + i, p + j] = h, c
        return self.expand.pointwise(h)
