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
from .class_embedding import check_labels
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

    A model defines ``conditional_log_prob_terms(x, labels)``: exact ln p(x | y) in nats as terms
    that sum to it, (B, T) (one term, or one per stage; ``labels`` None for an unconditional
    model), and ``classes`` (K, 0 for an unconditional model). From them: ``log_prob(x)`` and
    ``log_prob(x, labels)``, the marginal over classes of a class-conditional model, the class
    posterior p(y | x) by Bayes' rule, and ``sample`` / ``complete``, which draw the values that
    are not given in the model's order through ``fill``: one raster pass over the model's
    ``incremental`` cache (or, naively, its whole forward pass); a model with stages overrides it
    (paper sections 2, 5). No caller needs to know which model it holds.
    """

    classes: int

    def _labels(self, labels, batch: int) -> torch.Tensor | None:
        return check_labels(labels, self.classes, batch, next(self.parameters()).device)

    def log_prob_terms(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """ln p(x) or, with ``labels`` (B,), ln p(x | y) in nats as terms that sum to it, (B, T).
        A class-conditional model without labels: the exact marginal over classes, one term."""
        if self.classes and labels is None:
            return self.class_log_joint(x).logsumexp(1, keepdim=True)
        return self.conditional_log_prob_terms(x, self._labels(labels, len(x)))

    def log_prob(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """Exact ln p(x) of each image in nats, (B,); with ``labels`` (an int or (B,)) ln p(x | y).
        A class-conditional model without labels gives ln sum_y p(y) p(x | y)."""
        return self.log_prob_terms(x, labels).sum(1)

    def class_log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """ln p(y) + ln p(x | y) in nats for every class y, (B, K): one pass of the model per class."""
        if not self.classes:
            raise PixelRNNError("this model is not class-conditional: it has no classes")
        joint = [self.conditional_log_prob_terms(x, self._labels(y, len(x))).sum(1) for y in range(self.classes)]
        return torch.stack(joint, 1) + self.class_log_prior.to(joint[0].dtype)

    def class_log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """ln p(y | x) = ln p(y) + ln p(x | y) - ln p(x), (B, K), by Bayes' rule (the likelihood
        classifier: its argmax over y is the predicted class)."""
        joint = self.class_log_joint(x)
        return joint - joint.logsumexp(1, keepdim=True)

    def log_prob_per_value(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """ln p of every value given the values before it in the model's order, in nats, (B, C,
        H, W); they sum to ``log_prob(x, labels)``. A class-conditional model without labels gives
        the marginal's own conditionals, p(x_t | x_<t) = sum_y p(y | x_<t) p(x_t | x_<t, y)."""
        if not (self.classes and labels is None):
            return self.conditional_value_log_probs(x, self._labels(labels, len(x)))
        per_class = torch.stack([self.conditional_value_log_probs(x, self._labels(y, len(x))).double()
                                 for y in range(self.classes)], 1)  # (B, K, C, H, W)
        return (self._class_log_posterior_before(per_class) + per_class).logsumexp(1).to(torch.float32)

    def predictive_log_probs(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """ln p(x_t = v | x_<t) for every value t of ``x`` and every level v, in nats, (B, C,
        levels, H, W): the model's predictive distribution at each value (the softmax of section
        2.2 as it comes out). Taken at the values of ``x`` it is ``log_prob_per_value(x, labels)``. A
        class-conditional model without labels gives the marginal's, as that method does."""
        if not (self.classes and labels is None):
            return self.conditional_predictive_log_probs(x, self._labels(labels, len(x)))
        per_class = [self.conditional_predictive_log_probs(x, self._labels(y, len(x))).double()
                     for y in range(self.classes)]
        index = x.long().unsqueeze(2)  # whole values: the passes above checked them
        taken = torch.stack([lp.gather(2, index).squeeze(2) for lp in per_class], 1)  # (B, K, C, H, W)
        weights = self._class_log_posterior_before(taken)  # (B, K, C, H, W)
        return (weights.unsqueeze(3) + torch.stack(per_class, 1)).logsumexp(1).to(torch.float32)

    def _class_log_posterior_before(self, per_class: torch.Tensor) -> torch.Tensor:
        """ln p(y | x_<t) for every class y and value t, (B, K, C, H, W) float64, from each
        class's ln p(x_t | x_<t, y), (B, K, C, H, W), and the class prior."""
        batch, classes, channels, height, width = per_class.shape
        order = self.pixel_order(height, width).to(per_class.device)  # pixels in the model's order
        in_order = per_class.flatten(3)[..., order].transpose(2, 3).flatten(2)  # (B, K, T): pixel, then channel
        before = self.class_log_prior.double().to(per_class.device)[:, None] + in_order.cumsum(2) - in_order
        before = before - before.logsumexp(1, keepdim=True)  # ln p(y, x_<t) -> ln p(y | x_<t)
        weights = torch.empty_like(before).view(batch, classes, -1, channels)
        weights[:, :, order] = before.view(batch, classes, -1, channels)
        return weights.transpose(2, 3).reshape(batch, classes, channels, height, width)

    def pixel_order(self, height: int, width: int) -> torch.Tensor:
        """The indices (H * W,) of the pixels (i * W + j) in the order the model generates them:
        raster order (rows top to bottom, left to right)."""
        return torch.arange(height * width)

    def set_class_prior(self, labels: torch.Tensor) -> None:
        """p(y) from training labels (B,) (every ClassEmbedding of the model holds it)."""
        from .class_embedding import ClassEmbedding

        for module in self.modules():
            if isinstance(module, ClassEmbedding):
                module.set_prior(labels)

    def fill(self, images: torch.Tensor, given: torch.Tensor, generator: torch.Generator,
             method: str, temperature: float, progress: bool,
             conditions: list | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Draw the pixels of ``images`` (B, C, H, W) long where ``given`` (H, W) is False, in
        place, from one raster-order pass (``conditions``: bias maps of a conditional stage;
        ``labels``: (B,) classes of a class-conditional model)."""
        batch, _, height, width = images.shape
        if method == "cached":
            cache = self.incremental(batch, height, width, conditions, labels)
        else:
            cache = NaiveCache(lambda x: self(x, conditions, labels), images)
        return raster_fill(cache, images, given, generator, temperature, progress, f"sampling ({method})")

    def sample(self, n: int, height: int, width: int, *, labels=None, seed: int | None = None,
               method: str = "cached", temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
        """``n`` images drawn from the model: (n, C, height, width) long in [0, levels). A
        class-conditional model draws from p(x | y) for ``labels`` (an int or (n,)), or without
        them from p(x): y from the class prior first, then x given y. ``progress``: True for a bar,
        or ``on_row(i, images)`` called after every row of every pass (:func:`raster_fill`)."""
        if n < 1 or height < 1 or width < 1:
            raise PixelRNNError(f"need n, height, width >= 1, got {n}, {height}, {width}")
        device = next(self.parameters()).device
        images = torch.zeros(n, self.channels, height, width, dtype=torch.long, device=device)
        return self._fill_rows(images, 0, self._labels(labels, n), seed, method, temperature, progress)

    def complete(self, images: torch.Tensor, known_rows: int, *, labels=None, seed: int | None = None,
                 method: str = "cached", temperature: float = 1.0, progress: bool = False) -> torch.Tensor:
        """``images`` (B, C, H, W) with rows >= ``known_rows`` drawn from the model given the rest
        (and, for a class-conditional model, given ``labels``, an int or (B,): required)."""
        self.check_images(images)
        if images.is_floating_point():
            raise PixelRNNError("complete() needs integer images in [0, levels)")
        if not 0 <= known_rows <= images.shape[2]:
            raise PixelRNNError(f"known rows (--known-rows) {known_rows}: must be in 0..{images.shape[2]}, "
                                "the images' height")
        if self.classes and labels is None:
            raise PixelRNNError(f"this model is class-conditional: completing needs a label in 0..{self.classes - 1} "
                                "(--label K)")
        canvas = images.to(device=next(self.parameters()).device, dtype=torch.long).clone()
        canvas[:, :, known_rows:] = 0
        return self._fill_rows(canvas, known_rows, self._labels(labels, len(images)), seed, method, temperature,
                               progress)

    def _fill_rows(self, canvas, known_rows, labels, seed, method, temperature, progress) -> torch.Tensor:
        check_options(method, temperature)
        height, width = canvas.shape[-2:]
        given = (torch.arange(height) < known_rows).unsqueeze(1).expand(height, width)
        generator = make_generator(seed)
        if self.classes and labels is None:  # p(x) = sum_y p(y) p(x | y): draw y first
            prior = self.class_log_prior.double().exp().cpu()
            labels = torch.multinomial(prior, len(canvas), replacement=True, generator=generator).to(canvas.device)
        was_training = self.training
        self.eval()
        try:
            return self.fill(canvas, given, generator, method, temperature, progress, labels=labels)
        finally:
            self.train(was_training)
