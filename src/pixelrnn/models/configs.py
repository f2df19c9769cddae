"""The paper's model configurations by name, with the results it reports (Tables 4-6)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..layers import MaskedConv2d
from .pixelrnn import PixelRNN, build_model


@dataclass(frozen=True)
class PaperConfig:
    """A named configuration: the model options, the data it is for, and the paper's result."""

    name: str
    architecture: str
    model: dict
    dataset: str
    image_size: int
    paper_result: float
    unit: str  # "nats" (per image) or "bits/dim"
    note: str = ""
    split: str = field(default="test")


def _mnist(name, architecture, hidden, layers, result, note=""):
    model = dict(channels=1, levels=2, hidden=hidden, layers=layers, head=32)
    return PaperConfig(name, architecture, model, "binarized-mnist", 28, result, "nats", note)


def _natural(name, architecture, dataset, size, hidden, layers, result, split="test"):
    model = dict(channels=3, levels=256, hidden=hidden, layers=layers, head=1024)
    return PaperConfig(name, architecture, model, dataset, size, result, "bits/dim", split=split)


PAPER_CONFIGS: dict[str, PaperConfig] = {
    c.name: c
    for c in [
        _mnist("binarized-mnist-diagonal-bilstm", "diagonal_bilstm", 16, 7, 79.20),
        _mnist("binarized-mnist-diagonal-bilstm-1layer", "diagonal_bilstm", 32, 1, 80.75),
        _mnist(
            "binarized-mnist-row-lstm", "row_lstm", 32, 7, 80.54,
            "the paper does not state this model's size; 7 layers as its Diagonal BiLSTM, "
            "h = 32 (at h = 16 it plateaus at 81.80 nats after 28 epochs)",
        ),
        _mnist(
            "binarized-mnist-pixelcnn", "pixelcnn", 32, 15, 81.30,
            "the paper does not state this model's size; 15 blocks as its CIFAR-10 PixelCNN, "
            "h = 32 (at h = 16 it underfits: 85.95 nats after 32 epochs)",
        ),
        _natural("cifar10-pixelcnn", "pixelcnn", "cifar10", 32, 128, 15, 3.14),
        _natural("cifar10-row-lstm", "row_lstm", "cifar10", 32, 128, 12, 3.07),
        _natural("cifar10-diagonal-bilstm", "diagonal_bilstm", "cifar10", 32, 128, 12, 3.00),
        _natural("imagenet32-row-lstm", "row_lstm", "imagenet32", 32, 384, 12, 3.86, "valid"),
        _natural("imagenet64-row-lstm", "row_lstm", "imagenet64", 64, 512, 4, 3.63, "valid"),
    ]
}


def build_paper_model(name: str) -> PixelRNN:
    """Build a paper configuration by name (see ``PAPER_CONFIGS``)."""
    if name not in PAPER_CONFIGS:
        raise ValueError(
            f"unknown configuration {name!r}; known: {', '.join(PAPER_CONFIGS)}"
        )
    config = PAPER_CONFIGS[name]
    return build_model(config.architecture, **config.model)


def parameter_count(model: nn.Module, effective: bool = False) -> int:
    """Number of trainable parameters.

    ``effective=False`` counts every stored weight; ``effective=True`` leaves out
    the weights that masks hold at zero (they never affect the output).
    """
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if effective:
        total -= sum(
            int((m.mask == 0).sum()) for m in model.modules() if isinstance(m, MaskedConv2d)
        )
    return total
