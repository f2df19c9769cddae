"""Weight averaging (--ema): the exact EMA of the iterates is what is evaluated and saved as the best
model; it resumes bit-identically after a kill and can be started on a resumed run."""

from __future__ import annotations

import json
import signal

import pytest
import torch

from pixelrnn.training import checkpoints as ckpt
from pixelrnn.errors import PixelRNNError
from test_training import TRAIN, pixelrnn_cli, pixelrnn_cli_here, weights

CONFIG = dict(model="pixelcnn", dataset="digits", limit=40, hidden=4, layers=1, batch_size=8,
              checkpoint_every=2)


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr("pixelrnn.training.run_folder.plot_curves", lambda *a, **k: None)


def iterates_of(trainer, monkeypatch) -> list[list[torch.Tensor]]:
    """Runs ``trainer``; the model's parameters after every optimizer step."""
    seen, original_step = [], trainer.optimizer.step

    def step():
        original_step()
        seen.append([p.detach().clone() for p in trainer.model.parameters()])
    monkeypatch.setattr(trainer.optimizer, "step", step)
    trainer.run()
    return seen


def test_the_average_is_the_ema_of_the_iterates_and_is_what_is_evaluated(tmp_path, monkeypatch):
    from pixelrnn.training import TrainConfig, Trainer

    decay, start = 0.75, 2
    trainer = Trainer(TrainConfig(out=str(tmp_path / "run"), steps=5, eval_every=5, ema=decay, ema_from=start,
                                  **CONFIG), progress=False)
    iterates = iterates_of(trainer, monkeypatch)
    expected = iterates[start]  # the first averaged step copies the weights
    for later in iterates[start + 1:]:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, later)]
    averaged = list(trainer.evaluated_model.parameters())
    for e, a, w in zip(expected, averaged, iterates[-1]):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, w)  # not the raw weights
    best = ckpt.load_model(tmp_path / "run" / ckpt.BEST)
    for a, b in zip(averaged, best.parameters()):
        assert torch.equal(a, b)
    report = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    from pixelrnn.training.evaluation import evaluate
    assert report["valid_nll_nats"] == pytest.approx(evaluate(best, trainer.valid_images).nll_nats, rel=1e-6)


def test_before_the_average_begins_the_raw_weights_are_evaluated(tmp_path):
    from pixelrnn.training import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(out=str(tmp_path / "run"), steps=3, eval_every=3, ema=0.9, ema_from=10,
                                  **CONFIG), progress=False)
    trainer.run()
    assert trainer.evaluated_model is trainer.model


@pytest.mark.parametrize("start", ["7", "14"])  # begun before the checkpoint resumed from, and after it
def test_resume_after_sigkill_is_bit_identical_with_an_average(tmp_path, start):
    averaging = ["--ema", "0.9", "--ema-from", start]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert pixelrnn_cli_here(*TRAIN, *averaging, "--out", straight).returncode == 0
    crashed = pixelrnn_cli(*TRAIN, *averaging, "--out", str(killed), env={"_PIXELRNN_TEST_SIGNAL_AT": "13:SIGKILL"})
    assert crashed.returncode == -signal.SIGKILL
    resumed = pixelrnn_cli_here("train", "--model", "row_lstm", "--dataset", "digits", "--out", killed,
                                "--resume", "--quiet")  # in this process: the crash is what needs one of its own
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(straight), weights(killed)
    assert any(k.startswith("average.") for k in a) and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(load_best(straight), load_best(killed))


def load_best(run):
    return torch.cat([p.flatten() for p in ckpt.load_model(run / ckpt.BEST).parameters()])


def test_averaging_can_start_on_a_resumed_run(tmp_path, monkeypatch):
    from pixelrnn.cli.cards import write_card
    from pixelrnn.training import TrainConfig, Trainer

    run = str(tmp_path / "run")
    Trainer(TrainConfig(out=run, steps=4, eval_every=2, **CONFIG), progress=False).run()
    resumed = Trainer(TrainConfig(out=run, steps=7, ema=0.5, lr_changes=[[6, 1e-4]], **CONFIG), resume=True,
                      progress=False)  # with a new rate: both changes are kept
    assert (resumed.config.ema, resumed.config.ema_from, resumed.config.lr_changes) == (0.5, 4, [[6, 1e-4]])
    iterates = iterates_of(resumed, monkeypatch)
    expected = [0.25 * a + 0.25 * b + 0.5 * c for a, b, c in zip(*iterates)]
    for e, a in zip(expected, resumed.evaluated_model.parameters()):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-7)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (saved["ema"], saved["ema_from"], saved["lr_changes"]) == (0.5, 4, [[6, 1e-4]])
    again = Trainer(TrainConfig(out=run, steps=8, ema=0.5, **CONFIG), resume=True, progress=False)
    assert again.config.ema_from == 4 and again.average.n_averaged == 3
    assert again.config.schedule_events() == [(4, "EMA 0.5"), (6, "lr 0.0001")]  # marked on the curve
    card = write_card(tmp_path / "run").read_text()
    assert "--ema 0.5 --ema-from 4" in card and "weights averaged (EMA, decay 0.5 per step) from step 4" in card
    with pytest.raises(PixelRNNError, match="already averages its weights with decay 0.5"):
        Trainer(TrainConfig(out=run, steps=9, ema=0.9, **CONFIG), resume=True, progress=False)


def test_a_decay_outside_0_1_is_refused(tmp_path):
    result = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "run"), "--ema", "1.5")
    assert result.returncode == 2 and "the decay must be in [0, 1)" in result.stderr
    assert not (tmp_path / "run").exists()
    result = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "run"), "--ema-from", "5")
    assert result.returncode == 2 and "--ema-from STEP needs --ema DECAY" in result.stderr


def test_a_checkpoint_without_its_average_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    assert pixelrnn_cli_here(*TRAIN, "--ema", "0.9", "--out", str(run)).returncode == 0
    with safe_open(run / ckpt.LAST, "pt") as f:
        metadata = f.metadata()
    kept = {k: v for k, v in load_file(run / ckpt.LAST).items() if not k.startswith("average.")}
    save_file(kept, run / ckpt.LAST, metadata)
    result = pixelrnn_cli_here("train", "--model", "row_lstm", "--dataset", "digits", "--out", str(run), "--resume",
                               "--steps", "25", "--quiet")
    assert result.returncode == 2 and "the checkpoint's average is missing" in result.stderr
