"""Exact ancestral sampling and image completion (paper sections 2, 5; Figure 1).

Values are drawn in the model's order: rows top to bottom, pixels left to right,
channels R, G, B. Each draw takes one uniform number per image from a seeded
generator and inverts the cumulative distribution of the conditional, so the
two methods consume the same random numbers in the same order:

* ``"naive"`` reruns the whole network for every value (the reference);
* ``"cached"`` evaluates each layer only at the new pixel from cached states
  (:class:`pixelrnn.incremental.IncrementalPixelRNN`).

With the same seed they return the same images, except where float rounding
moves a probability across the drawn uniform number. A Multi-Scale PixelRNN
draws its small image first, then the rest of the full image given it.
"""

from __future__ import annotations

import math

import torch

from .errors import PixelRNNError
from .incremental import IncrementalPixelRNN
from .models import PixelRNN
from .multiscale import AnyModel, MultiScalePixelRNN, given_by_small_image, subsample

METHODS = ("cached", "naive")


def draw(logits: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF draw from categorical logits (B, levels) with uniforms (B,) -> (B,) long."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    below = (probs.cumsum(-1) < uniform.unsqueeze(-1)).sum(-1)
    return below.clamp(max=logits.shape[-1] - 1)


@torch.no_grad()
def _generate(model: PixelRNN, images: torch.Tensor, given: torch.Tensor, generator: torch.Generator,
              method: str, temperature: float, progress: bool,
              conditions: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Fill the pixels of ``images`` (B, C, H, W) long where ``given`` (H, W) is False, in
    place, in raster order; the given pixels keep their values. ``conditions``: the
    per-layer bias maps of a conditional model."""
    from tqdm import tqdm

    batch, channels, height, width = images.shape
    cache = IncrementalPixelRNN(model, batch, height, width, conditions) if method == "cached" else None
    given = given.tolist()
    bar = tqdm(total=sum(not g for row in given for g in row) * channels, disable=not progress,
               unit="value", desc=f"sampling ({method})", leave=False)
    for i in range(height):
        for j in range(width):
            if given[i][j]:
                if cache is not None:  # teacher-force the given pixel through the cache
                    for c in range(channels):
                        cache.set_value(i, j, c, images[:, c, i, j])
                    cache.logits(i, j)
                continue
            for c in range(channels):
                if cache is not None:
                    logits = cache.logits(i, j)[:, c]
                else:
                    logits = model(images, conditions)[:, c, :, i, j]
                uniform = torch.rand(batch, generator=generator, dtype=torch.float64)
                value = draw(logits, uniform.to(logits.device), temperature)
                images[:, c, i, j] = value
                if cache is not None:
                    cache.set_value(i, j, c, value)
                bar.update(1)
        if cache is not None:
            cache.finish_row(i)
    bar.close()
    return images


def _fill(model: AnyModel, canvas: torch.Tensor, known_rows: int, generator: torch.Generator,
          method: str, temperature: float, progress: bool) -> torch.Tensor:
    """Keep rows < known_rows of ``canvas`` (B, C, H, W) long and sample the rest, in place.

    A multi-scale model samples (the rest of) its small image first, then the
    full image given it: the small image's pixel (i, j) is the full image's (f i, f j).
    """
    if method not in METHODS:
        raise PixelRNNError(f"unknown sampling method {method!r}; known: {', '.join(METHODS)}")
    if not (temperature > 0 and math.isfinite(temperature)):  # nan would draw garbage silently
        raise PixelRNNError(f"temperature must be positive and finite, got {temperature}")
    height, width = canvas.shape[-2:]
    known = torch.arange(height).unsqueeze(1).expand(height, width) < known_rows
    if not isinstance(model, MultiScalePixelRNN):
        return _generate(model, canvas, known, generator, method, temperature, progress)
    f = model.factor
    small = subsample(canvas, f).contiguous()
    _fill(model.small, small, -(-known_rows // f), generator, method, temperature, progress)
    canvas[:, :, ::f, ::f] = small
    given = known | given_by_small_image(height, width, f)
    conditions = model.conditions(small, height, width)
    return _generate(model.large, canvas, given, generator, method, temperature, progress, conditions)


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def sample(model: AnyModel, n: int, height: int, width: int, *, seed: int | None = None,
           method: str = "cached", temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Draw ``n`` images from the model: (n, C, height, width) long in [0, levels).

    ``temperature`` divides the logits (1.0: the model's own distribution).
    """
    if n < 1 or height < 1 or width < 1:
        raise PixelRNNError(f"need n, height, width >= 1, got {n}, {height}, {width}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    images = torch.zeros(n, model.channels, height, width, dtype=torch.long, device=device)
    out = _fill(model, images, 0, _generator(seed), method, temperature, progress)
    model.train(was_training)
    return out


def complete(model: AnyModel, images: torch.Tensor, known_rows: int, *, seed: int | None = None,
             method: str = "cached", temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
    """Keep rows < ``known_rows`` of each image (B, C, H, W) and sample the rest from the model."""
    model.check_images(images)
    if images.is_floating_point():
        raise PixelRNNError("complete() needs integer images in [0, levels)")
    if not 0 <= known_rows <= images.shape[2]:
        raise PixelRNNError(f"known rows (--known-rows) {known_rows}: must be in 0..{images.shape[2]}, "
                            "the images' height")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    canvas = images.to(device=device, dtype=torch.long).clone()
    canvas[:, :, known_rows:] = 0
    out = _fill(model, canvas, known_rows, _generator(seed), method, temperature, progress)
    model.train(was_training)
    return out
