"""Multi-Scale PixelRNN (paper section 3.6): a small image first, then the full image given it.

    x (B, C, H, W)  ->  s = subsample(x, f) = x[:, :, ::f, ::f]     (B, C, ceil(H/f), ceil(W/f))
    p(x) = p_small(s) * prod over the values of x not in s of p_large(x_k | x_<k, s)

An unconditional PixelRNN models s; a conditional PixelRNN generates the full
image given s. The small image is a deterministic function of the full one and
is made of its pixels: pixel (f i, f j) of x is pixel (i, j) of s. The
conditional stage therefore copies those values from s (probability one) and
predicts only the others, in raster order. So p sums to one over all full
images and ln p(x) = ln p_small(s) + (the conditional stage's log-probabilities
of the other values) is the exact log-likelihood, not a bound.

Conditioning network: s, scaled to [-1, 1] -> 3x3 convolution (C -> F) -> ReLU
-> transposed convolution with kernel and stride f (F -> F, the upsampling)
-> ReLU, cropped to H x W; then, for every layer of the conditional network, an
unmasked 1x1 convolution to that layer's input-to-state width (4h for a Row
LSTM, 2 x 4h for the two directions of a Diagonal BiLSTM, h for the masked
convolution of a PixelCNN block), added there as a bias. s is known in full
before the second stage starts, so these maps need no mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PixelRNNError
from .distribution import ImageDistribution
from .pixelrnn import ModelConfig, PixelRNN, integer_values, model_options


def subsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., H, W) -> (..., ceil(H/f), ceil(W/f)): the pixels at (f i, f j)."""
    return x[..., ::factor, ::factor]


def given_by_small_image(height: int, width: int, factor: int, device=None) -> torch.Tensor:
    """(H, W) bool: True at the pixels that the small image holds, (f i, f j)."""
    rows = torch.arange(height, device=device) % factor == 0
    cols = torch.arange(width, device=device) % factor == 0
    return rows[:, None] & cols[None, :]


@dataclass(frozen=True)
class MultiScaleConfig:
    """The two stages (same channels and levels) and the conditioning network.

    factor: the subsampling factor f (s = n / f); condition_features: F, the
    width of the upsampled conditioning map.
    """

    small: ModelConfig
    large: ModelConfig
    factor: int = 2
    condition_features: int = 32

    architecture = "multiscale"

    def __post_init__(self) -> None:
        if self.factor < 2:
            raise PixelRNNError(f"the multi-scale factor must be >= 2, got {self.factor}")
        if self.condition_features < 1:
            raise PixelRNNError(f"condition_features must be >= 1, got {self.condition_features}")
        if (self.small.channels, self.small.levels, self.small.classes) != (
                self.large.channels, self.large.levels, self.large.classes):
            raise PixelRNNError("the two stages of a multi-scale model need the same channels, levels and classes")

    @property
    def levels(self) -> int:
        """Values per sub-pixel, the same in both stages."""
        return self.large.levels

    def summary(self) -> str:
        return (f"multi-scale, factor {self.factor}, conditioning features {self.condition_features}; "
                f"small image: {self.small.summary()}; full image: {self.large.summary()}")

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, "factor": self.factor,
                "condition_features": self.condition_features,
                "small": self.small.to_dict(), "large": self.large.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> MultiScaleConfig:
        d = {k: v for k, v in d.items() if k != "architecture"}
        return cls(**{**d, "small": ModelConfig(**d["small"]), "large": ModelConfig(**d["large"])})


class Conditioner(nn.Module):
    """Small images (B, C, h, w), scaled -> one bias map (B, H, W, F_l) per conditional layer."""

    def __init__(self, channels: int, factor: int, features: int, layer_features: list[int]) -> None:
        super().__init__()
        self.embed = nn.Conv2d(channels, features, 3, padding=1)
        self.upsample = nn.ConvTranspose2d(features, features, factor, stride=factor)
        self.project = nn.ModuleList(nn.Linear(features, n) for n in layer_features)

    def forward(self, small: torch.Tensor, height: int, width: int) -> list[torch.Tensor]:
        up = torch.relu(self.upsample(torch.relu(self.embed(small))))
        up = up[:, :, :height, :width].permute(0, 2, 3, 1)  # (B, H, W, F)
        return [project(up) for project in self.project]


class MultiScalePixelRNN(ImageDistribution, nn.Module):
    """Two PixelRNNs: ``small`` models s = subsample(x), ``large`` the rest of x given s.

    ``log_prob(x)``: exact ln p(x) in nats, (B,), for images (B, C, H, W) in
    [0, levels), any H, W >= 1; ``stage_log_probs(x)`` gives the two terms. ``sample`` and
    ``complete`` draw the small image first, then the rest given it.
    """

    def __init__(self, config: MultiScaleConfig) -> None:
        super().__init__()
        self.config = config
        self.small = PixelRNN(config.small)
        self.large = PixelRNN(config.large)
        self.conditioner = Conditioner(
            config.large.channels, config.factor, config.condition_features,
            [block.condition_features for block in self.large.blocks],
        )

    @property
    def channels(self) -> int:
        return self.config.large.channels

    @property
    def levels(self) -> int:
        return self.config.large.levels

    @property
    def classes(self) -> int:
        return self.config.large.classes

    @property
    def class_log_prior(self) -> torch.Tensor:
        return self.large.class_log_prior

    @property
    def factor(self) -> int:
        return self.config.factor

    def check_images(self, x: torch.Tensor) -> None:
        self.large.check_images(x)

    def set_fused(self, enabled: bool) -> MultiScalePixelRNN:
        self.small.set_fused(enabled)
        self.large.set_fused(enabled)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise PixelRNNError("a multi-scale model has two stages and no single logits map: use "
                            "log_prob(x), stage_log_probs(x), or model.large(x, model.conditions(...))")

    def conditions(self, small: torch.Tensor, height: int, width: int) -> list[torch.Tensor]:
        """The conditional stage's per-layer bias maps for integer small images (B, C, h, w)."""
        return self.conditioner(self.small.scale(small), height, width)

    def stage_log_probs(self, x: torch.Tensor, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ln p_small(s), ln p_large(x | s)) in nats, each (B,), for integer images x (given
        ``labels`` (B,) for a class-conditional model: both stages see the label)."""
        per_value = self.conditional_value_log_probs(x, self._labels(labels, len(x))).flatten(2).sum(1)
        given = given_by_small_image(*x.shape[-2:], self.factor, x.device).flatten()
        return per_value[:, given].sum(1), per_value[:, ~given].sum(1)

    def conditional_value_log_probs(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """ln p of every value in nats, (B, C, H, W): the small stage's at the pixels it holds,
        (f i, f j), the conditional stage's elsewhere."""
        return self._by_stage(x, lambda stage, images, conditions: stage.value_log_probs(images, conditions, labels))

    def conditional_predictive_log_probs(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """ln p(x_t = v | x_<t) for every value and level, in nats, (B, C, levels, H, W): the small
        stage's at the pixels it holds, the conditional stage's elsewhere."""
        return self._by_stage(
            x, lambda stage, images, conditions: stage.conditional_predictive_log_probs(images, labels, conditions))

    def _by_stage(self, x: torch.Tensor, per_stage) -> torch.Tensor:
        """``per_stage(stage, images, conditions)`` of the conditional stage on integer images x (given
        their small image), with the small stage's (on the small image) at the pixels (f i, f j)."""
        self.check_images(x)
        x = integer_values(x)
        small = subsample(x, self.factor)
        full = per_stage(self.large, x, self.conditions(small, *x.shape[-2:]))
        full[..., :: self.factor, :: self.factor] = per_stage(self.small, small, None)
        return full

    def pixel_order(self, height: int, width: int) -> torch.Tensor:
        """The small image's pixels first (raster order), then the others (raster order)."""
        given = given_by_small_image(height, width, self.factor).flatten()
        return torch.cat([given.nonzero().squeeze(1), (~given).nonzero().squeeze(1)])

    def conditional_log_prob_terms(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(B, 2): ln p_small(s) and ln p_large(x | s), which sum to ln p(x) (or ln p(x | y))."""
        return torch.stack(self.stage_log_probs(x, labels), dim=1)

    def fill(self, images, given, generator, method, temperature, progress, conditions=None, labels=None):
        """The small image's missing pixels first (from the small stage), then the rest of the
        full image given it: the small image's pixel (i, j) is the full image's (f i, f j)."""
        f, (height, width) = self.factor, images.shape[-2:]
        small = subsample(images, f).contiguous()
        self.small.fill(small, subsample(given, f), generator, method, temperature, progress, labels=labels)
        images[:, :, ::f, ::f] = small
        given = given | given_by_small_image(height, width, f)
        conditions = self.conditions(small, height, width)
        return self.large.fill(images, given, generator, method, temperature, progress, conditions, labels)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, condition_features={self.config.condition_features}"


def build_multiscale(name: str, factor: int = 2, condition_features: int = 32,
                     **kwargs) -> MultiScalePixelRNN:
    """A multi-scale model whose two stages are both ``name`` (an architecture) with the
    :class:`ModelConfig` options ``kwargs``."""
    stage = ModelConfig(architecture=name.replace("-", "_"), **model_options(kwargs))
    return MultiScalePixelRNN(MultiScaleConfig(stage, stage, factor, condition_features))


AnyModel = PixelRNN | MultiScalePixelRNN


def model_from_config(config: dict) -> AnyModel:
    """A fresh model from a configuration dictionary (a checkpoint's ``model_config``)."""
    if config.get("architecture") == MultiScaleConfig.architecture:
        return MultiScalePixelRNN(MultiScaleConfig.from_dict(config))
    return PixelRNN(ModelConfig(**config))


def weight_layout(config: ModelConfig | MultiScaleConfig) -> dict:
    """A model configuration as a dictionary, less its dropout rates (which weights do not depend
    on): two models whose layouts are equal can exchange weights (``--init-from``)."""
    def strip(options: dict) -> dict:
        return {k: strip(v) if isinstance(v, dict) else v for k, v in options.items() if k != "dropout"}
    return strip(config.to_dict())
