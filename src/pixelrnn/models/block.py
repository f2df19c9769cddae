"""The block protocol: what every architecture implements next to its weights.

A model (:class:`pixelrnn.models.pixelrnn.PixelRNN`) is an input layer, a stack of residual
blocks of one architecture and an output head. The model owns the residual sums, the skip
connections and the head; a block owns one residual branch and two ways to run it:

* ``forward(stream, condition)``: the whole image at once, channels-last
  (B, H, W, 2h) -> (B, H, W, 2h), ``condition`` an optional bias (B, H, W, condition_features);
* ``incremental(batch, height, width, pad)``: a :class:`BlockCache` that computes the same
  branch one pixel at a time in raster order, from maps it keeps (for sampling).

An architecture is one file that defines a :class:`Block` subclass, plus one line in
:mod:`pixelrnn.models.registry`. Its class attributes describe it to the configuration checks,
the command line and the docs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import MaskedConv2d, channel_groups


class BlockCache:
    """A block evaluated one pixel at a time, in raster order, by a model's cache.

    ``stream`` is the block's input map as far as it is known, channels-last and zero-padded by
    ``pad`` cells, (B, H + 2P, W + 2P, 2h); ``bias`` the block's condition at the pixel
    (B, F) or row (B, W, F), or None.
    """

    def begin_row(self, stream: torch.Tensor, i: int, bias: torch.Tensor | None) -> torch.Tensor | None:
        """Work before row i's first pixel. A block whose branch has a part that depends on
        earlier rows only returns that part for the whole row, (B, W, 2h) (the rest zero), so
        that the model can give the next blocks their inputs a row ahead; others return None."""
        return None

    def at(self, stream: torch.Tensor, i: int, j: int, bias: torch.Tensor | None) -> torch.Tensor:
        """The branch (B, 2h) at pixel (i, j); the stream is known up to (i, j) inclusive."""
        raise NotImplementedError

    def finish_row(self, stream: torch.Tensor, i: int, bias: torch.Tensor | None) -> None:
        """Work after row i's last pixel has all its values (e.g. a right-to-left LSTM)."""


class Block(nn.Module):
    """One residual branch of an architecture, (B, H, W, 2h) -> (B, H, W, 2h), channels-last.

    Class attributes: ``name`` (the registry's and the CLI's), ``title`` and ``paper`` (for
    summaries and docs), ``uses_kernel_size`` (whether ``--kernel-size`` means anything to it),
    ``looks_ahead`` (whether its cache returns row-ahead parts from ``begin_row``). Instances set
    ``condition_features``, the width of the bias that ``forward`` takes.
    """

    name = ""
    title = ""
    paper = ""
    uses_kernel_size = True
    looks_ahead = False
    condition_features: int

    @classmethod
    def from_config(cls, config) -> Block:
        """A block of ``config`` (a :class:`pixelrnn.models.pixelrnn.ModelConfig`)."""
        return cls(config.hidden, config.channels, config.kernel_size)

    @classmethod
    def input_layer(cls, config) -> nn.Module:
        """The model's first layer: image (B, H, W, C) -> stream (B, H, W, 2h). The paper's
        7x7 mask-A convolution unless an architecture needs another."""
        c = config.channels
        return MaskedConv2d(torch.arange(c), channel_groups(2 * config.hidden, c), config.input_kernel, "A")

    def forward(self, stream: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def incremental(self, batch: int, height: int, width: int, pad: int) -> BlockCache:
        raise NotImplementedError

    def set_fused(self, enabled: bool) -> None:
        """Recurrent blocks (those with a ``fused`` attribute): run the fused scan (True) or the
        plain reference loop (False)."""
        if getattr(self, "fused", None) is not None:
            self.fused = enabled


def padded_map(batch: int, height: int, width: int, features: int, pad: int,
               like: torch.Tensor) -> torch.Tensor:
    """Zeros (B, H + 2P, W + 2P, F) of ``like``'s dtype and device: a cache's map with its border."""
    return like.new_zeros(batch, height + 2 * pad, width + 2 * pad, features)


def plus(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x if bias is None else x + bias
