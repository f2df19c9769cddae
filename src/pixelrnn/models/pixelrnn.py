"""The PixelRNN model family: PixelCNN, Row LSTM and Diagonal BiLSTM (paper section 3).

Every model is the same stack (sections 3.3-3.5):

    image (B, C, H, W), values in [0, levels), scaled to [-1, 1]
      -> 7x7 convolution, mask A                           (C -> 2h features)
      -> `layers` residual blocks: stream + branch(stream)  (2h -> 2h)
         [optional learnable skip connection from every block: 1x1 mask B, summed]
      -> ReLU -> 1x1 mask B (2h -> head) -> ReLU -> 1x1 mask B (head -> C x levels)
      -> logits (B, C, levels, H, W)

The branch is a block of one architecture of :mod:`pixelrnn.models.registry` (PixelCNN,
Row LSTM, Diagonal BiLSTM, Gated PixelCNN), which may also bring its own input layer. All
feature maps are split into C channel groups (R, G, B) so that every prediction depends
only on earlier values in raster order and, inside a pixel, earlier channels.

The residual sums, skip connections and head are written once (:meth:`PixelRNN.trunk`,
:meth:`PixelRNN.head`) and serve both the whole-image pass and the one-pixel step of
:class:`pixelrnn.models.pixel_cache.PixelCache`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PixelRNNError
from ..layers import MaskedConv2d, channel_groups, masked_1x1
from .class_embedding import ClassEmbedding
from .distribution import ImageDistribution, sigmoid_as_logits, value_log_probs_channels_last
from .pixel_cache import PixelCache
from .registry import ARCHITECTURES

OUTPUTS = ("softmax", "sigmoid")
# The paper's ablation of section 3.3 (CIFAR-10, 12-layer Row LSTM: 3.06 bits/dim with both,
# 3.07 with residual connections only, 3.09 with skip connections only): name -> (residual, skip).
CONNECTIONS = {"both": (True, True), "residual": (True, False), "skip": (False, True), "none": (False, False)}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a PixelRNN model; defaults are the paper's choices.

    head: features of the output head (the paper: 32 for MNIST, 1024 for
    CIFAR-10 and ImageNet); None picks 32 for 2 levels, else 1024.
    output: "sigmoid" (the paper's choice for binary data, levels must be 2)
    or "softmax"; None picks sigmoid for 2 levels, else softmax.
    dropout: probability of zeroing each output of a residual branch in
    training (not in the paper; a regulariser, off by default, inactive in eval).
    """

    architecture: str
    channels: int = 1
    levels: int = 256
    hidden: int = 16
    layers: int = 7
    head: int | None = None
    output: str | None = None
    residual: bool = True
    skip: bool = True
    input_kernel: int = 7
    kernel_size: int = 3  # PixelCNN's masked convolutions and the Row LSTM's 1 x k kernels
    dropout: float = 0.0
    classes: int = 0  # K > 0: class-conditional, p(x | y) for labels y in [0, K) (class_embedding.py)

    def __post_init__(self) -> None:
        if self.head is None:
            object.__setattr__(self, "head", 32 if self.levels == 2 else 1024)
        if self.output is None:
            object.__setattr__(self, "output", "sigmoid" if self.levels == 2 else "softmax")
        self.validate()

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise PixelRNNError(
                f"unknown model {self.architecture!r}; known models: {', '.join(ARCHITECTURES)}"
            )
        if self.channels not in (1, 3):
            raise PixelRNNError(f"channels must be 1 or 3, got {self.channels}")
        if not 2 <= self.levels <= 256:
            raise PixelRNNError(f"levels must be in 2..256, got {self.levels}")
        if self.output not in OUTPUTS:
            raise PixelRNNError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.output == "sigmoid" and self.levels != 2:
            raise PixelRNNError(f"the sigmoid output needs levels=2, got levels={self.levels}")
        if not 0 <= self.dropout < 1:
            raise PixelRNNError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.layers < 1:
            raise PixelRNNError(f"layers must be >= 1, got {self.layers}")
        if self.classes < 0 or self.classes == 1:
            raise PixelRNNError(f"classes must be 0 (unconditional) or >= 2, got {self.classes}")
        for name in ("hidden", "head"):
            if getattr(self, name) < self.channels:
                raise PixelRNNError(
                    f"{name}={getattr(self, name)} is too small to split into "
                    f"{self.channels} channel groups"
                )
        for name in ("input_kernel", "kernel_size"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise PixelRNNError(f"{name} must be odd and positive, got {getattr(self, name)}")

    @property
    def block_class(self) -> type:
        return ARCHITECTURES[self.architecture]

    @property
    def connections(self) -> str:
        """The residual and skip connections as one name of :data:`CONNECTIONS`."""
        return next(name for name, pair in CONNECTIONS.items() if pair == (self.residual, self.skip))

    def summary(self) -> str:
        """One line for model cards and reports."""
        kernel = self.kernel_size != 3 and self.block_class.uses_kernel_size
        return (f"{self.architecture}, h = {self.hidden}, {self.layers} layers, head {self.head}, "
                f"{self.output} output, residual {self.residual}, skip {self.skip}"
                + (f", kernel size {self.kernel_size}" if kernel else "")
                + (f", dropout {self.dropout:g}" if self.dropout else "")
                + (f", conditional on {self.classes} classes" if self.classes else ""))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class PixelRNN(ImageDistribution, nn.Module):
    """An autoregressive image model with exact discrete likelihoods.

    ``model(x)`` maps images (B, C, H, W) -- integers in [0, levels), or the same
    values as floats for a differentiable input -- to logits (B, C, levels, H, W);
    the logits at (c, i, j) depend only on values before (i, j, c) in raster
    order (then R, G, B inside a pixel). ``log_prob(x)`` is the exact
    log-likelihood of each image in nats, shape (B,). Any H, W >= 1. ``sample`` and
    ``complete`` draw from it (:class:`pixelrnn.distributions.ImageDistribution`).

    ``conditions``, optional: one channels-last map (B, H, W, F) per block, F =
    ``block.condition_features``, added inside the block as a bias (the
    conditional stage of :class:`pixelrnn.multiscale.MultiScalePixelRNN`). A class-conditional
    model (``config.classes`` = K) takes ``labels`` (B,) in [0, K) and adds its class embedding to
    them (:mod:`pixelrnn.models.class_embedding`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c, h2 = config.channels, 2 * config.hidden
        block_class = config.block_class
        self.input_conv = block_class.input_layer(config)
        self.blocks = nn.ModuleList(block_class.from_config(config) for _ in range(config.layers))
        self.class_embedding = (
            ClassEmbedding(config.classes, [block.condition_features for block in self.blocks])
            if config.classes else None
        )
        self.branch_dropout = nn.Dropout(config.dropout)  # no weights: a model file loads either way
        self.skips = (
            nn.ModuleList(masked_1x1(h2, h2, c) for _ in range(config.layers))
            if config.skip
            else None
        )
        out_per_channel = 1 if config.output == "sigmoid" else config.levels
        self.head_hidden = masked_1x1(h2, config.head, c)
        self.head_out = MaskedConv2d(
            channel_groups(config.head, c),
            torch.arange(c).repeat_interleave(out_per_channel),  # channel-major: (C, levels)
            1,
            "B",
        )

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def classes(self) -> int:
        return self.config.classes

    @property
    def class_log_prior(self) -> torch.Tensor:
        """ln p(y), (K,): the training labels' frequencies."""
        return self.class_embedding.log_prior

    def with_labels(self, conditions: list | None, labels: torch.Tensor | None, height: int, width: int) -> list | None:
        """The per-block bias maps: ``conditions`` plus the class embedding of checked ``labels``
        (B,) long (``_labels``) for a class-conditional model, which needs them."""
        if labels is None:
            if self.classes:
                raise PixelRNNError(f"this model is class-conditional: give labels in 0..{self.classes - 1}")
            return conditions
        biases = self.class_embedding(labels, height, width)
        return biases if conditions is None else [c + b for c, b in zip(conditions, biases)]

    def set_fused(self, enabled: bool) -> PixelRNN:
        """Run the recurrent layers with the fused scan (default) or the plain reference loops."""
        for block in self.blocks:
            block.set_fused(enabled)
        return self

    def check_images(self, x: torch.Tensor) -> None:
        """Raise PixelRNNError unless x is (B, C, H, W) with this model's C and, for
        integer tensors, values in [0, levels)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise PixelRNNError(
                f"expected images of shape (B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point() and x.numel():
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= self.levels:
                raise PixelRNNError(
                    f"image values must be in [0, {self.levels - 1}], got [{low}, {high}]"
                )

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Values in [0, levels) -> floats in [-1, 1] (the paper: scaled and centred)."""
        dtype = self.head_out.weight.dtype
        return x.to(dtype) * (2.0 / (self.levels - 1)) - 1.0

    def trunk(self, stream: torch.Tensor, branch, skip) -> torch.Tensor:
        """The residual stack on a stream of any shape (..., 2h) -> the head's input (..., 2h).

        ``branch(k, stream)``: block k's branch; ``skip(k, stream)``: skip connection k's
        projection, or ``skip=None`` to leave them out. The one place where residual sums and
        skip connections are made, for the whole image and for one pixel alike.
        """
        # Read once: nn.Module attribute lookups and a no-op dropout would cost more than the
        # products of a one-pixel step.
        residual, skips = self.config.residual, skip if self.skips is not None else None
        dropout = self.branch_dropout if self.training and self.config.dropout else None
        skip_sum = None
        for index in range(self.config.layers):
            out = branch(index, stream)
            if dropout is not None:
                out = dropout(out)
            stream = stream + out if residual else out
            if skips is not None:
                projected = skips(index, stream)
                skip_sum = projected if skip_sum is None else skip_sum + projected
        return stream if skip_sum is None else skip_sum

    @staticmethod
    def head_outputs(features: torch.Tensor, hidden, out) -> torch.Tensor:
        """ReLU -> 1x1 -> ReLU -> 1x1 on channels-last features (B, ..., 2h) -> (B, ..., C x L)
        (or C Bernoulli logits); ``hidden`` and ``out`` are the two 1x1 layers as callables on
        (..., F), for the whole image or one pixel."""
        return out(torch.relu(hidden(torch.relu(features))))

    def head(self, features: torch.Tensor, hidden, out) -> torch.Tensor:
        """:meth:`head_outputs` as logits (B, C, levels, ...)."""
        raw = self.head_outputs(features, hidden, out).movedim(-1, 1)  # (B, C x L, ...)
        if self.config.output == "sigmoid":
            return sigmoid_as_logits(raw)
        return raw.unflatten(1, (self.channels, self.levels))

    def features(self, x: torch.Tensor, conditions: list | None = None) -> torch.Tensor:
        """Head input (B, H, W, 2h) for scaled channels-last images (B, H, W, C)."""
        if conditions is not None and len(conditions) != len(self.blocks):
            raise PixelRNNError(f"expected {len(self.blocks)} condition maps, got {len(conditions)}")
        blocks, skips = self.blocks, self.skips
        return self.trunk(
            self.input_conv.forward_nhwc(x),
            lambda k, stream: blocks[k](stream, None if conditions is None else conditions[k]),
            lambda k, stream: skips[k].forward_nhwc(stream),
        )

    def forward(self, x: torch.Tensor, conditions: list | None = None, labels=None) -> torch.Tensor:
        self.check_images(x)
        conditions = self.with_labels(conditions, self._labels(labels, len(x)), *x.shape[-2:])
        # Feature maps are channels-last, (B, H, W, F): see MaskedConv2d.forward_nhwc.
        out = self.features(self.scale(x).permute(0, 2, 3, 1).contiguous(), conditions)
        return self.head(out, self.head_hidden.forward_nhwc, self.head_out.forward_nhwc)

    def incremental(self, batch: int, height: int, width: int,
                    conditions: list[torch.Tensor] | None = None, labels=None) -> PixelCache:
        """A cache that computes the logits one pixel at a time (sampling); ``conditions`` and
        ``labels`` as for :meth:`forward`."""
        conditions = self.with_labels(conditions, self._labels(labels, batch), height, width)
        return PixelCache(self, batch, height, width, conditions)

    def conditional_log_prob_terms(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """ln p(x) (or ln p(x | y)) in nats as terms that sum to it, (B, 1): one term."""
        return self.value_log_probs(x, labels=labels).flatten(1).sum(1, keepdim=True)

    def conditional_value_log_probs(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """ln p of every value given the ones before it (and the labels), in nats, (B, C, H, W)."""
        return self.value_log_probs(x, labels=labels)

    def conditional_predictive_log_probs(self, x: torch.Tensor, labels: torch.Tensor | None,
                                         conditions: list | None = None) -> torch.Tensor:
        """ln p(x_t = v | x_<t) (and the labels) for every value and level, in nats, (B, C, levels, H, W)."""
        x = integer_values(x)
        return self(x, conditions, labels).log_softmax(2)

    def value_log_probs(self, x: torch.Tensor, conditions: list | None = None, labels=None) -> torch.Tensor:
        """ln p of every value of integer images x given the values before it, in nats,
        (B, C, H, W). The same as ``value_log_probs(model(x), x)``, computed channels-last: the
        softmax runs over contiguous levels, with no (B, C, levels, H, W) copy of the logits."""
        x = integer_values(x)
        self.check_images(x)
        conditions = self.with_labels(conditions, self._labels(labels, len(x)), *x.shape[-2:])
        features = self.features(self.scale(x).permute(0, 2, 3, 1).contiguous(), conditions)
        raw = self.head_outputs(features, self.head_hidden.forward_nhwc, self.head_out.forward_nhwc)
        return value_log_probs_channels_last(raw, x, self.config.output)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"architecture={cfg.architecture}, channels={cfg.channels}, levels={cfg.levels}, "
            f"hidden={cfg.hidden}, layers={cfg.layers}, head={cfg.head}, output={cfg.output}, "
            f"residual={cfg.residual}, skip={cfg.skip}" + (f", dropout={cfg.dropout}" if cfg.dropout else "")
            + (f", classes={cfg.classes}" if cfg.classes else "")
        )


def integer_values(x: torch.Tensor) -> torch.Tensor:
    """Images as integer values for ``log_prob``: integer tensors as they are, floats that hold
    whole numbers as long; PixelRNNError for anything else."""
    if not x.is_floating_point():
        return x
    if not torch.equal(x, x.round()):
        raise PixelRNNError("log_prob needs integer image values")
    return x.long()


def build_model(name: str, **kwargs) -> PixelRNN:
    """Build a model by architecture name (a key of ``ARCHITECTURES``, e.g. "pixelcnn").

    Keyword arguments are the fields of :class:`ModelConfig` (channels, levels,
    hidden, layers, head, output, residual, skip, input_kernel, kernel_size, dropout).
    """
    return PixelRNN(ModelConfig(architecture=name.replace("-", "_"), **model_options(kwargs)))


def model_options(kwargs: dict) -> dict:
    """``kwargs`` if they are all :class:`ModelConfig` fields (but the architecture), else TypeError."""
    options = {f.name for f in dataclasses.fields(ModelConfig)} - {"architecture"}
    unknown = set(kwargs) - options
    if unknown:
        raise TypeError(
            f"unknown model option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(options))}"
        )
    return kwargs
