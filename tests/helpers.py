"""Shared helpers for the property tests: tiny models and exact dependency matrices."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import torch

import pixelrnn

ARCHITECTURES = pixelrnn.ARCHITECTURES


def fallback_march() -> str:
    """The -march of a machine without this one's vector units (``PIXELRNN_NATIVE_MARCH``): AVX2
    (x86-64-v3) where this CPU has AVX-512, else SSE2 only (x86-64). scripts/test.sh builds the
    kernel for it ahead of tests/test_fused_scan.py (``python tests/helpers.py``)."""
    from pixelrnn.layers.scan_kernel import cpu_flags

    return "x86-64-v3" if "avx512f" in cpu_flags().split() else "x86-64"


def tiny_model(architecture: str, channels: int, levels: int, **overrides) -> pixelrnn.PixelRNN:
    """A small random model in float64 (so that no dependency underflows to zero)."""
    torch.manual_seed(0)
    options = dict(channels=channels, levels=levels, hidden=6, layers=2, head=24)
    options.update(overrides)
    model = pixelrnn.build_model(architecture, **options).double()
    _randomise_initial_states(model)
    return model.eval()


def tiny_multiscale(architecture: str, channels: int, levels: int, factor: int = 2,
                    **overrides) -> pixelrnn.MultiScalePixelRNN:
    """A small random Multi-Scale PixelRNN in float64, both stages ``architecture``."""
    torch.manual_seed(0)
    options = dict(channels=channels, levels=levels, hidden=6, layers=2, head=24)
    options.update(overrides)
    model = pixelrnn.build_multiscale(architecture, factor, condition_features=8, **options).double()
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


def total_probability(model, height: int, width: int) -> float:
    """The sum of exp(log_prob) over every image of the given size (1 for an exact likelihood)."""
    images = all_images(model.channels, height, width, model.levels)
    with torch.no_grad():
        return torch.cat([model.log_prob(chunk) for chunk in images.split(1024)]).exp().sum().item()


def assert_cached_logits_equal(model: pixelrnn.PixelRNN, x: torch.Tensor, conditions=None,
                               atol: float = 1e-12) -> None:
    """Feed ``x`` (B, C, H, W) value by value through the cached evaluation and compare every
    pixel's logits with the full model's (``conditions``: a conditional stage's bias maps)."""
    batch, channels, height, width = x.shape
    full = model(x, conditions)
    cache = model.incremental(batch, height, width, conditions)
    for i in range(height):
        cache.begin_row(i)
        for j in range(width):
            for c in range(channels):
                torch.testing.assert_close(cache.logits(i, j)[:, c], full[:, c, :, i, j], rtol=0, atol=atol)
                cache.set_value(i, j, c, x[:, c, i, j])
        cache.finish_row(i)


def all_images(channels: int, height: int, width: int, levels: int) -> torch.Tensor:
    """Every image of the given size, (levels ** (C*H*W), C, H, W) long."""
    n = channels * height * width
    values = torch.tensor(list(itertools.product(range(levels), repeat=n)))
    return values.view(-1, channels, height, width)


def fit_to_correlated_images(model: torch.nn.Module, height: int, width: int) -> torch.nn.Module:
    """Fit a tiny model (in float32) to a strongly correlated distribution: images that
    are all one value (most of the mass) or random. Returns it in eval mode."""
    model = model.float().train()
    channels, levels = model.channels, model.levels
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(120):
        constant = torch.randint(0, levels, (64, 1, 1, 1), generator=generator)
        noise = torch.randint(0, levels, (64, channels, height, width), generator=generator)
        keep = torch.rand(64, 1, 1, 1, generator=generator) < 0.8
        x = torch.where(keep, constant.expand_as(noise), noise)
        optimiser.zero_grad()
        (-model.log_prob(x).mean()).backward()
        optimiser.step()
    return model.eval()


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test, pooling outcomes expected fewer than 5 times into one cell."""
    expected = probs * counts.sum()
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum().view(1)])
    exp = torch.cat([expected[~small], expected[small].sum().view(1)])
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    dof = int(keep.sum()) - 1
    return torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat.double() / 2).item()


def assert_samples_follow_the_model(model, height: int, width: int, method: str, n: int = 3000) -> None:
    """Draw ``n`` images and compare their frequencies with the model's exact probabilities."""
    channels, levels = model.channels, model.levels
    images = all_images(channels, height, width, levels)
    with torch.no_grad():
        probs = model.log_prob(images).double().exp()
    assert probs.max() > 4 / len(images)  # the fitted distribution is far from uniform
    samples = pixelrnn.sample(model, n, height, width, seed=1, method=method)
    index = (samples.flatten(1) * (levels ** torch.arange(samples[0].numel() - 1, -1, -1))).sum(1)
    counts = torch.bincount(index, minlength=len(images)).double()
    assert chi_square_p_value(counts, probs) > 1e-3


def float32_product_settings() -> tuple:
    """PyTorch's TF32 settings for cuDNN convolutions and CUDA matrix products, and the value both
    have at full float32 precision: ((conv, matmul), exact), read through the flags that
    :data:`pixelrnn.runtime.full_float32` sets."""
    from pixelrnn.runtime import full_float32

    flags, exact = full_float32.flags()
    return tuple(getattr(owner, name) for owner, name in flags), exact


def load_benchmark(name: str):
    """The script benchmarks/NAME.py as a module (the benchmarks are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    print(fallback_march())
