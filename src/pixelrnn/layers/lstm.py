"""The LSTM update shared by the Row LSTM and the Diagonal BiLSTM (paper section 3.1)."""

from __future__ import annotations

import torch

from .masks import channel_groups


def gate_groups(hidden: int, channels: int) -> torch.Tensor:
    """Channel group of each of the 4h gate maps, laid out as [i, f, o, g], each h wide.

    Gate unit ``k`` of every gate belongs to the same group as hidden unit ``k``,
    so the element-wise LSTM update never mixes groups.
    """
    return channel_groups(hidden, channels).repeat(4)


def lstm_update(
    gates: torch.Tensor, cell: torch.Tensor, dim: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from pre-activation gates [i, f, o, g] (4h along ``dim``) and the cell (h).

    c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c').
    Returns (h', c'), each shaped like ``cell``.
    """
    i, f, o, g = gates.chunk(4, dim)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell
