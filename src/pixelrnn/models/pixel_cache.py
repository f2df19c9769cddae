"""A model evaluated one pixel at a time, every layer's state cached (for sampling).

The naive sampler reruns the whole network for each of the H*W*C values. Here each block
keeps what it has computed so far (its :class:`pixelrnn.models.block.BlockCache`), so the
logits of pixel (i, j) cost one evaluation of every layer at that pixel. The residual sums,
skips and head are the model's own (:meth:`PixelRNN.trunk`, :meth:`PixelRNN.head`).

Maps are channels-last, (B, H + 2P, W + 2P, F), with a border of P cells that holds what a
convolution's zero padding or a learned initial state would give. Recomputing a pixel (once
per channel of RGB images) overwrites its states from the same neighbours, so it is exact:
the results equal the whole model's up to float rounding (the same products, summed in
another order).
"""

from __future__ import annotations

import torch

from .block import padded_map


class PixelCache:
    """Logits of one pixel at a time for a batch of images generated in raster order.

    Per row i: ``begin_row(i)``; for every pixel, ``set_value`` for each value that is known
    or drawn and ``logits(i, j)`` (B, C, levels) once the values before (i, j, c) are set
    (``known(i, j)`` for a pixel whose values are all given); then ``finish_row(i)``.
    ``conditions``: the per-block bias maps of a conditional model, (B, H, W, F) each.
    """

    @torch.no_grad()
    def __init__(self, model, batch: int, height: int, width: int,
                 conditions: list[torch.Tensor] | None = None) -> None:
        cfg = model.config
        self.model, self.width = model, width
        self.conditions = conditions if conditions is not None else [None] * len(model.blocks)
        self.pad = pad = max(cfg.input_kernel // 2, cfg.kernel_size // 2, 1)
        like = model.head_out.weight
        self.canvas = padded_map(batch, height, width, cfg.channels, pad, like)  # scaled values
        self.step = 2.0 / (cfg.levels - 1)  # model.scale, without its module lookups per value
        self.input = model.input_conv.at_pixels(pad)
        self.streams = [padded_map(batch, height, width, 2 * cfg.hidden, pad, like) for _ in model.blocks]
        self.caches = [block.incremental(batch, height, width, pad) for block in model.blocks]
        skips = [s.at_pixels(pad) for s in model.skips] if model.skips is not None else []
        self.skip = lambda k, stream: skips[k].pointwise(stream)
        self.head_layers = model.head_hidden.at_pixels(pad).pointwise, model.head_out.at_pixels(pad).pointwise
        self.looks_ahead = any(type(block).looks_ahead for block in model.blocks)

    def set_value(self, i: int, j: int, c: int, value: torch.Tensor) -> None:
        """value: (B,) integers in [0, levels)."""
        self.canvas[:, self.pad + i, self.pad + j, c] = value.to(self.canvas.dtype) * self.step - 1.0

    def _bias(self, k: int, *index):
        bias = self.conditions[k]
        return None if bias is None else bias[(slice(None), *index)]

    @torch.no_grad()
    def begin_row(self, i: int) -> None:
        """Blocks that work a row ahead get their inputs for the whole of row i."""
        if not self.looks_ahead:
            return
        p, width = self.pad, self.width

        def branch(k, stream):
            self.streams[k][:, p + i, p : p + width] = stream
            ahead = self.caches[k].begin_row(self.streams[k], i, self._bias(k, i))
            return torch.zeros_like(stream) if ahead is None else ahead

        self.model.trunk(self.input.row(self.canvas, i, width), branch, None)

    @torch.no_grad()
    def logits(self, i: int, j: int) -> torch.Tensor:
        p = self.pad

        streams, caches, conditions = self.streams, self.caches, self.conditions

        def branch(k, stream):
            streams[k][:, p + i, p + j] = stream
            bias = conditions[k]
            return caches[k].at(streams[k], i, j, None if bias is None else bias[:, i, j])

        features = self.model.trunk(self.input.at(self.canvas, i, j), branch, self.skip)
        return self.model.head(features, *self.head_layers)

    def known(self, i: int, j: int) -> None:
        """Pixel (i, j) has all its values given: update the states that later pixels read."""
        self.logits(i, j)

    @torch.no_grad()
    def finish_row(self, i: int) -> None:
        for k, (cache, stream) in enumerate(zip(self.caches, self.streams)):
            cache.finish_row(stream, i, self._bias(k, i))
