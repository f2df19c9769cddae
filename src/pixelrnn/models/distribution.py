"""Discrete output distributions and likelihood units (paper sections 2.2, 5.1).

Every conditional p(x_{i,c} | x_<) is a categorical distribution over the
``levels`` values of a channel. Logits are laid out (B, C, levels, H, W).
The paper's sigmoid output for binary data is the special case
logits = [0, z], for which softmax gives p(x = 1) = sigmoid(z) exactly.
Log-likelihoods are natural logarithms (nats) throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import PixelRNNError
from ..generation.sampling import NaiveCache, check_options, make_generator, raster_fill

LN2 = math.log(2.0)


def sigmoid_as_logits(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) Bernoulli logits -> (B, C, 2, H, W) categorical logits [0, z]."""
    return torch.stack([torch.zeros_like(z), z], dim=2)


def value_log_probs(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ln p of every value given the ones before it, in nats, (B, C, H, W).

    logits: (B, C, levels, H, W); x: (B, C, H, W) integer values in [0, levels). Computed in
    float32 at least (bf16 logits of mixed precision are promoted first).
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.log_softmax(logits, dim=2).gather(2, x.long().unsqueeze(2)).squeeze(2)


def value_log_probs_channels_last(raw: torch.Tensor, x: torch.Tensor, output: str) -> torch.Tensor:
    """:func:`value_log_probs` from a model's head outputs, channels-last: ``raw`` (B, H, W, C x
    levels) softmax logits, or (B, H, W, C) Bernoulli logits z for ``output="sigmoid"`` (ln p(1) =
    ln sigmoid(z), ln p(0) = ln sigmoid(-z)); x (B, C, H, W) -> (B, C, H, W), float32 at least."""
    raw = raw.to(torch.promote_types(raw.dtype, torch.float32))
    values = x.long().permute(0, 2, 3, 1)  # (B, H, W, C)
    if output == "sigmoid":
        log_p = F.logsigmoid(torch.where(values == 1, raw, -raw))
    else:
        logits = raw.unflatten(-1, (values.shape[-1], -1))  # (B, H, W, C, levels), contiguous levels
        log_p = F.log_softmax(logits, dim=-1).gather(-1, values.unsqueeze(-1)).squeeze(-1)
    return log_p.permute(0, 3, 1, 2)


def log_prob_from_logits(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Exact log-likelihood in nats of each image, shape (B,); shapes as :func:`value_log_probs`."""
    return value_log_probs(logits, x).flatten(1).sum(1)


def bits_per_dim(nll_nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """Negative log-likelihood per image in nats -> bits per dimension.

    ``dims`` is the number of values per image, H * W * C:
    bits/dim = NLL_nats / (dims * ln 2).
    """
    return nll_nats / (dims * LN2)


def nats_to_bits(nats: torch.Tensor | float) -> torch.Tensor | float:
    """Nats -> bits (divide by ln 2)."""
    return nats / LN2


class ImageDistribution:
    """What every model is, as tfp.distributions.PixelCNN: a distribution over images.

    A model defines ``log_prob(x)`` (exact ln p in nats, (B,)) and ``log_prob_terms(x)`` (the
    same as terms that sum to it, (B, T): one, or one per stage). ``fill`` draws the values that
    are not given, in the model's order: here from one raster pass over the model's
    ``incremental`` cache (or, naively, its whole forward pass); a model with stages overrides
    it. ``sample`` and ``complete`` follow (paper sections 2, 5). No caller needs to know which
    model it holds.
    """

    def fill(self, images: torch.Tensor, given: torch.Tensor, generator: torch.Generator,
             method: str, temperature: float, progress: bool,
             conditions: list | None = None) -> torch.Tensor:
        """Draw the pixels of ``images`` (B, C, H, W) long where ``given`` (H, W) is False, in
        place, from one raster-order pass (``conditions``: a conditional model's bias maps)."""
        batch, _, height, width = images.shape
        if method == "cached":
            cache = self.incremental(batch, height, width, conditions)
        else:
            cache = NaiveCache(lambda x: self(x, conditions), images)
        return raster_fill(cache, images, given, generator, temperature, progress, f"sampling ({method})")

    def sample(self, n: int, height: int, width: int, *, seed: int | None = None, method: str = "cached",
               temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
        """``n`` images drawn from the model: (n, C, height, width) long in [0, levels)."""
        if n < 1 or height < 1 or width < 1:
            raise PixelRNNError(f"need n, height, width >= 1, got {n}, {height}, {width}")
        device = next(self.parameters()).device
        images = torch.zeros(n, self.channels, height, width, dtype=torch.long, device=device)
        return self._fill_rows(images, 0, seed, method, temperature, progress)

    def complete(self, images: torch.Tensor, known_rows: int, *, seed: int | None = None,
                 method: str = "cached", temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
        """``images`` (B, C, H, W) with rows >= ``known_rows`` drawn from the model given the rest."""
        self.check_images(images)
        if images.is_floating_point():
            raise PixelRNNError("complete() needs integer images in [0, levels)")
        if not 0 <= known_rows <= images.shape[2]:
            raise PixelRNNError(f"known rows (--known-rows) {known_rows}: must be in 0..{images.shape[2]}, "
                                "the images' height")
        canvas = images.to(device=next(self.parameters()).device, dtype=torch.long).clone()
        canvas[:, :, known_rows:] = 0
        return self._fill_rows(canvas, known_rows, seed, method, temperature, progress)

    def _fill_rows(self, canvas, known_rows, seed, method, temperature, progress) -> torch.Tensor:
        check_options(method, temperature)
        height, width = canvas.shape[-2:]
        given = (torch.arange(height) < known_rows).unsqueeze(1).expand(height, width)
        was_training = self.training
        self.eval()
        try:
            return self.fill(canvas, given, make_generator(seed), method, temperature, progress)
        finally:
            self.train(was_training)
