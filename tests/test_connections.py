"""Residual and skip connections, the paper's ablation (section 3.3): each choice is a causal,
normalised model that the cached sampler follows, and ``--connections`` is part of a run."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ARCHITECTURES, assert_cached_logits_equal, dependency_matrix, tiny_model, total_probability
from test_dependencies import diagonal_bilstm_blind_spot
from test_training import TRAIN, pixelrnn_cli_here

import pixelrnn
from pixelrnn.models.pixelrnn import CONNECTIONS
from pixelrnn.training import checkpoints as ckpt


@pytest.mark.parametrize("connections", [name for name in CONNECTIONS if name != "both"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_choice_of_connections_is_an_exact_causal_model(arch, connections):
    residual, skip = CONNECTIONS[connections]
    model = tiny_model(arch, 3, 2, residual=residual, skip=skip)
    assert model.config.connections == connections and (model.skips is not None) == skip
    dep = dependency_matrix(model, 3, 7)
    assert not (dep & torch.ones_like(dep).triu()).any()  # no value sees itself or a later one
    if arch == "diagonal_bilstm":  # every earlier value but its one blind spot, with any connections
        assert torch.equal(dep, torch.ones_like(dep).tril(-1) & ~diagonal_bilstm_blind_spot(3, 3, 7, 7))
    assert abs(total_probability(model, 1, 2) - 1) < 1e-9
    assert_cached_logits_equal(model, torch.randint(0, 2, (2, 3, 2, 3)))


def test_the_connections_change_the_function_and_the_weights():
    """Without skip connections there are no skip projections; without residual connections each
    block's input is the block before's output alone: all four are different models."""
    x = torch.randint(0, 2, (2, 1, 4, 4))
    log_probs = {}
    for name, (residual, skip) in CONNECTIONS.items():
        model = tiny_model("row_lstm", 1, 2, residual=residual, skip=skip)
        assert any(key.startswith("skips.") for key in model.state_dict()) == skip
        log_probs[name] = model.log_prob(x)
    for first in CONNECTIONS:
        for second in CONNECTIONS:
            assert first == second or not torch.allclose(log_probs[first], log_probs[second])


def test_connections_option(tmp_path):
    """--connections is recorded, on the card and in its command, built into the model, checked on
    resume; an unknown choice is one line before any work."""
    from pixelrnn.cli.cards import write_card

    run = tmp_path / "run"
    first = pixelrnn_cli_here(*TRAIN, "--out", run, "--connections", "skip", "--steps", "2")
    assert first.returncode == 0, first.stderr
    model = pixelrnn.load_model(run / ckpt.LAST)
    assert (model.config.residual, model.config.skip) == (False, True)
    assert json.loads((run / "run.json").read_text())["connections"] == "skip"
    card = write_card(run, samples=1).read_text()
    assert "residual False, skip True" in card and "--connections skip" in card
    refused = pixelrnn_cli_here("train", "--out", run, "--resume", "--steps", "4", "--connections", "both")
    assert refused.returncode == 2 and "a run with --connections skip, not both" in refused.stderr
    resumed = pixelrnn_cli_here("train", "--out", run, "--resume", "--steps", "3", "--connections", "skip", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    default = pixelrnn_cli_here(*TRAIN, "--out", tmp_path / "default", "--steps", "2")
    assert default.returncode == 0 and pixelrnn.load_model(tmp_path / "default").config.connections == "both"
    again = pixelrnn_cli_here("train", "--out", tmp_path / "default", "--resume", "--steps", "3",
                              "--connections", "both", "--quiet")
    assert again.returncode == 0, again.stderr
    unknown = pixelrnn_cli_here(*TRAIN, "--out", tmp_path / "unknown", "--connections", "dense")
    assert unknown.returncode == 2 and "invalid choice: 'dense'" in unknown.stderr
    with pytest.raises(pixelrnn.PixelRNNError, match="--connections dense: known: both, residual, skip, none"):
        pixelrnn.TrainConfig(model="row_lstm", dataset="digits", out=str(tmp_path / "api"), connections="dense").check()
    assert not (tmp_path / "unknown").exists() and not (tmp_path / "api").exists()
