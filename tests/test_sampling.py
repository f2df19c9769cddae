"""Samplers follow the model's own distribution; cached and naive agree; completion keeps rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import (ARCHITECTURES, assert_cached_logits_equal, assert_samples_follow_the_model,
                     chi_square_p_value, fit_to_correlated_images, float32_product_settings, tiny_model)

import pixelrnn
from pixelrnn.errors import PixelRNNError

CASES = [(arch, 1, 2, 2, 2) for arch in ARCHITECTURES] + [
    ("pixelcnn", 3, 2, 1, 2), ("row_lstm", 1, 3, 1, 3), ("diagonal_bilstm", 3, 2, 2, 1),
]


def fitted_model(arch, channels, levels, height, width):
    return fit_to_correlated_images(tiny_model(arch, channels, levels, hidden=6, layers=1, head=12),
                                    height, width)


@pytest.mark.parametrize("method", ["cached", "naive"])
@pytest.mark.parametrize("arch,channels,levels,height,width", CASES)
def test_sample_frequencies_match_the_model(arch, channels, levels, height, width, method):
    assert_samples_follow_the_model(fitted_model(arch, channels, levels, height, width), height, width, method)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,levels", [(1, 2), (3, 8)])
def test_cached_and_naive_draw_the_same_images(arch, channels, levels):
    model = tiny_model(arch, channels, levels).float()
    cached = pixelrnn.sample(model, 40, 5, 6, seed=7, method="cached")
    naive = pixelrnn.sample(model, 40, 5, 6, seed=7, method="naive")
    differing = (cached != naive).flatten(1).any(1).float().mean().item()
    assert differing <= 0.01
    assert not torch.equal(cached, pixelrnn.sample(model, 40, 5, 6, seed=8, method="cached"))


@pytest.mark.parametrize("arch,channels,kernel_size", [
    (arch, channels, k) for arch, block in pixelrnn.ARCHITECTURES.items()
    for channels, k in [(1, 3), (3, 3)] + [(3, 5)] * block.uses_kernel_size
])
def test_cached_logits_equal_the_full_model(arch, channels, kernel_size):
    model = tiny_model(arch, channels, 5, kernel_size=kernel_size)
    assert_cached_logits_equal(model, torch.randint(0, 5, (2, channels, 4, 6)))


def test_sample_sets_of_any_size_stream_to_a_file(tmp_path):
    model = tiny_model("row_lstm", 1, 3).float()
    path = pixelrnn.sample_to_file(model, 5, 4, 3, tmp_path / "s.npy", batch_size=2, seed=4)
    values = torch.from_numpy(np.load(path))
    assert values.shape == (5, 1, 4, 3) and values.dtype == torch.uint8 and int(values.max()) < 3
    # Batches continue one random stream: the first is model.sample's with the seed.
    assert torch.equal(values[:2].long(), model.sample(2, 4, 3, seed=4))
    assert torch.equal(values, torch.from_numpy(np.load(pixelrnn.sample_to_file(
        model, 5, 4, 3, tmp_path / "t.npy", batch_size=2, seed=4))))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npy", "t.npy"]  # no temporary left


def test_a_sample_set_larger_than_the_disk_is_refused_before_any_work(tmp_path):
    model = tiny_model("pixelcnn", 1, 2).float()
    with pytest.raises(PixelRNNError, match="GB are free"):
        pixelrnn.sample_to_file(model, 10**12, 28, 28, tmp_path / "huge.npy")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("method", ["cached", "naive"])
def test_completion_keeps_the_known_rows(arch, method):
    model = tiny_model(arch, 1, 4).float()
    images = torch.randint(0, 4, (5, 1, 6, 5))
    filled = pixelrnn.complete(model, images, 3, seed=0, method=method)
    assert torch.equal(filled[:, :, :3], images[:, :, :3])
    assert filled.shape == images.shape and int(filled.max()) < 4
    assert not torch.equal(filled[:, :, 3:], images[:, :, 3:])


def test_completion_is_conditioned_on_the_known_rows():
    """Completing with all rows known but the last reproduces the model's conditional."""
    model = fitted_model("diagonal_bilstm", 1, 2, 2, 2)
    top = torch.tensor([[[[1, 1], [0, 0]]]])
    filled = pixelrnn.complete(model, top.expand(3000, 1, 2, 2), 1, seed=3)
    candidates = torch.tensor([[[[1, 1], [a, b]]] for a in (0, 1) for b in (0, 1)])
    with torch.no_grad():
        probs = model.log_prob(candidates).double().exp()
    probs = probs / probs.sum()
    index = filled[:, 0, 1, 0] * 2 + filled[:, 0, 1, 1]
    assert chi_square_p_value(torch.bincount(index, minlength=4).double(), probs) > 1e-3


def test_temperature_sharpens():
    model = fitted_model("pixelcnn", 1, 2, 2, 2)
    cold = pixelrnn.sample(model, 500, 2, 2, seed=0, temperature=0.05)
    constant = (cold.flatten(1) == cold.flatten(1)[:, :1]).all(1).float().mean()
    assert constant > 0.95


def test_bad_arguments():
    model = tiny_model("pixelcnn", 1, 2)
    with pytest.raises(PixelRNNError, match="unknown sampling method"):
        pixelrnn.sample(model, 1, 2, 2, method="fast")
    with pytest.raises(PixelRNNError, match="temperature must be positive"):
        pixelrnn.sample(model, 1, 2, 2, temperature=0)
    with pytest.raises(PixelRNNError, match=r"known rows \(--known-rows\) .*: must be in 0..4"):
        pixelrnn.complete(model, torch.zeros(1, 1, 4, 4, dtype=torch.long), 5)


def test_samplers_run_float32_products_at_full_precision(monkeypatch):
    """No TF32 while values are drawn (so a seed draws the CPU's images on a GPU too), PyTorch's
    own settings after."""
    model = tiny_model("row_lstm", 1, 2)
    before, exact = float32_product_settings()
    seen = []
    forward = type(model).forward

    def watched(self, *args, **kwargs):
        seen.append(float32_product_settings()[0])
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", watched)
    pixelrnn.sample(model, 2, 2, 2, seed=0, method="naive")
    assert seen and set(seen) == {(exact, exact)}
    assert float32_product_settings()[0] == before
