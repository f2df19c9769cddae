"""Regularised fine-tuning: residual-branch dropout (--dropout) and starting a run from a model's
weights (--init-from)."""

from __future__ import annotations

import pytest
import torch

import pixelrnn
from helpers import ARCHITECTURES, dependency_matrix, tiny_model
from pixelrnn.training import checkpoints as ckpt
from pixelrnn.cli.cards import write_card
from pixelrnn.cli.main import main as pixelrnn_main
from pixelrnn.errors import PixelRNNError

SMALL = ["--model", "pixelcnn", "--dataset", "digits", "--limit", "16", "--hidden", "4", "--layers", "2",
         "--batch-size", "8", "--seed", "3", "--quiet"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_dropout_keeps_the_model_causal_in_training(arch, channels):
    model = tiny_model(arch, channels, 4, dropout=0.5).train()
    dep = dependency_matrix(model, 3, 4)
    assert not (dep & torch.ones_like(dep).triu()).any()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_dropout_acts_in_training_only(arch):
    plain, dropped = tiny_model(arch, 1, 2), tiny_model(arch, 1, 2, dropout=0.3)
    dropped.load_state_dict(plain.state_dict())  # dropout adds no weights
    x = torch.randint(0, 2, (4, 1, 5, 5))
    torch.testing.assert_close(dropped.log_prob(x), plain.log_prob(x), rtol=0, atol=0)
    dropped.train()
    assert not torch.equal(dropped.log_prob(x), plain.log_prob(x))
    assert "dropout 0.3" in dropped.config.summary() and "dropout" not in plain.config.summary()


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_dropout_rate_must_be_a_probability_below_one(rate):
    with pytest.raises(PixelRNNError, match="dropout must be in"):
        pixelrnn.build_model("pixelcnn", dropout=rate)


def test_a_run_starts_from_the_given_weights_and_keeps_its_dropout(tmp_path, capsys):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert pixelrnn_main(["train", *SMALL, "--steps", "2", "--out", str(base)]) == 0
    start = ckpt.load_model(base)
    assert pixelrnn_main(["train", *SMALL, "--steps", "1", "--lr", "1e-30", "--optimizer", "adam",
                          "--dropout", "0.2", "--init-from", str(base), "--out", str(tuned)]) == 0
    model = ckpt.load_model(tuned / ckpt.LAST)
    # One step at a negligible rate: the run began from the base run's best weights.
    after = model.state_dict()
    for name, value in start.state_dict().items():
        torch.testing.assert_close(after[name], value, rtol=1e-6, atol=1e-12)
    assert model.config.dropout == 0.2 and not model.training
    # --resume keeps the run's own start and dropout; a different one is refused.
    assert pixelrnn_main(["train", "--out", str(tuned), "--resume", "--steps", "2", "--quiet"]) == 0
    card = write_card(tuned).read_text()
    assert "dropout 0.2 |" in card and f"--dropout 0.2 --init-from {base}" in card
    capsys.readouterr()
    assert pixelrnn_main(["train", "--out", str(tuned), "--resume", "--steps", "3", "--dropout", "0.1"]) == 2
    assert "is a run with --dropout 0.2, not 0.1" in capsys.readouterr().err
    assert pixelrnn_main(["train", "--out", str(tuned), "--resume", "--steps", "3", "--quiet",
                          "--dropout", "0.2", "--init-from", str(base)]) == 0


def test_weights_of_another_model_are_refused(tmp_path, capsys):
    base = tmp_path / "base"
    assert pixelrnn_main(["train", *SMALL, "--steps", "1", "--out", str(base)]) == 0
    before = set(tmp_path.iterdir())
    for other in (["--hidden", "6"], ["--model", "row_lstm"]):
        capsys.readouterr()
        code = pixelrnn_main(["train", *SMALL, *other, "--steps", "1", "--init-from", str(base),
                              "--out", str(tmp_path / "other")])
        error = capsys.readouterr().err
        assert code == 2 and f"--init-from {base}: a pixelcnn, h = 4, 2 layers" in error, error
        assert error.count("\n") == 1
    assert pixelrnn_main(["train", *SMALL, "--steps", "1", "--init-from", str(tmp_path / "missing"),
                          "--out", str(tmp_path / "other")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert set(tmp_path.iterdir()) == before
