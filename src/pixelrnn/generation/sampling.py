"""Exact ancestral sampling and image completion (paper sections 2, 5; Figure 1).

Values are drawn in the model's order: rows top to bottom, pixels left to right,
channels R, G, B. Each draw takes one uniform number per image from a seeded
generator and inverts the cumulative distribution of the conditional, so the
two methods consume the same random numbers in the same order:

* ``"naive"`` reruns the whole network for every value (the reference);
* ``"cached"`` evaluates each layer only at the new pixel from cached states
  (the model's ``incremental`` cache, :class:`pixelrnn.models.pixel_cache.PixelCache`).

With the same seed they return the same images, except where float rounding
moves a probability across the drawn uniform number. The loop here knows nothing of the
model but its cache; a model with stages (Multi-Scale PixelRNN) runs it once per stage.
"""

from __future__ import annotations

import math

import torch

from ..errors import PixelRNNError
from ..runtime import full_float32

METHODS = ("cached", "naive")


def draw(logits: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF draw from categorical logits (B, levels) with uniforms (B,) -> (B,) long."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    below = (probs.cumsum(-1) < uniform.unsqueeze(-1)).sum(-1)
    return below.clamp(max=logits.shape[-1] - 1)


def check_options(method: str, temperature: float) -> None:
    if method not in METHODS:
        raise PixelRNNError(f"unknown sampling method {method!r}; known: {', '.join(METHODS)}")
    if not (temperature > 0 and math.isfinite(temperature)):  # nan would draw garbage silently
        raise PixelRNNError(f"temperature must be positive and finite, got {temperature}")


def make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A generator seeded with ``seed``, or randomly for None; a generator is used as it is
    (so that batches drawn one after another continue one stream of random numbers)."""
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class NaiveCache:
    """The cache interface on top of the whole model: ``logits_of(images)`` (B, C, L, H, W) is
    rerun for every value."""

    def __init__(self, logits_of, images: torch.Tensor) -> None:
        self.logits_of, self.images = logits_of, images

    def set_value(self, i, j, c, value):
        pass  # the loop writes the value into the images it passed here

    def begin_row(self, i):
        pass

    def logits(self, i, j):
        return self.logits_of(self.images)[..., i, j]

    def known(self, i, j):
        pass

    def finish_row(self, i):
        pass


@torch.no_grad()
@full_float32()  # no TF32 on a GPU: a seed draws the CPU's images, up to float rounding
def raster_fill(cache, images: torch.Tensor, given: torch.Tensor, generator: torch.Generator,
                temperature: float, progress, desc: str = "sampling") -> torch.Tensor:
    """Fill the pixels of ``images`` (B, C, H, W) long where ``given`` (H, W) is False, in
    place, in raster order, from the logits of ``cache`` (a model's ``incremental`` cache or a
    :class:`NaiveCache`); the given pixels keep their values and are fed to the cache.

    ``progress``: True for a progress bar, or a callable ``on_row(i, images)`` called after
    each row i is complete (to show images as they are drawn; an exception it raises, e.g. to
    cancel, ends the pass)."""
    from tqdm import tqdm

    batch, channels, height, width = images.shape
    given = given.tolist()
    on_row = progress if callable(progress) else None
    bar = tqdm(total=sum(not g for row in given for g in row) * channels, disable=on_row is not None or not progress,
               unit="value", desc=desc, leave=False)
    for i in range(height):
        cache.begin_row(i)
        for j in range(width):
            if given[i][j]:
                for c in range(channels):
                    cache.set_value(i, j, c, images[:, c, i, j])
                cache.known(i, j)
                continue
            for c in range(channels):
                logits = cache.logits(i, j)[:, c]
                uniform = torch.rand(batch, generator=generator, dtype=torch.float64)
                value = draw(logits, uniform.to(logits.device), temperature)
                images[:, c, i, j] = value
                cache.set_value(i, j, c, value)
                bar.update(1)
        cache.finish_row(i)
        if on_row is not None:
            on_row(i, images)
    bar.close()
    return images


def sample(model, n: int, height: int, width: int, *, labels=None, seed: int | None = None,
           method: str = "cached", temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Draw ``n`` images from the model: (n, C, height, width) long in [0, levels); the same as
    ``model.sample(...)``. ``temperature`` divides the logits (1.0: the model's own distribution)."""
    return model.sample(n, height, width, labels=labels, seed=seed, method=method, temperature=temperature,
                        progress=progress)


def complete(model, images: torch.Tensor, known_rows: int, *, labels=None, seed: int | None = None,
             method: str = "cached", temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Keep rows < ``known_rows`` of each image (B, C, H, W) and sample the rest from the model;
    the same as ``model.complete(...)``."""
    return model.complete(images, known_rows, labels=labels, seed=seed, method=method, temperature=temperature,
                          progress=progress)


def completion_rows(model, images: torch.Tensor, known_rows: int, samples: int, *, labels=None,
                    seed: int | None = None, method: str = "cached", progress: bool = False) -> list[torch.Tensor]:
    """The paper's Figure 1 for images (B, C, H, W): the originals, the originals with rows
    >= ``known_rows`` hidden (-1, drawn grey), then ``samples`` completions (seeds seed, seed + 1,
    ...); a list of 2 + samples (B, C, H, W) tensors on the CPU. Stack them on dim 1 for one row
    per image."""
    occluded = images.clone()
    occluded[:, :, known_rows:] = -1
    rows = [images.cpu(), occluded.cpu()]
    for k in range(samples):
        rows.append(model.complete(images, known_rows, labels=labels, seed=None if seed is None else seed + k,
                                   method=method, progress=progress).cpu())
    return rows
