"""The demo and the model cards, on a tiny trained run and on the shipped model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pixelrnn.cli.cards import write_card
from pixelrnn.cli.demo import SHIPPED_MODEL, run_demo
from pixelrnn.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    config = TrainConfig(model="diagonal_bilstm", dataset="digits", out=str(out), steps=6, hidden=4,
                         layers=1, batch_size=8, limit=48, eval_every=3)
    Trainer(config, progress=False).run()
    return out


def test_demo_writes_the_pictures_and_the_report(tiny_run, tmp_path):
    figures = run_demo(tmp_path / "demo", checkpoint=tiny_run)
    for name in ("samples.png", "completions.png", "report.md", "report.html", "figures.json"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
    assert 100 < figures["digits_test_nll_nats"] < 600 and figures["images"] == 500
    report = (tmp_path / "demo" / "report.md").read_text()
    assert f"{figures['digits_test_nll_nats']:.2f}" in report and "![samples](samples.png)" in report
    assert json.loads((tmp_path / "demo" / "figures.json").read_text())["architecture"] == "diagonal_bilstm"


def test_model_card(tiny_run, tmp_path):
    moved = tmp_path / "shipped"  # a run moved after training: its card names where it is now
    shutil.copytree(tiny_run, moved)
    card = write_card(moved, note="stopped early.").read_text()
    assert card.rstrip().endswith("Status: stopped early.")
    assert "diagonal_bilstm, h = 4, 1 layers" in card
    assert "pixelrnn train --model diagonal_bilstm --dataset digits" in card
    assert f"--out {moved} " in card and str(tiny_run) not in card
    assert "best validation NLL" in card and "![training curve](curves.png)" in card
    assert "`--resume` continues the shipped run exactly" in card
    (moved / "last.safetensors").unlink()  # shipped without its training state: the card says so
    assert "`--resume` cannot continue it" in write_card(moved).read_text()


def test_model_card_samples_are_what_its_sample_command_draws(tiny_run, tmp_path):
    card = write_card(tiny_run, samples=9).read_text()
    assert "![samples](samples.png)" in card
    command = card.split("`pixelrnn sample ")[1].split("`")[0].split()
    drawn = subprocess.run([sys.executable, "-m", "pixelrnn", "sample", *command, "--out", str(tmp_path / "s.png")],
                           capture_output=True, text=True)
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "s.png").read_bytes() == (tiny_run / "samples.png").read_bytes()
    assert "![samples]" not in write_card(tiny_run, samples=0).read_text()


def test_the_package_carries_the_shipped_demo_model():
    """In a checkout the package's model is the shipped folder's file; the wheel copies it."""
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    shipped = root / "checkpoints" / "binarized-mnist-diagonal-bilstm" / "best.safetensors"
    assert SHIPPED_MODEL.resolve() == shipped.resolve() and shipped.is_file()
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    inside = SHIPPED_MODEL.relative_to(SHIPPED_MODEL.parents[1])
    assert any(inside.match(pattern) for pattern in package_data["pixelrnn"]), "not in the wheel"


def test_the_shipped_model_runs_the_demo(tmp_path):
    figures = run_demo(tmp_path / "demo")
    assert figures["architecture"] == "diagonal_bilstm" and "h = 16, 7 layers" in figures["model"]
    assert figures["digits_test_nll_nats"] < 120  # a trained model, far below the 543 of a uniform one
