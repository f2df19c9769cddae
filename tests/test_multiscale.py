"""Multi-Scale PixelRNN (paper section 3.6): exact likelihood, causal conditional stage, samplers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import (ARCHITECTURES, assert_cached_logits_equal, assert_samples_follow_the_model,
                     dependency_matrix, fit_to_correlated_images, tiny_multiscale, total_probability)
from test_training import pixelrnn_cli_here

import pixelrnn
from pixelrnn.models.multiscale import given_by_small_image, subsample


class ConditionalStage(torch.nn.Module):
    """The full-image stage of a multi-scale model with its small image held fixed."""

    def __init__(self, model: pixelrnn.MultiScalePixelRNN, small: torch.Tensor, height: int, width: int):
        super().__init__()
        self.model, self.channels, self.levels = model, model.channels, model.levels
        self.conditions = model.conditions(small, height, width)

    def forward(self, x):
        return self.model.large(x, self.conditions)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,height,width,levels,factor", [
    (1, 2, 3, 2, 2), (1, 3, 3, 2, 3), (3, 2, 2, 2, 2), (1, 2, 2, 3, 2),
])
def test_probabilities_of_all_images_sum_to_one(arch, channels, height, width, levels, factor):
    model = tiny_multiscale(arch, channels, levels, factor)
    assert abs(total_probability(model, height, width) - 1.0) < 1e-9


def test_log_prob_is_the_small_image_plus_the_values_it_does_not_hold():
    model = tiny_multiscale("row_lstm", 3, 4)
    x = torch.randint(0, 4, (2, 3, 5, 4))
    small = x[:, :, ::2, ::2]
    assert small.shape[-2:] == (3, 2)
    logits = model.large(x, model.conditions(small, 5, 4))
    manual = model.small.log_prob(small)
    for i in range(5):
        for j in range(4):
            if i % 2 or j % 2:
                for c in range(3):
                    manual = manual + torch.log_softmax(logits[:, c, :, i, j], 1).gather(1, x[:, c, i, j, None])[:, 0]
    torch.testing.assert_close(model.log_prob(x), manual)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_conditional_stage_sees_no_current_or_later_value_but_sees_the_small_image(arch, channels):
    model = tiny_multiscale(arch, channels, 4)
    small = torch.randint(0, 4, (3, channels, 2, 3))
    dep = dependency_matrix(ConditionalStage(model, small, 4, 5), 4, 5)
    assert not (dep & torch.ones_like(dep).triu()).any()
    x = torch.randint(0, 4, (3, channels, 4, 5))
    other = (small + 1) % 4
    with torch.no_grad():
        assert not torch.allclose(ConditionalStage(model, small, 4, 5)(x), ConditionalStage(model, other, 4, 5)(x))


@pytest.mark.parametrize("arch", ["row_lstm", "diagonal_bilstm"])
def test_fused_and_reference_recurrences_agree_with_conditions(arch):
    model = tiny_multiscale(arch, 3, 5)
    x = torch.randint(0, 5, (2, 3, 5, 6))
    fused = model.log_prob(x)
    torch.testing.assert_close(model.set_fused(False).log_prob(x), fused, rtol=0, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_cached_logits_equal_the_conditional_stage(arch):
    model = tiny_multiscale(arch, 3, 5)
    x = torch.randint(0, 5, (2, 3, 4, 6))
    assert_cached_logits_equal(model.large, x, model.conditions(subsample(x, 2), 4, 6))


@pytest.mark.parametrize("method", ["cached", "naive"])
@pytest.mark.parametrize("arch,channels,levels,height,width", [
    ("pixelcnn", 1, 2, 2, 3), ("row_lstm", 1, 2, 3, 2), ("diagonal_bilstm", 1, 2, 2, 3),
    ("diagonal_bilstm", 3, 2, 2, 1),
])
def test_sample_frequencies_match_the_model(arch, channels, levels, height, width, method):
    model = fit_to_correlated_images(tiny_multiscale(arch, channels, levels, hidden=6, layers=1, head=12),
                                     height, width)
    assert_samples_follow_the_model(model, height, width, method)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_samplers_agree_and_completion_keeps_the_known_rows(arch):
    model = tiny_multiscale(arch, 1, 4).float()
    cached = pixelrnn.sample(model, 30, 5, 6, seed=3, method="cached")
    naive = pixelrnn.sample(model, 30, 5, 6, seed=3, method="naive")
    assert (cached != naive).flatten(1).any(1).float().mean().item() <= 0.04
    images = torch.randint(0, 4, (5, 1, 6, 5))
    filled = pixelrnn.complete(model, images, 3, seed=0)
    assert torch.equal(filled[:, :, :3], images[:, :, :3]) and int(filled.max()) < 4
    assert not torch.equal(filled[:, :, 3:], images[:, :, 3:])
    assert given_by_small_image(3, 4, 2).tolist() == [[True, False, True, False], [False] * 4,
                                                       [True, False, True, False]]


def test_evaluation_reports_both_stages():
    model = tiny_multiscale("pixelcnn", 1, 2).float()
    images = torch.randint(0, 2, (7, 1, 6, 5))
    report = pixelrnn.evaluate(model, images, batch_size=3)
    small, rest = model.stage_log_probs(images)
    assert report.stage_nll_nats["small_image"] == pytest.approx(-small.mean().item(), rel=1e-6)
    assert report.stage_nll_nats["rest_given_small"] == pytest.approx(-rest.mean().item(), rel=1e-6)
    assert report.nll_nats == pytest.approx(-model.log_prob(images).mean().item(), rel=1e-6)


def test_checkpoint_round_trip(tmp_path):
    model = tiny_multiscale("diagonal_bilstm", 1, 2).float()
    pixelrnn.save_model(tmp_path / "m.safetensors", model)
    loaded = pixelrnn.load_model(tmp_path / "m.safetensors")
    assert isinstance(loaded, pixelrnn.MultiScalePixelRNN) and loaded.config == model.config
    x = torch.randint(0, 2, (3, 1, 6, 6))
    torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x), rtol=0, atol=0)


def test_bad_factor_is_refused():
    with pytest.raises(pixelrnn.PixelRNNError, match="factor must be >= 2"):
        pixelrnn.build_multiscale("row_lstm", factor=1)
    with pytest.raises(pixelrnn.PixelRNNError, match="use log_prob"):
        tiny_multiscale("row_lstm", 1, 2)(torch.zeros(1, 1, 4, 4, dtype=torch.long))


def test_train_resume_evaluate_and_sample_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    common = ["train", "--model", "diagonal_bilstm", "--dataset", "digits", "--limit", "32", "--hidden", "4",
              "--layers", "1", "--batch-size", "8", "--checkpoint-every", "2", "--eval-every", "3",
              "--scale-factor", "2", "--quiet", "--out", str(run)]
    assert pixelrnn_cli_here(*common, "--steps", "3").returncode == 0
    resumed = pixelrnn_cli_here(*common, "--steps", "5", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    model = pixelrnn.load_model(run / "last.safetensors")
    assert isinstance(model, pixelrnn.MultiScalePixelRNN) and model.factor == 2
    result = pixelrnn_cli_here("evaluate", "--checkpoint", str(run), "--dataset", "digits", "--split", "test",
                               "--limit", "20", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0 < report["nll_nats"] < 784 * math.log(2) * 2
    assert report["nll_nats"] == pytest.approx(sum(report["stage_nll_nats"].values()))
    text = pixelrnn_cli_here("evaluate", "--checkpoint", str(run), "--dataset", "digits", "--split", "test",
                             "--limit", "20").stdout
    assert "for the small image (pixels (f i, f j), f = 2)" in text and "exact" in text
    result = pixelrnn_cli_here("sample", "--checkpoint", str(run), "--n", "2", "--height", "6", "--out",
                               str(tmp_path / "s.png"), "--seed", "0")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s.png").stat().st_size > 0
