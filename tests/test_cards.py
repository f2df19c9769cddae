"""Model cards (`pixelrnn card`): the paper's Figure 1 drawn from the run's own validation images,
redrawn exactly by the command the card prints, and bits/dim for natural images."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import make_cifar

from pixelrnn.cli.main import main
from pixelrnn.data import datasets as registry
from pixelrnn.training import TrainConfig, Trainer


@pytest.fixture
def cifar_run(tmp_path, monkeypatch):
    """A two-step Row LSTM run on a fake CIFAR-10 folder whose last 3 training images are the
    validation split. One thread: the sampler's small steps crawl on threads that another process
    keeps busy, and the tests may share the machine."""
    monkeypatch.setenv("PIXELRNN_THREADS", "1")
    threads = torch.get_num_threads()
    monkeypatch.setattr(registry, "CIFAR_VALID", 3)
    make_cifar(tmp_path / "data" / "cifar-10-batches-py", np.random.default_rng(4))
    run = tmp_path / "run"
    Trainer(TrainConfig(model="row_lstm", dataset="cifar10", data_dir=str(tmp_path / "data"), hidden=4, layers=1,
                        head=8, steps=2, eval_every=2, checkpoint_every=2, out=str(run)), progress=False).run()
    yield run
    torch.set_num_threads(threads)


def test_the_cards_figure_one_is_what_its_complete_command_draws(cifar_run):
    assert main(["card", str(cifar_run), "--samples", "0", "--completions", "2"]) == 0
    card = (cifar_run / "README.md").read_text()
    command = re.search(r"`(pixelrnn complete [^`]+)`", card).group(1)
    assert "--split valid --known-rows 16 --n 2 --samples 4" in command
    drawn = (cifar_run / "completions.png").read_bytes()
    with Image.open(cifar_run / "completions.png") as grid:  # 2 rows of original, occluded, 4 completions
        assert round(grid.size[0] / grid.size[1]) == 6 // 2
    (cifar_run / "completions.png").unlink()
    assert main(shlex.split(command)[1:]) == 0
    assert (cifar_run / "completions.png").read_bytes() == drawn
    # what the grid shows: the originals, then their top halves kept by every completion
    values = np.load(cifar_run / "completions.npy")  # (2 images, 4 completions, 3, 32, 32)
    valid = registry.load_dataset("cifar10", "valid", cifar_run.parent / "data")[:2].numpy()
    assert values.shape == (2, 4, 3, 32, 32)
    assert (values[:, :, :, :16] == valid[:, None, :, :16]).all()
    assert not (values[:, :, :, 16:] == valid[:, None, :, 16:]).all()  # the lower half is drawn, not copied


def test_natural_image_cards_give_bits_per_dim(cifar_run):
    assert main(["card", str(cifar_run), "--samples", "0"]) == 0
    card = (cifar_run / "README.md").read_text()
    assert "| step | epoch | train NLL (nats) | valid NLL (nats) | train bits/dim | valid bits/dim |" in card
    assert "completions.png" not in card  # none asked for


def test_a_card_without_the_runs_data_is_one_line(cifar_run, tmp_path, capsys):
    assert main(["card", str(cifar_run), "--samples", "0", "--completions", "2",
                 "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_card_shows_the_schedule_its_history_ran(tmp_path):
    """Rate and batch changes set for steps after the last evaluation are a plan: the card's table
    and command leave them out; those before it are kept."""
    run = tmp_path / "run"
    Trainer(TrainConfig(model="pixelcnn", dataset="digits", hidden=4, layers=1, head=8, steps=4, eval_every=4,
                        checkpoint_every=4, lr_changes=[[2, 5e-4], [4, 1e-4], [50, 2e-5]],
                        batch_changes=[[3, 8], [60, 4]], out=str(run)), progress=False).run()
    assert main(["card", str(run), "--samples", "0"]) == 0
    card = (run / "README.md").read_text()
    assert "0.0005 from step 2" in card and "--lr-at 2:0.0005" in card
    assert "8 from step 3" in card and "--batch-at 3:8" in card
    for planned in ("from step 4", "from step 50", "from step 60", "--lr-at 4:", "--lr-at 50:", "--batch-at 60:"):
        assert planned not in card, planned
