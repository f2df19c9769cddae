"""Row LSTM layer (paper section 3.1)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import MaskedConv2d, masked_1x1
from .lstm import gate_groups, lstm_update
from .masks import channel_groups


class RowLSTM(nn.Module):
    """Row LSTM residual branch, (B, 2h, H, W) -> (B, 2h, H, W).

    Processes the map one row at a time, top to bottom:

    * input-to-state: a 1 x k convolution along the row with mask B, computed
      for the whole map at once -> 4h gate maps;
    * state-to-state: an unmasked 1 x k convolution of the previous row's
      hidden state (every value in that row is in the past) -> 4h;
    * the LSTM update; a learned initial state (h_0, c_0) enters row 0;
    * a 1x1 mask-B convolution back to 2h features (the residual projection).

    Each output pixel sees a triangle of rows above it (k-wide per row) plus the
    pixels left of it that the masked input convolution reaches.
    """

    def __init__(self, hidden: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Row LSTM kernel size must be odd and positive, got {kernel_size}")
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(
            channel_groups(2 * hidden, channels), gate_groups(hidden, channels), (1, kernel_size), "B"
        )
        self.state_to_state = nn.Conv1d(
            hidden, 4 * hidden, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.h0 = nn.Parameter(torch.zeros(hidden, 1))
        self.c0 = nn.Parameter(torch.zeros(hidden, 1))
        self.expand = masked_1x1(hidden, 2 * hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        gates_in = self.input_to_state(x)  # (B, 4h, H, W)
        h = self.h0.expand(batch, self.hidden, width)
        c = self.c0.expand(batch, self.hidden, width)
        rows = []
        for r in range(height):
            gates = gates_in[:, :, r] + self.state_to_state(h)
            h, c = lstm_update(gates, c, dim=1)
            rows.append(h)
        return self.expand(torch.stack(rows, dim=2))
