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

from .layers import MaskedConv2d, masked_1x1
from .lstm import gate_groups, lstm_update
from .masks import channel_groups


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


class DiagonalBiLSTM(nn.Module):
    """Diagonal BiLSTM residual branch, (B, 2h, H, W) -> (B, 2h, H, W).

    For each of the two directions (left-to-right, and right-to-left on the
    mirrored map):

    * input-to-state: a 1x1 mask-B convolution -> 4h gate maps, whole map at once;
    * skew the gate maps so that each diagonal becomes a column (H x (W + H - 1));
    * walk the columns; each step adds the 2 x 1 state-to-state convolution
      (the cell itself and the cell above, unmasked) of the previous column's
      hidden state and applies the LSTM update. A learned initial state enters
      each row at its first pixel, and row 0 from above;
    * unskew.

    Both directions run in one batched recurrence. The right-to-left output is
    shifted down one row (row 0 gets zeros) before it is added to the
    left-to-right output, since at row r it has seen the future pixels right of
    the current one. A 1x1 mask-B convolution brings the sum back to 2h.
    """

    directions = 2

    def __init__(self, hidden: int, channels: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(
            channel_groups(2 * hidden, channels),
            gate_groups(hidden, channels).repeat(self.directions),
            1,
            "B",
        )
        # Per direction: [h(cell), h(cell above)] (2h) -> gates (4h).
        bound = 1.0 / math.sqrt(2 * hidden)
        self.state_to_state = nn.Parameter(
            torch.empty(self.directions, 2 * hidden, 4 * hidden).uniform_(-bound, bound)
        )
        self.h0 = nn.Parameter(torch.zeros(self.directions, 1, 1, hidden))
        self.c0 = nn.Parameter(torch.zeros(self.directions, 1, 1, hidden))
        self.expand = masked_1x1(hidden, 2 * hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        d, hid = self.directions, self.hidden
        gates_in = self.input_to_state(x).unflatten(1, (d, 4 * hid)).transpose(0, 1)
        gates_in = torch.stack([gates_in[0], gates_in[1].flip(-1)])  # (2, B, 4h, H, W)
        gates_in = skew(gates_in).permute(4, 0, 1, 3, 2).contiguous()  # (T, 2, B, H, 4h)

        h0 = self.h0.expand(d, batch, 1, hid)
        h = self.h0.expand(d, batch, height, hid)
        c = self.c0.expand(d, batch, height, hid)
        row = torch.arange(height, device=x.device).view(1, 1, height, 1)
        outputs = []
        for t in range(gates_in.shape[0]):
            above = torch.cat([h0, h[:, :, :-1]], dim=2)
            recurrent = torch.bmm(
                torch.cat([h, above], dim=-1).reshape(d, batch * height, 2 * hid),
                self.state_to_state,
            ).view(d, batch, height, 4 * hid)
            h_new, c_new = lstm_update(gates_in[t] + recurrent, c)
            if t < height - 1:  # rows r > t have not started: they keep the initial state
                started = row <= t
                h_new = torch.where(started, h_new, self.h0)
                c_new = torch.where(started, c_new, self.c0)
            h, c = h_new, c_new
            outputs.append(h)

        out = unskew(torch.stack(outputs, dim=-1).transpose(-2, -3))  # (2, B, h, H, W)
        left_to_right, right_to_left = out[0], out[1].flip(-1)
        right_to_left = F.pad(right_to_left[:, :, :-1], (0, 0, 1, 0))  # shift down one row
        return self.expand(left_to_right + right_to_left)
