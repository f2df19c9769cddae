"""Evaluating a trained model one pixel at a time, with every layer's state cached (for sampling).

The naive sampler reruns the whole network for each of the H*W*C values. Here
each layer keeps the maps it has computed so far, so the logits of pixel
(i, j) cost one evaluation of every layer at that pixel:

* masked convolutions read a cached patch of their input map (the 7x7 input
  layer reads the image, a PixelCNN block's 3x3 convolution its 1x1 output);
* the Row LSTM reads the previous row's hidden and cell states;
* the Diagonal BiLSTM's left-to-right LSTM reads the states of the left and
  upper neighbours; its right-to-left LSTM runs over a row once the row is
  finished (``finish_row``), and pixel (i, j) reads its output at (i-1, j).

Maps are channels-last, (B, H + 2P, W + 2P, F), with a border of P cells that
holds what a convolution's zero padding or a learned initial state would give.
Recomputing a pixel (once per channel of RGB images) overwrites its states from
the same neighbours, so it is exact. A conditional model (the second stage of a
Multi-Scale PixelRNN) takes its per-layer bias maps, (B, H, W, F) each, at
construction; each layer adds the bias of the pixel it computes. The results equal the full model's up to
float rounding (the same products, summed in another order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .diagonal_bilstm import DiagonalBiLSTM
from .distributions import sigmoid_as_logits
from .layers import MaskedConv2d, PixelCNNBlock
from .lstm import lstm_update
from .models import PixelRNN
from .row_lstm import RowLSTM


class _Conv:
    """A masked convolution evaluated at single pixels of a padded channels-last map."""

    def __init__(self, conv: MaskedConv2d, pad: int) -> None:
        self.weight = conv.masked_weight().detach()  # (out, in, kh // 2 + 1, kw)
        self.bias = conv.bias.detach() if conv.bias is not None else None
        kh, kw = conv.kernel_size
        self.rows, self.cols = kh // 2 + 1, kw
        self.top, self.left = pad - kh // 2, pad - kw // 2
        self.flat = self.weight.permute(0, 2, 3, 1).flatten(1)  # (out, rows * kw * in)

    def at(self, padded: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Output (B, out) at pixel (i, j); ``padded`` is (B, H + 2P, W + 2P, in)."""
        patch = padded[:, self.top + i : self.top + i + self.rows, self.left + j : self.left + j + self.cols]
        return F.linear(patch.flatten(1), self.flat, self.bias)

    def pointwise(self, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 convolution on features in the last dimension."""
        return F.linear(x, self.flat, self.bias)


def _map(batch, height, width, features, pad, like) -> torch.Tensor:
    return like.new_zeros(batch, height + 2 * pad, width + 2 * pad, features)


def _plus(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x if bias is None else x + bias


class _PixelCNNCache:
    def __init__(self, block: PixelCNNBlock, shape, pad, like) -> None:
        self.pad = pad
        self.reduce, self.expand = _Conv(block.reduce, pad), _Conv(block.expand, pad)
        self.conv = _Conv(block.conv, pad)
        self.reduced = _map(*shape, block.conv.in_features, pad, like)  # zero padding, as F.pad

    def at(self, stream: torch.Tensor, i: int, j: int, bias: torch.Tensor | None) -> torch.Tensor:
        p = self.pad
        self.reduced[:, p + i, p + j] = torch.relu(self.reduce.pointwise(torch.relu(stream[:, p + i, p + j])))
        return self.expand.pointwise(torch.relu(_plus(self.conv.at(self.reduced, i, j), bias)))

    def finish_row(self, stream: torch.Tensor, i: int, bias: torch.Tensor | None) -> None:
        pass


class _RowLSTMCache:
    def __init__(self, block: RowLSTM, shape, pad, like) -> None:
        batch, height, width = shape
        self.pad, self.k = pad, block.kernel_size
        self.input_to_state, self.expand = _Conv(block.input_to_state, pad), _Conv(block.expand, pad)
        self.weight = block.state_to_state[0].detach()  # (k * h, 4h): taps j - k//2 .. j + k//2
        self.h = _map(*shape, block.hidden, pad, like)  # zeros beyond the row ends, as conv1d
        self.c = _map(*shape, block.hidden, pad, like)
        self.h[:, pad - 1, pad : pad + width] = block.h0.detach()[0]  # the state "above" row 0
        self.c[:, pad - 1, pad : pad + width] = block.c0.detach()[0]

    def at(self, stream: torch.Tensor, i: int, j: int, bias: torch.Tensor | None) -> torch.Tensor:
        p, half = self.pad, self.k // 2
        above = self.h[:, p + i - 1, p + j - half : p + j + half + 1].flatten(1)
        gates = _plus(self.input_to_state.at(stream, i, j), bias) + above @ self.weight
        h, c = lstm_update(gates, self.c[:, p + i - 1, p + j])
        self.h[:, p + i, p + j], self.c[:, p + i, p + j] = h, c
        return self.expand.pointwise(h)

    def finish_row(self, stream: torch.Tensor, i: int, bias: torch.Tensor | None) -> None:
        pass


class _DiagonalBiLSTMCache:
    def __init__(self, block: DiagonalBiLSTM, shape, pad, like) -> None:
        batch, height, width = shape
        self.pad, self.width, hid = pad, width, block.hidden
        self.input_to_state, self.expand = _Conv(block.input_to_state, pad), _Conv(block.expand, pad)
        self.weight = block.state_to_state.detach()  # (2, [self, above] 2h, 4h)
        h0, c0 = block.h0.detach(), block.c0.detach()
        # Left-to-right: the initial state enters each row from the left; zeros above row 0.
        self.lr_h, self.lr_c = _map(*shape, hid, pad, like), _map(*shape, hid, pad, like)
        self.lr_h[:, pad : pad + height, pad - 1], self.lr_c[:, pad : pad + height, pad - 1] = h0[0], c0[0]
        # Right-to-left: the initial state enters each row from the right.
        self.rl_h, self.rl_c = _map(*shape, hid, pad, like), _map(*shape, hid, pad, like)
        self.rl_h[:, pad : pad + height, pad + width], self.rl_c[:, pad : pad + height, pad + width] = h0[1], c0[1]
        self.gate_width = 4 * hid

    def at(self, stream: torch.Tensor, i: int, j: int, bias: torch.Tensor | None) -> torch.Tensor:
        p = self.pad
        gates = _plus(self.input_to_state.pointwise(stream[:, p + i, p + j]), bias)[:, : self.gate_width]
        reads = torch.cat([self.lr_h[:, p + i, p + j - 1], self.lr_h[:, p + i - 1, p + j]], dim=-1)
        h, c = lstm_update(gates + reads @ self.weight[0], self.lr_c[:, p + i, p + j - 1])
        self.lr_h[:, p + i, p + j], self.lr_c[:, p + i, p + j] = h, c
        # The right-to-left output shifted down one row: row i - 1's (zeros above row 0).
        return self.expand.pointwise(h + self.rl_h[:, p + i - 1, p + j])

    def finish_row(self, stream: torch.Tensor, i: int, bias: torch.Tensor | None) -> None:
        """Run the right-to-left LSTM over the finished row i (``bias``: the row's, (B, W, 8h))."""
        p = self.pad
        gates_row = self.input_to_state.pointwise(stream[:, p + i, p : p + self.width])
        gates_row = _plus(gates_row, bias)[..., self.gate_width :]
        for j in reversed(range(self.width)):
            reads = torch.cat([self.rl_h[:, p + i, p + j + 1], self.rl_h[:, p + i - 1, p + j]], dim=-1)
            h, c = lstm_update(gates_row[:, j] + reads @ self.weight[1], self.rl_c[:, p + i, p + j + 1])
            self.rl_h[:, p + i, p + j], self.rl_c[:, p + i, p + j] = h, c


_CACHES = {PixelCNNBlock: _PixelCNNCache, RowLSTM: _RowLSTMCache, DiagonalBiLSTM: _DiagonalBiLSTMCache}


class IncrementalPixelRNN:
    """Logits of one pixel at a time for a batch of images being generated in raster order.

    Call ``set_value`` for every value of pixel (i, j) that is known or drawn,
    ``logits(i, j)`` (B, C, levels) once the values before (i, j, c) are set, and
    ``finish_row(i)`` after the last pixel of row i has all its values.
    ``conditions``: the per-layer bias maps of a conditional model, see
    :class:`pixelrnn.models.PixelRNN`.
    """

    @torch.no_grad()
    def __init__(self, model: PixelRNN, batch: int, height: int, width: int,
                 conditions: list[torch.Tensor] | None = None) -> None:
        cfg = model.config
        self.conditions = conditions if conditions is not None else [None] * len(model.blocks)
        self.model, self.levels, self.channels = model, cfg.levels, cfg.channels
        self.pad = pad = max(cfg.input_kernel // 2, cfg.kernel_size // 2, 1)
        like = next(model.parameters())
        shape = (batch, height, width)
        self.canvas = _map(*shape, cfg.channels, pad, like)  # scaled values, zero padding
        self.input_conv = _Conv(model.input_conv, pad)
        self.streams = [_map(*shape, 2 * cfg.hidden, pad, like) for _ in model.blocks]
        self.caches = [_CACHES[type(b)](b, shape, pad, like) for b in model.blocks]
        self.skips = [_Conv(s, pad) for s in model.skips] if model.skips is not None else None
        self.head_hidden, self.head_out = _Conv(model.head_hidden, pad), _Conv(model.head_out, pad)

    def set_value(self, i: int, j: int, c: int, value: torch.Tensor) -> None:
        """value: (B,) integers in [0, levels)."""
        self.canvas[:, self.pad + i, self.pad + j, c] = self.model.scale(value)

    @torch.no_grad()
    def logits(self, i: int, j: int) -> torch.Tensor:
        p = self.pad
        stream = self.input_conv.at(self.canvas, i, j)
        skip_sum = None
        for index, (cache, stored, bias) in enumerate(zip(self.caches, self.streams, self.conditions)):
            stored[:, p + i, p + j] = stream
            branch = cache.at(stored, i, j, None if bias is None else bias[:, i, j])
            stream = stream + branch if self.model.config.residual else branch
            if self.skips is not None:
                projected = self.skips[index].pointwise(stream)
                skip_sum = projected if skip_sum is None else skip_sum + projected
        out = stream if skip_sum is None else skip_sum
        out = self.head_out.pointwise(torch.relu(self.head_hidden.pointwise(torch.relu(out))))
        if self.model.config.output == "sigmoid":
            return sigmoid_as_logits(out)
        return out.view(-1, self.channels, self.levels)

    @torch.no_grad()
    def finish_row(self, i: int) -> None:
        for cache, stored, bias in zip(self.caches, self.streams, self.conditions):
            cache.finish_row(stored, i, None if bias is None else bias[:, i])
