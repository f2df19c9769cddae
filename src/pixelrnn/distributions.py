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

LN2 = math.log(2.0)


def sigmoid_as_logits(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) Bernoulli logits -> (B, C, 2, H, W) categorical logits [0, z]."""
    return torch.stack([torch.zeros_like(z), z], dim=2)


def value_log_probs(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ln p of every value given the ones before it, in nats, (B, C, H, W).

    logits: (B, C, levels, H, W); x: (B, C, H, W) integer values in [0, levels).
    """
    return F.log_softmax(logits, dim=2).gather(2, x.long().unsqueeze(2)).squeeze(2)


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
    """The Distribution-like methods that every model has (as tfp.distributions.PixelCNN):
    ``log_prob(x)`` (each model's own: exact ln p in nats, (B,)), and ``sample`` and ``complete``,
    which are :func:`pixelrnn.sample` and :func:`pixelrnn.complete` (paper sections 2, 5)."""

    def sample(self, n: int, height: int, width: int, *, seed: int | None = None, method: str = "cached",
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` images drawn from the model: (n, C, height, width) long in [0, levels)."""
        from .sampling import sample

        return sample(self, n, height, width, seed=seed, method=method, temperature=temperature)

    def complete(self, images: torch.Tensor, known_rows: int, *, seed: int | None = None,
                 method: str = "cached", temperature: float = 1.0) -> torch.Tensor:
        """``images`` (B, C, H, W) with rows >= ``known_rows`` drawn from the model given the rest."""
        from .sampling import complete

        return complete(self, images, known_rows, seed=seed, method=method, temperature=temperature)
