"""Receptive fields: which earlier values the prediction of one value depends on (paper section 3,
Figures 2 and 4; the blind spots of sections 3.1, 3.2 and 3.5).

A model predicts value (c, i, j) from the values before it in the generation order: rows top to
bottom, pixels left to right, then R, G, B within a pixel (a Multi-Scale model, section 3.6,
first generates its small image, the pixels (f i, f j), in that order, then the others). Its
architecture decides which of those it can see: the PixelCNN a band above the pixel that depth
widens and a blind spot to its right, the Row LSTM a triangle, the Diagonal BiLSTM the whole
context but one value (the end of the row above, for pixels far to its left), the Gated PixelCNN
a rectangle that depth widens, with no blind spot. A Multi-Scale model's conditional stage sees,
besides its own context, the small image's pixels near the predicted one and near the pixels it
sees, through the conditioning network (a 3 x 3 convolution of the small image, upsampled).

``receptive_field`` measures it with the gradient of the prediction's logits with respect to the
input values, in float64, at several random images: a value the prediction cannot see has a
gradient of exactly zero at every image (its paths are masked or shifted away), and one it can see
a non-zero gradient at almost every image, so the union over a few images is exact. The
gradient's size says how much the prediction moves with each value there; for a trained model,
how far its attention reaches.
"""

from __future__ import annotations

import copy

import torch

from .errors import PixelRNNError
from .models.multiscale import AnyModel, MultiScalePixelRNN, subsample


def generation_order(model: AnyModel, height: int, width: int) -> torch.Tensor:
    """(C, H, W) long: each value's position in the order ``model`` generates them: its pixels in
    ``model.pixel_order`` (raster; a Multi-Scale model's small image first), then R, G, B in a pixel."""
    pixels = model.pixel_order(height, width)
    rank = torch.empty_like(pixels)
    rank[pixels] = torch.arange(len(pixels))  # pixel i * W + j -> its place in the order
    channels = torch.arange(model.channels).view(-1, 1, 1)
    return rank.view(1, height, width) * model.channels + channels


def check_pixel(pixel: tuple[int, int], height: int, width: int) -> None:
    """PixelRNNError unless pixel (row, column) lies in an H x W image."""
    if not (0 <= pixel[0] < height and 0 <= pixel[1] < width):
        raise PixelRNNError(f"pixel ({pixel[0]}, {pixel[1]}) is outside the {height} x {width} image")


def receptive_field(model: AnyModel, height: int, width: int, pixel: tuple[int, int], channel: int = 0,
                    images: int = 4, seed: int = 0, at: torch.Tensor | None = None, label: int = 0) -> torch.Tensor:
    """(C, H, W) float64 >= 0: the mean absolute gradient of value (``channel``, *``pixel``)'s logits
    (a fixed random mix of them, so that no level's change cancels another's) with respect to each
    input value, over ``images`` random H x W images, or at the images ``at`` ((B, C, H, W) values);
    zero exactly where the prediction does not depend on the value (at one given image: where it
    does not move it there). The model is not changed (a float64 copy in eval mode is measured). A
    class-conditional model is measured given class ``label``."""
    check_pixel(pixel, height, width)
    if not 0 <= channel < model.channels:
        raise PixelRNNError(f"channel {channel}: the model has channels 0..{model.channels - 1}")
    if model.classes and not 0 <= label < model.classes:
        raise PixelRNNError(f"class {label}: the model has classes 0..{model.classes - 1}")
    generator = torch.Generator().manual_seed(seed)
    if at is None:
        if images < 1:
            raise PixelRNNError(f"images {images}: needs at least 1")
        at = torch.rand(images, model.channels, height, width, generator=generator, dtype=torch.float64)
        at = at * (model.levels - 1)
    elif at.dim() != 4 or tuple(at.shape[1:]) != (model.channels, height, width):
        raise PixelRNNError(f"images of shape {tuple(at.shape)}: expected (B, {model.channels}, {height}, {width})")
    measured = copy.deepcopy(model).cpu().double().eval()
    x = at.detach().cpu().double().requires_grad_()
    mix = torch.randn(model.levels, generator=generator, dtype=torch.float64)
    labels = torch.full((len(x),), label, dtype=torch.long) if model.classes else None
    logits = _logits(measured, x, labels, pixel)[:, channel]  # (B, levels)
    (gradient,) = torch.autograd.grad((logits * mix).sum(), x)
    return gradient.abs().mean(0)


def _logits(model: AnyModel, x: torch.Tensor, labels, pixel: tuple[int, int]) -> torch.Tensor:
    """(B, C, levels): the logits of ``pixel``'s values; a Multi-Scale model's from the stage that
    predicts that pixel (the small image's at (f i, f j), else the conditional stage given it)."""
    if not isinstance(model, MultiScalePixelRNN):
        return model(x, labels=labels)[..., pixel[0], pixel[1]]
    f, small = model.factor, subsample(x, model.factor)
    if pixel[0] % f == 0 and pixel[1] % f == 0:
        return model.small(small, labels=labels)[..., pixel[0] // f, pixel[1] // f]
    conditions = model.conditions(small, *x.shape[-2:])
    return model.large(x, conditions, labels=labels)[..., pixel[0], pixel[1]]


def earlier_values(model: AnyModel, height: int, width: int, pixel: tuple[int, int], channel: int = 0) -> torch.Tensor:
    """(C, H, W) bool: the values ``model`` generates before value (``channel``, *``pixel``): what it
    could see."""
    order = generation_order(model, height, width)
    return order < order[channel, pixel[0], pixel[1]]


def describe(field: torch.Tensor, earlier: torch.Tensor) -> dict:
    """Counts for one field, given the values before its predicted one (``earlier_values``): the
    earlier values, those the prediction sees, its blind spot (earlier values it does not see),
    and any later value it sees (always 0 for a causal model)."""
    seen = field > 0
    return {"earlier": int(earlier.sum()), "seen": int((seen & earlier).sum()),
            "blind_spot": int((earlier & ~seen).sum()), "later_seen": int((seen & ~earlier).sum())}
