"""Shared helpers for the property tests: tiny models and exact dependency matrices."""

from __future__ import annotations

import itertools

import torch

import pixelrnn

ARCHITECTURES = pixelrnn.ARCHITECTURES


def tiny_model(architecture: str, channels: int, levels: int, **overrides) -> pixelrnn.PixelRNN:
    """A small random model in float64 (so that no dependency underflows to zero)."""
    torch.manual_seed(0)
    options = dict(channels=channels, levels=levels, hidden=6, layers=2, head=24)
    options.update(overrides)
    model = pixelrnn.build_model(architecture, **options).double()
    _randomise_initial_states(model)
    return model.eval()


def _randomise_initial_states(model: torch.nn.Module) -> None:
    """Learned initial states start at zero; give them values so that tests see them act.
    Positive biases keep enough ReLUs of a tiny model open for every path to show."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("h0", "c0")):
                param.uniform_(-0.5, 0.5)
            elif name.endswith("bias"):
                param.uniform_(0.0, 0.5)


def raster_index(channels: int, height: int, width: int) -> torch.Tensor:
    """(C, H, W) tensor holding each value's position in the generation order:
    rows top to bottom, pixels left to right, then channels R, G, B."""
    i, j, c = torch.meshgrid(
        torch.arange(height), torch.arange(width), torch.arange(channels), indexing="ij"
    )
    return ((i * width + j) * channels + c).permute(2, 0, 1)


def dependency_matrix(model: pixelrnn.PixelRNN, height: int, width: int, batch: int = 3) -> torch.Tensor:
    """Boolean (n, n) matrix, n = C*H*W in generation order: [o, i] is True when the
    logits of value o change with value i (a non-zero Jacobian entry at some of
    `batch` random float inputs)."""
    c, levels = model.channels, model.levels
    torch.manual_seed(1)
    x = (torch.rand(batch, c, height, width, dtype=torch.float64) * (levels - 1)).requires_grad_()
    mix = torch.randn(levels, dtype=torch.float64).view(1, 1, levels, 1, 1)
    summary = (model(x) * mix).sum(2)  # (B, C, H, W); batch elements are independent
    order = raster_index(c, height, width)
    n = order.numel()
    dep = torch.zeros(n, n, dtype=torch.bool)
    for ch in range(c):
        for i in range(height):
            for j in range(width):
                (grad,) = torch.autograd.grad(summary[:, ch, i, j].sum(), x, retain_graph=True)
                seen = grad.abs().sum(0) > 0  # (C, H, W)
                dep[order[ch, i, j], order[seen]] = True
    return dep


def all_images(channels: int, height: int, width: int, levels: int) -> torch.Tensor:
    """Every image of the given size, (levels ** (C*H*W), C, H, W) long."""
    n = channels * height * width
    values = torch.tensor(list(itertools.product(range(levels), repeat=n)))
    return values.view(-1, channels, height, width)
