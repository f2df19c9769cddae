"""Training: exact resume after SIGKILL, a clean stop on SIGINT / SIGTERM, refusing to overwrite runs or share a run folder, evaluation output."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import pixelrnn
from pixelrnn.training import checkpoints as ckpt
from pixelrnn.cli.main import main as pixelrnn_main
from pixelrnn.errors import PixelRNNError
from pixelrnn.training.run_lock import RunLock

TRAIN = ["train", "--model", "row_lstm", "--dataset", "digits", "--limit", "96", "--hidden", "4",
         "--layers", "1", "--batch-size", "8", "--steps", "20", "--checkpoint-every", "3",
         "--eval-every", "5", "--seed", "3", "--quiet"]


def pixelrnn_cli(*args, env=None):
    """``python -m pixelrnn ARGS`` in a new process: exit status, stdout and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "pixelrnn", *args], capture_output=True, text=True, env=env)


def pixelrnn_cli_here(*args):
    """The command line's ``main(ARGS)`` in this process, as :func:`pixelrnn_cli` reports it: for
    every call whose subject is not the process itself (killed or stopped by a signal, a lock held
    by another process), which would otherwise spend most of its time importing torch. Runs here
    and in new processes are bit-identical: both take the thread count that conftest.py fixes."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = pixelrnn_main([str(arg) for arg in args])
        except SystemExit as exit:  # argparse's own errors
            status = exit.code if isinstance(exit.code, int) else 1
    return subprocess.CompletedProcess(["pixelrnn", *args], status, stdout.getvalue(), stderr.getvalue())


def weights(run_dir):
    return {k: v for k, v in load_file(run_dir / ckpt.LAST).items() if not k.startswith("rng.")}


def rates_of_run(monkeypatch, trainer) -> list[float]:
    """Run ``trainer``; the learning rate of each of its optimizer steps."""
    rates, original_step = [], trainer.optimizer.step
    monkeypatch.setattr(trainer.optimizer, "step",
                        lambda: (rates.append(trainer.optimizer.param_groups[0]["lr"]), original_step())[1])
    trainer.run()
    return rates


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """``pixelrnn train TRAIN`` run to its end without a stop (in this process): (its folder, its result)."""
    straight = tmp_path_factory.mktemp("straight") / "run"
    result = pixelrnn_cli_here(*TRAIN, "--out", straight)
    assert result.returncode == 0, result.stderr
    return straight, result


def test_resume_after_sigkill_is_bit_identical(tmp_path, straight_run):
    (straight, _), killed = straight_run, tmp_path / "killed"
    crashed = pixelrnn_cli(*TRAIN, "--out", str(killed), env={"_PIXELRNN_TEST_SIGNAL_AT": "13:SIGKILL"})
    assert crashed.returncode == -signal.SIGKILL
    _, meta = ckpt.read_checkpoint(killed / ckpt.LAST)
    assert meta["trainer"]["step"] == 12  # the last checkpoint before the kill
    resumed = pixelrnn_cli_here("train", "--model", "row_lstm", "--dataset", "digits", "--out", killed,
                                "--resume", "--quiet")  # in this process: the crash is what needs one of its own
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_auto_resume_starts_a_run_and_the_same_command_continues_it(tmp_path, straight_run):
    """--auto-resume, one command for the first start and every restart: killed at step 13, the
    same command continues to the uninterrupted run's weights; its options are the run's own, so
    one that differs is refused, naming it, rather than applied as a change; a folder where a run
    died before its first checkpoint is started again, one that holds anything else is left alone."""
    (straight, _), run = straight_run, tmp_path / "run"
    crashed = pixelrnn_cli(*TRAIN, "--out", str(run), "--auto-resume", env={"_PIXELRNN_TEST_SIGNAL_AT": "13:SIGKILL"})
    assert crashed.returncode == -signal.SIGKILL
    for changed, said in ((["--lr", "5e-4"], "--lr 0.001, not 0.0005"), (["--lr-at", "15:1e-4"], "--lr-at [], not")):
        refused = pixelrnn_cli_here(*TRAIN, "--out", run, "--auto-resume", *changed)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    resumed = pixelrnn_cli_here(*TRAIN, "--out", run, "--auto-resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(straight), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for kept, started in ((["run.json"], True), (["run.json", "notes.txt"], False)):
        folder = tmp_path / "+".join(kept)
        folder.mkdir()
        for name in kept:
            (folder / name).write_text("{}")
        result = pixelrnn_cli_here(*TRAIN, "--steps", "2", "--out", folder, "--auto-resume")
        assert (result.returncode == 0) == started and (folder / ckpt.LAST).is_file() == started, result.stderr
    assert "exists and is not empty" in result.stderr and (folder / "notes.txt").read_text() == "{}"
    assert pixelrnn_cli_here(*TRAIN, "--out", run, "--auto-resume", "--resume").returncode == 2  # one or the other


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_the_step_it_stops_at_and_resume_is_bit_identical(tmp_path, straight_run, stop):
    (straight, result), stopped = straight_run, tmp_path / "stopped"
    logged = [line.split(" (")[0] for line in result.stderr.splitlines() if "): validation NLL" in line]
    assert logged == ["step 5", "step 10", "step 15", "step 20"]  # --quiet still logs each evaluation
    result = pixelrnn_cli(*TRAIN, "--out", str(stopped), env={"_PIXELRNN_TEST_SIGNAL_AT": f"13:{stop}"})
    assert result.returncode == 128 + signal.Signals[stop]
    assert result.stderr.strip().splitlines()[-1] == (
        f"pixelrnn: stopped by {stop} at step 13, saved in {stopped / ckpt.LAST}; "
        f"`pixelrnn train --out {stopped} --resume` continues")
    _, meta = ckpt.read_checkpoint(stopped / ckpt.LAST)
    assert meta["trainer"]["step"] == 13  # nothing lost (periodic checkpoints: 12, 15)
    assert pixelrnn_cli_here("train", "--out", stopped, "--resume", "--quiet").returncode == 0
    a, b = weights(straight), weights(stopped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_api_raises_training_interrupted_and_restores_the_signal_handlers(tmp_path, monkeypatch):
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setenv("_PIXELRNN_TEST_SIGNAL_AT", "4:SIGINT")
    config = pixelrnn.TrainConfig(model="pixelcnn", dataset="digits", out=str(tmp_path / "run"), steps=10,
                                  batch_size=4, limit=32, hidden=4, layers=1, checkpoint_every=3)
    with pytest.raises(pixelrnn.TrainingInterrupted, match="stopped by SIGINT at step 4") as stop:
        pixelrnn.train(config, progress=False)
    assert isinstance(stop.value, KeyboardInterrupt) and stop.value.signal_number == signal.SIGINT
    assert handlers == {number: signal.getsignal(number) for number in handlers}
    assert ckpt.read_checkpoint(tmp_path / "run" / ckpt.LAST)[1]["trainer"]["step"] == 4


def test_sigterm_from_outside_stops_a_run_with_a_checkpoint_at_its_step(tmp_path):
    import re
    import time

    run = tmp_path / "run"
    args = [a if a != "20" else "100000" for a in TRAIN]  # a budget it will not reach
    process = subprocess.Popen([sys.executable, "-m", "pixelrnn", *args, "--out", str(run)],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (run / ckpt.LAST).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)  # as `timeout` + `pkill -f` deliver it: repeats are ignored
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signal.SIGTERM, stderr
    step = int(re.search(r"stopped by SIGTERM at step (\d+), saved in", stderr).group(1))
    _, meta = ckpt.read_checkpoint(run / ckpt.LAST)
    assert meta["trainer"]["step"] == step >= 3
    lock = RunLock(run)
    lock.acquire()  # the folder is unlocked for --resume
    lock.release()


def test_refuses_to_overwrite_a_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    result = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "exists and is not empty; pass --resume or --force" in result.stderr
    assert pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "run"), "--force").returncode == 0
    (tmp_path / "file").write_text("mine")
    result = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "file"), "--force")
    assert result.returncode == 2 and "a file, not a run folder" in result.stderr
    assert (tmp_path / "file").read_text() == "mine"


def test_a_run_folder_in_use_is_refused(tmp_path):
    """A second process training into a folder that a run is writing gets a one-line error and
    changes nothing (not even with --force); the lock goes when its holder lets go."""
    run = tmp_path / "run"
    assert pixelrnn_cli_here(*TRAIN, "--steps", "3", "--out", str(run)).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    holder = RunLock(run)  # as a training process holds it
    RunLock(run).release()  # holders in one process share the lock: releasing one keeps the other's
    for extra in (["--force"], ["--resume"]):  # from another process
        result = pixelrnn_cli(*TRAIN, "--out", str(run), *extra)
        assert result.returncode == 2 and "is in use by another training process" in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    holder.release()
    assert pixelrnn_cli_here(*TRAIN, "--out", str(run), "--resume").returncode == 0


def test_a_resumed_run_keeps_its_own_configuration(tmp_path, capsys):
    """--resume takes the model, data and options from the run, so they may be left out; one given
    that differs from the run's is refused with a one-line error, and nothing is trained."""
    run = str(tmp_path / "run")  # h and the layer count left to the defaults for binary digits: 32 and 7
    assert pixelrnn_main(["train", "--model", "row_lstm", "--dataset", "digits", "--limit", "16",
                          "--batch-size", "8", "--steps", "1", "--seed", "3", "--out", run, "--quiet"]) == 0
    before = weights(tmp_path / "run")
    for wrong in (["--model", "diagonal_bilstm"], ["--dataset", "mnist"], ["--hidden", "8"], ["--layers", "2"],
                  ["--seed", "0"], ["--clip", "0"], ["--optimizer", "adam"], ["--lr-decay", "0.9"],
                  ["--limit", "17"], ["--binarize"], ["--scale-factor", "2"], ["--checkpoint-every", "7"]):
        capsys.readouterr()
        assert pixelrnn_main(["train", "--out", run, "--resume", "--steps", "2", *wrong]) == 2, wrong
        error = capsys.readouterr().err
        assert error.startswith(f"pixelrnn: error: {run} is a run with {wrong[0]} ") and error.count("\n") == 1
    after = weights(tmp_path / "run")
    assert all(torch.equal(before[name], after[name]) for name in before)
    same = ["--model", "row_lstm", "--dataset", "digits", "--hidden", "32", "--layers", "7", "--seed", "3",
            "--limit", "16", "--clip", "1", "--optimizer", "rmsprop"]
    assert pixelrnn_main(["train", "--out", run, "--resume", "--steps", "2", "--quiet", *same]) == 0
    assert pixelrnn_main(["train", "--out", run, "--resume", "--steps", "3", "--quiet"]) == 0
    assert ckpt.read_checkpoint(tmp_path / "run" / ckpt.LAST)[1]["trainer"]["step"] == 3
    capsys.readouterr()
    for spent in ([], ["--steps", "3"]):  # nothing left to train: an error, not a silent success
        assert pixelrnn_main(["train", "--out", run, "--resume", "--quiet", *spent]) == 2
        assert capsys.readouterr().err == (f"pixelrnn: error: {run} has trained its 3 steps (step 3); "
                                           "give a larger --epochs or --steps to go on\n")
    assert pixelrnn_main(["train", "--dataset", "digits", "--out", str(tmp_path / "new"), "--steps", "1"]) == 2
    assert "a new run needs --model and --dataset" in capsys.readouterr().err


def test_training_writes_metrics_curves_and_best_model(tmp_path):
    run = tmp_path / "run"
    assert pixelrnn_cli_here(*TRAIN, "--out", run).returncode == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "train_nll_nats", "valid_nll_nats", "valid_bits_per_dim"} <= records[0].keys()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    best = min(r["valid_nll_nats"] for r in records)
    out = pixelrnn_cli_here("evaluate", "--checkpoint", run, "--dataset", "digits", "--split", "valid", "--json")
    report = json.loads(out.stdout)
    assert report["images"] == 500 and report["dataset"] == "digits" and report["split"] == "valid"
    assert report["nll_nats"] == pytest.approx(best, rel=1e-5)
    assert report["bits_per_dim"] == pytest.approx(best / (784 * 0.6931471805599453), rel=1e-5)


def test_dynamic_binarization_resumes_exactly(tmp_path, monkeypatch):
    """Training on grey images with fresh Bernoulli draws: the draw generator is checkpointed."""
    from pixelrnn.training import TrainConfig, Trainer

    grey = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8)
    monkeypatch.setattr("pixelrnn.training.run_data.load_dataset", lambda *a, **k: grey)
    monkeypatch.setattr("pixelrnn.training.run_folder.plot_curves", lambda *a, **k: None)
    config = dict(model="pixelcnn", dataset="mnist", binarize=True, hidden=4, layers=1, batch_size=8,
                  checkpoint_every=2, eval_every=100)
    straight = Trainer(TrainConfig(out=str(tmp_path / "a"), steps=9, **config), progress=False)
    straight.run()
    first = Trainer(TrainConfig(out=str(tmp_path / "b"), steps=4, **config), progress=False)
    first.run()
    second = Trainer(TrainConfig(out=str(tmp_path / "b"), steps=9, **config), resume=True, progress=False)
    second.run()
    for p, q in zip(straight.model.parameters(), second.model.parameters()):
        assert torch.equal(p, q)
    # the run's validation NLL is on the draw that `pixelrnn evaluate --binarize` uses
    from pixelrnn.data import binarize_fixed

    logged = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])
    again = pixelrnn.evaluate(pixelrnn.load_model(tmp_path / "a" / "best.safetensors"),
                              binarize_fixed(grey, 256, "mnist"))
    assert again.nll_nats == pytest.approx(logged["valid_nll_nats"], rel=1e-6)


def test_resume_with_a_new_learning_rate(tmp_path, monkeypatch):
    """--resume --lr: the rate changes from the resumed step on, is recorded, and survives resumes."""
    from pixelrnn.cli.cards import write_card
    from pixelrnn.training import TrainConfig, Trainer

    monkeypatch.setattr("pixelrnn.training.run_folder.plot_curves", lambda *a, **k: None)
    config = dict(model="pixelcnn", dataset="digits", limit=40, hidden=4, layers=1, batch_size=8,
                  checkpoint_every=2, eval_every=2, out=str(tmp_path / "run"))
    Trainer(TrainConfig(steps=4, **config), progress=False).run()
    changed = Trainer(TrainConfig(steps=6, **config), resume=True, progress=False, new_lr=1e-4)
    assert rates_of_run(monkeypatch, changed) == [1e-4, 1e-4]
    assert changed.config.lr == 1e-3 and changed.config.lr_changes == [[4, 1e-4]]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["lr_changes"] == [[4, 1e-4]]
    again = Trainer(TrainConfig(steps=8, **config), resume=True, progress=False, new_lr=1e-4)
    assert again.config.lr_changes == [[4, 1e-4]] and again.config.base_lr(6) == 1e-4
    assert again.config.base_lr(3) == 1e-3
    card = write_card(tmp_path / "run").read_text()
    assert "lr 0.001, 0.0001 from step 4" in card and "--lr-at 4:0.0001" in card
    with pytest.raises(PixelRNNError, match="resumed run only"):
        Trainer(TrainConfig(steps=2, **{**config, "out": str(tmp_path / "new")}), new_lr=1e-4)


def test_learning_rate_schedule(tmp_path, monkeypatch):
    """--lr-at STEP:LR: the rate changes at those steps, in a new run and added on resume; the
    card's one command (--lr-at) trains the same schedule; past steps and bad rates are refused."""
    from pixelrnn.cli.cards import write_card
    from pixelrnn.training import TrainConfig, Trainer

    monkeypatch.setattr("pixelrnn.training.run_folder.plot_curves", lambda *a, **k: None)
    config = dict(model="pixelcnn", dataset="digits", limit=40, hidden=4, layers=1, batch_size=8,
                  checkpoint_every=2, eval_every=2, out=str(tmp_path / "run"))

    first = Trainer(TrainConfig(steps=4, lr_changes=[[3, 1e-5], [2, 1e-4], [1, 1e-4]], **config), progress=False)
    assert first.config.lr_changes == [[1, 1e-4], [3, 1e-5]]  # sorted, the repeated rate dropped
    assert rates_of_run(monkeypatch, first) == [1e-3, 1e-4, 1e-4, 1e-5]
    resumed = Trainer(TrainConfig(steps=6, lr_changes=[[5, 2e-5]], **config), resume=True, progress=False)
    assert rates_of_run(monkeypatch, resumed) == [1e-5, 2e-5]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["lr_changes"] == [[1, 1e-4], [3, 1e-5], [5, 2e-5]]
    card = write_card(tmp_path / "run").read_text()
    assert "--lr-at 1:0.0001 --lr-at 3:1e-05 --lr-at 5:2e-05" in card
    with pytest.raises(PixelRNNError, match="from step 6 on"):
        Trainer(TrainConfig(steps=8, lr_changes=[[5, 1e-5]], **config), resume=True, progress=False)
    with pytest.raises(PixelRNNError, match="value > 0"):
        Trainer(TrainConfig(steps=2, lr_changes=[[1, 0.0]], **{**config, "out": str(tmp_path / "new")}))
    result = pixelrnn_cli_here(*TRAIN, "--out", tmp_path / "cli", "--lr-at", "10=1e-4")
    assert result.returncode == 2 and "is not STEP:LR" in result.stderr


def test_learning_rate_warm_up(tmp_path, monkeypatch):
    """--warmup N: step k (from 0) runs at (k + 1) / N of the scheduled rate until step N - 1, also
    across a resume in the middle of the ramp; it is part of the run (recorded, on the card, a
    different value on resume refused); negative values are refused."""
    from pixelrnn.cli.cards import write_card
    from pixelrnn.training import TrainConfig, Trainer

    monkeypatch.setattr("pixelrnn.training.run_folder.plot_curves", lambda *a, **k: None)
    config = dict(model="pixelcnn", dataset="digits", limit=40, hidden=4, layers=1, batch_size=8,
                  checkpoint_every=2, eval_every=2, warmup=4, lr_changes=[[2, 5e-4]], out=str(tmp_path / "run"))

    first = Trainer(TrainConfig(steps=2, **config), progress=False)
    assert rates_of_run(monkeypatch, first) == pytest.approx([2.5e-4, 5e-4])
    resumed = Trainer(TrainConfig(steps=6, **{**config, "lr_changes": []}), resume=True, progress=False)
    assert rates_of_run(monkeypatch, resumed) == pytest.approx([3.75e-4, 5e-4, 5e-4, 5e-4])
    assert json.loads((tmp_path / "run" / "run.json").read_text())["warmup"] == 4
    card = write_card(tmp_path / "run").read_text()
    assert "lr 0.001 (linear warm-up over the first 4 steps)" in card and "--warmup 4" in card
    with pytest.raises(PixelRNNError, match="a run with --warmup 4, not 8"):
        Trainer(TrainConfig(steps=8, **config), resume=True, progress=False, expect={"warmup": 8})
    with pytest.raises(PixelRNNError, match="--warmup -1: needs a number of steps >= 0"):
        Trainer(TrainConfig(steps=2, **{**config, "warmup": -1, "out": str(tmp_path / "new")}))
    result = pixelrnn_cli_here(*TRAIN, "--out", tmp_path / "cli", "--warmup", "-1")
    assert result.returncode == 2 and "--warmup: -1: needs a whole number >= 0" in result.stderr


def test_kernel_size_option(tmp_path):
    """--kernel-size K builds the Row LSTM's 1 x K (and the PixelCNN's K x K) kernels; it is part of
    the run (recorded, on the card, a different value on resume refused); even sizes and the
    Diagonal BiLSTM, which has no such kernel, are refused."""
    from pixelrnn.cli.cards import write_card

    run = tmp_path / "run"
    first = pixelrnn_cli_here(*TRAIN, "--out", str(run), "--kernel-size", "5", "--steps", "2")
    assert first.returncode == 0, first.stderr
    model = pixelrnn.load_model(run / ckpt.LAST)
    assert model.config.kernel_size == 5 and model.blocks[0].kernel_size == 5
    assert json.loads((run / "run.json").read_text())["kernel_size"] == 5
    card = write_card(run, samples=1).read_text()
    assert "kernel size 5" in card and "--kernel-size 5" in card
    refused = pixelrnn_cli_here("train", "--out", str(run), "--resume", "--steps", "4", "--kernel-size", "3")
    assert refused.returncode == 2 and "a run with --kernel-size 5, not 3" in refused.stderr
    default = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "default"), "--steps", "2")
    resumed = pixelrnn_cli_here("train", "--out", str(tmp_path / "default"), "--resume", "--steps", "3",
                                "--kernel-size", "3", "--quiet")
    assert default.returncode == 0 and resumed.returncode == 0, resumed.stderr
    even = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "even"), "--kernel-size", "4")
    assert even.returncode == 2 and "--kernel-size 4: needs an odd whole number >= 1" in even.stderr
    diagonal = [*TRAIN, "--out", str(tmp_path / "diagonal"), "--kernel-size", "5"]
    diagonal[diagonal.index("row_lstm")] = "diagonal_bilstm"
    refused = pixelrnn_cli_here(*diagonal)
    assert refused.returncode == 2 and "the Diagonal BiLSTM's kernels are fixed" in refused.stderr
    assert not (tmp_path / "even").exists() and not (tmp_path / "diagonal").exists()


def test_head_option(tmp_path):
    """--head F sets the output head's width; it is part of the run (recorded, on the card, a
    different value on resume refused) and is range-checked before any work."""
    from pixelrnn.cli.cards import write_card

    run = tmp_path / "run"
    first = pixelrnn_cli_here(*TRAIN, "--out", str(run), "--head", "12", "--steps", "2")
    assert first.returncode == 0, first.stderr
    model = pixelrnn.load_model(run / ckpt.LAST)
    assert model.config.head == 12 and model.head_hidden.out_features == 12
    assert json.loads((run / "run.json").read_text())["head"] == 12
    assert "--head 12" in write_card(run, samples=1).read_text()
    refused = pixelrnn_cli_here("train", "--out", str(run), "--resume", "--steps", "4", "--head", "32")
    assert refused.returncode == 2 and "a run with --head 12, not 32" in refused.stderr
    zero = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "zero"), "--head", "0")
    assert zero.returncode == 2 and "--head 0: needs a whole number >= 1" in zero.stderr
    assert not (tmp_path / "zero").exists()


def test_batch_size_schedule(tmp_path, monkeypatch):
    """--resume --batch-size / --batch-at: later steps take batches of the new size from where the
    data order stands; the change is recorded, and the card's one command (--batch-at) trains the
    same weights; an epoch budget still means whole epochs; bad sizes are refused."""
    from pixelrnn.cli.cards import write_card
    from pixelrnn.training import TrainConfig, Trainer

    monkeypatch.setattr("pixelrnn.training.run_folder.plot_curves", lambda *a, **k: None)
    config = dict(model="pixelcnn", dataset="digits", limit=40, hidden=4, layers=1, batch_size=8,
                  checkpoint_every=2, eval_every=2)

    def sizes_of(trainer):
        sizes, original_batch = [], trainer.data.batch
        monkeypatch.setattr(trainer.data, "batch", lambda i, *rest: (sizes.append(len(i)), original_batch(i, *rest))[1])
        trainer.run()
        return sizes

    resumed_dir = tmp_path / "resumed"
    assert sizes_of(Trainer(TrainConfig(steps=3, out=str(resumed_dir), **config), progress=False)) == [8] * 3
    resumed = Trainer(TrainConfig(steps=9, out=str(resumed_dir), **config), resume=True, progress=False,
                      new_batch_size=4, new_eval_every=3)
    # 24 of 40 images were seen in epoch 0; its other 16 come 4 at a time, then epoch 1
    assert sizes_of(resumed) == [4] * 6 and resumed.state["epoch"] == 1 and resumed.state["position"] == 8
    assert json.loads((resumed_dir / "run.json").read_text())["batch_changes"] == [[3, 4]]
    logged = [json.loads(line)["step"] for line in (resumed_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged == [2, 3, 6, 9]  # every 2 steps, then (from the resume) every 3 and at the end
    card = write_card(resumed_dir).read_text()
    assert "batch 8, 4 from step 3" in card and "--batch-at 3:4" in card

    straight = Trainer(TrainConfig(steps=9, out=str(tmp_path / "straight"), batch_changes=[[3, 4]], **config),
                       progress=False)
    straight.run()
    assert weights(tmp_path / "straight").keys() == weights(resumed_dir).keys()
    for name, tensor in weights(tmp_path / "straight").items():
        assert torch.equal(tensor, weights(resumed_dir)[name]), name

    epochs = Trainer(TrainConfig(epochs=2, batch_changes=[[2, 12]], out=str(tmp_path / "epochs"),
                                 **config), progress=False)
    assert sizes_of(epochs) == [8, 8, 12, 12] + [12, 12, 12, 4] and epochs.state["epoch"] == 2
    with pytest.raises(PixelRNNError, match="--batch-size 0: needs a whole number >= 1"):
        Trainer(TrainConfig(steps=2, out=str(tmp_path / "bad"), **{**config, "batch_size": 0}))
    for bad in ([[1, 0]], [[1, 2.5]]):
        with pytest.raises(PixelRNNError, match="batch-size change"):
            Trainer(TrainConfig(steps=2, batch_changes=bad, out=str(tmp_path / "bad"), **config))
    with pytest.raises(PixelRNNError, match="from step 9 on"):
        Trainer(TrainConfig(steps=12, batch_changes=[[5, 2]], out=str(resumed_dir), **config), resume=True)
    with pytest.raises(PixelRNNError, match="resumed run only"):
        Trainer(TrainConfig(steps=2, out=str(tmp_path / "new"), **config), new_batch_size=4)
    result = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "cli"), "--batch-at", "10:a")
    assert result.returncode == 2 and "is not STEP:SIZE" in result.stderr


def test_the_cards_command_reproduces_a_resumed_run(tmp_path):
    """A run resumed with a new rate, batch size and evaluation interval: the one command on its
    model card trains, from nothing, the same weights to the same step."""
    shipped, again = tmp_path / "shipped", tmp_path / "again"
    assert pixelrnn_cli_here(*TRAIN, "--out", str(shipped), "--steps", "8").returncode == 0
    resumed = pixelrnn_cli_here("train", "--model", "row_lstm", "--dataset", "digits", "--out", str(shipped),
                                "--resume", "--quiet", "--steps", "14", "--batch-size", "4", "--lr", "5e-4",
                           "--eval-every", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert pixelrnn_cli_here("card", str(shipped)).returncode == 0
    card = (shipped / "README.md").read_text()
    command = card.split("```\n")[1].split("\n")[0].split()
    assert command[:2] == ["pixelrnn", "train"] and "--batch-at" in command and "--steps" in command
    command[command.index("--out") + 1] = str(again)
    assert command[command.index("--steps") + 1] == "14"
    assert pixelrnn_cli_here(*command[1:], "--quiet").returncode == 0
    for name, tensor in weights(shipped).items():
        assert torch.equal(tensor, weights(again)[name]), name
