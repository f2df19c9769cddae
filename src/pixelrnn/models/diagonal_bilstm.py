"""Diagonal BiLSTM layer (paper section 3.2).

Blind spot of the design (measured by ``tests/test_dependencies.py``): the
network's only path to a value is through a feature map at a position after
it. The last value of a row, x[r-1, W-1, C-1], first appears in feature maps
of row r, in the input layer's k x k mask-A window, i.e. at columns
>= W - 1 - k // 2. From there the left-to-right LSTM carries it only to the
right, and the right-to-left LSTM only reaches row r + 1 (its output is shifted
down a row). So the prediction of pixel (r, c) cannot see x[r-1, W-1, C-1] when
c < W - 1 - k // 2 (k = 7: the 4 last columns see it, the others do not), at
any depth. For RGB images the R and G values of that pixel are seen: they enter
the later channel groups of pixel (r-1, W-1) itself. Every other earlier value
is seen by a single Diagonal BiLSTM layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import MaskedConv2d, channel_groups, masked_1x1
from ..layers.lstm import gate_groups, lstm_update
from ..layers.lstm_scan import ScanPlan, lstm_scan
from .block import Block, BlockCache, padded_map, plus


def skew(x: torch.Tensor) -> torch.Tensor:
    """Shift row r right by r: (..., H, W) -> (..., H, W + H - 1), zeros elsewhere."""
    height, width = x.shape[-2:]
    flat = F.pad(x, (0, height)).flatten(-2)  # rows of W + H, row r starts at r(W + H)
    return flat[..., : height * (width + height - 1)].unflatten(-1, (height, width + height - 1))


def unskew(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`skew`: (..., H, W + H - 1) -> (..., H, W)."""
    height, skewed_width = x.shape[-2:]
    width = skewed_width - height + 1
    flat = F.pad(x.flatten(-2), (0, height))
    return flat.unflatten(-1, (height, width + height))[..., :width]


class DiagonalBiLSTM(Block):
    """Diagonal BiLSTM residual branch, channels-last (B, H, W, 2h) -> (B, H, W, 2h).

    For each of the two directions (left-to-right, and right-to-left on the
    mirrored map):

    * input-to-state: a 1x1 mask-B convolution -> 4h gate maps, whole map at once;
    * in the skewed map (row r shifted right by r) walk the columns; each step
      adds the 2 x 1 state-to-state convolution (the cell itself and the cell
      above, unmasked, zero above row 0) of the previous column's hidden state
      and applies the LSTM update. A learned initial state (h0, c0) enters each
      row at its first pixel.

    The right-to-left output is shifted down one row (row 0 gets zeros) before
    it is added to the left-to-right output, since at row r it has seen the
    future pixels right of the current one. A 1x1 mask-B convolution brings the
    sum back to 2h.

    ``condition`` (B, H, W, 2 x 4h), optional, is added to the input-to-state
    maps of both directions (the conditional network of a Multi-Scale
    PixelRNN, section 3.6).

    ``fused=True`` runs both directions in one :func:`pixelrnn.lstm_scan.lstm_scan`
    over the diagonals of the unskewed map (no skewed copies, no padding cells);
    ``fused=False`` runs :meth:`reference_recurrence`, the skew / loop / unskew
    of the paper with autograd, on the same weights.
    """

    name = "diagonal_bilstm"
    title = "Diagonal BiLSTM"
    paper = "van den Oord et al. 2016, section 3.2"
    uses_kernel_size = False  # 1 x 1 input-to-state, 2 x 1 state-to-state: fixed by the skew
    directions = 2

    @classmethod
    def from_config(cls, config) -> DiagonalBiLSTM:
        return cls(config.hidden, config.channels)

    def __init__(self, hidden: int, channels: int) -> None:
        super().__init__()
        self.hidden, self.fused = hidden, True
        self.condition_features = self.directions * 4 * hidden
        self.input_to_state = MaskedConv2d(
            channel_groups(2 * hidden, channels),
            gate_groups(hidden, channels).repeat(self.directions),
            1,
            "B",
        )
        # Per direction: [h(cell itself), h(cell above)] (2h) -> gates (4h).
        bound = 1.0 / math.sqrt(2 * hidden)
        self.state_to_state = nn.Parameter(
            torch.empty(self.directions, 2 * hidden, 4 * hidden).uniform_(-bound, bound)
        )
        self.h0 = nn.Parameter(torch.zeros(self.directions, hidden))
        self.c0 = nn.Parameter(torch.zeros(self.directions, hidden))
        self.expand = masked_1x1(hidden, 2 * hidden, channels)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if not self.fused:
            gates_in = self.input_to_state.forward_nhwc(x)
            if condition is not None:
                gates_in = gates_in + condition
            left_to_right, right_to_left = self.reference_recurrence(gates_in.permute(0, 3, 1, 2))
            hidden = left_to_right + F.pad(right_to_left[:, :, :-1], (0, 0, 1, 0))
            return self.expand.forward_nhwc(hidden.permute(0, 2, 3, 1))
        _, height, width, _ = x.shape
        # The scan works on the cell-major layout (H, W, B, F); the 1x1 convolutions
        # are matrix products in any layout, so convert once, on the narrowest map.
        cells = x.permute(1, 2, 0, 3).contiguous()  # (H, W, B, 2h)
        gates_in = self.input_to_state.forward_nhwc(cells)
        if condition is not None:
            gates_in = gates_in + condition.permute(1, 2, 0, 3)
        gates_in = gates_in.unflatten(-1, (self.directions, -1))
        plan = ScanPlan("diagonals", height, width, offsets=(0, -1), mirrored=(False, True))
        hidden = lstm_scan(gates_in, self.state_to_state, self.h0, self.c0, plan)
        left_to_right, right_to_left = hidden.unbind(3)  # (H, W, B, h) each
        # Shift the right-to-left states down one row, row 0 gets zeros.
        right_to_left = torch.cat([torch.zeros_like(right_to_left[:1]), right_to_left[:-1]])
        return self.expand.forward_nhwc(left_to_right + right_to_left).permute(2, 0, 1, 3)

    def reference_recurrence(self, gates_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's recurrence written plainly: mirror, skew, loop over columns, unskew.

        (B, 2 x 4h, H, W) gates -> left-to-right and right-to-left states, each
        (B, h, H, W) in the original (unmirrored) orientation.
        """
        batch, _, height, width = gates_in.shape
        d, hid = self.directions, self.hidden
        left, right = gates_in.unflatten(1, (d, 4 * hid)).unbind(1)
        gates = torch.stack([left, right.flip(-1)])  # (2, B, 4h, H, W)
        columns = skew(gates).permute(4, 0, 1, 3, 2).unbind(0)  # T x (2, B, H, 4h)
        h = self.h0.view(d, 1, 1, hid).expand(d, batch, height, hid)
        c = self.c0.view(d, 1, 1, hid).expand(d, batch, height, hid)
        row = torch.arange(height, device=gates_in.device).view(1, 1, height, 1)
        outputs = []
        for t, column_gates in enumerate(columns):
            above = F.pad(h[:, :, :-1], (0, 0, 1, 0))
            recurrent = torch.bmm(
                torch.cat([h, above], dim=-1).reshape(d, batch * height, 2 * hid),
                self.state_to_state,
            ).view(d, batch, height, 4 * hid)
            h_new, c_new = lstm_update(column_gates + recurrent, c)
            started = row <= t  # rows below have not started: they keep the initial state
            h = torch.where(started, h_new, self.h0.view(d, 1, 1, hid))
            c = torch.where(started, c_new, self.c0.view(d, 1, 1, hid))
            outputs.append(h)
        hidden = unskew(torch.stack(outputs, dim=-1).transpose(2, 3))  # (2, B, h, H, W)
        return hidden[0], hidden[1].flip(-1)

    def incremental(self, batch: int, height: int, width: int, pad: int) -> BlockCache:
        return _DiagonalBiLSTMCache(self, batch, height, width, pad)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, fused={self.fused}"


class _DiagonalBiLSTMCache(BlockCache):
    """The left-to-right LSTM reads the states of the left and upper neighbours; the
    right-to-left LSTM runs over a row once it is finished, and pixel (i, j) reads its
    output at (i - 1, j): the paper's shift down by one row."""

    def __init__(self, block: DiagonalBiLSTM, batch: int, height: int, width: int, pad: int) -> None:
        self.pad, self.width, hid = pad, width, block.hidden
        self.input_to_state, self.expand = block.input_to_state.at_pixels(pad), block.expand.at_pixels(pad)
        self.weight = block.state_to_state.detach()  # (2, [self, above] 2h, 4h)
        h0, c0 = block.h0.detach(), block.c0.detach()
        shape = (batch, height, width, hid, pad, h0)
        # Left-to-right: the initial state enters each row from the left; zeros above row 0.
        self.lr_h, self.lr_c = padded_map(*shape), padded_map(*shape)
        self.lr_h[:, pad : pad + height, pad - 1], self.lr_c[:, pad : pad + height, pad - 1] = h0[0], c0[0]
        # Right-to-left: the initial state enters each row from the right.
        self.rl_h, self.rl_c = padded_map(*shape), padded_map(*shape)
        self.rl_h[:, pad : pad + height, pad + width], self.rl_c[:, pad : pad + height, pad + width] = h0[1], c0[1]
        self.gate_width = 4 * hid

    def at(self, stream, i, j, bias):
        p = self.pad
        gates = plus(self.input_to_state.pointwise(stream[:, p + i, p + j]), bias)[:, : self.gate_width]
        reads = torch.cat([self.lr_h[:, p + i, p + j - 1], self.lr_h[:, p + i - 1, p + j]], dim=-1)
        h, c = lstm_update(gates + reads @ self.weight[0], self.lr_c[:, p + i, p + j - 1])
        self.lr_h[:, p + i, p + j], self.lr_c[:, p + i, p + j] = h, c
        # The right-to-left output shifted down one row: row i - 1's (zeros above row 0).
        return self.expand.pointwise(h + self.rl_h[:, p + i - 1, p + j])

    def finish_row(self, stream, i, bias):
        """Run the right-to-left LSTM over the finished row i (``bias``: the row's, (B, W, 8h))."""
        p = self.pad
        gates_row = self.input_to_state.pointwise(stream[:, p + i, p : p + self.width])
        gates_row = plus(gates_row, bias)[..., self.gate_width :]
        for j in reversed(range(self.width)):
            reads = torch.cat([self.rl_h[:, p + i, p + j + 1], self.rl_h[:, p + i - 1, p + j]], dim=-1)
            h, c = lstm_update(gates_row[:, j] + reads @ self.weight[1], self.rl_c[:, p + i, p + j + 1])
            self.rl_h[:, p + i, p + j], self.rl_c[:, p + i, p + j] = h, c
