"""The trained models shipped under checkpoints/: loadable, carded, evaluable, and as good as stated."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_training import pixelrnn_cli

import pixelrnn

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "checkpoints").iterdir() if p.is_dir())
SHARED = Path(os.environ.get("PIXELRNN_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARCHITECTURES = {"pixelcnn": "pixelcnn", "row-lstm": "row_lstm", "diagonal-bilstm": "diagonal_bilstm"}


def run_options(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def best_record(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    return min(records, key=lambda r: r["valid_nll_nats"])


def test_the_diagonal_bilstm_and_the_pixelcnn_are_shipped():
    names = {p.name for p in SHIPPED}
    assert {"binarized-mnist-diagonal-bilstm", "binarized-mnist-pixelcnn"} <= names


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_matches_its_name_and_card(folder):
    model = pixelrnn.load_model(folder)
    expected = next(arch for suffix, arch in ARCHITECTURES.items() if f"-{suffix}" in folder.name)
    assert model.config.architecture == expected and model.config.levels == 2
    card = (folder / "README.md").read_text()
    best = best_record(folder)
    assert f"**{best['valid_nll_nats']:.2f} ± {best['valid_nll_nats_stderr']:.2f} nats**" in card
    assert (folder / "curves.png").stat().st_size > 0
    assert "![samples](samples.png)" in card and (folder / "samples.png").stat().st_size > 0
    assert (folder / "best.safetensors").stat().st_size < 5_000_000  # "a few MB at most"


@pytest.fixture(scope="module")
def test_file_folder(tmp_path_factory):
    """A binarized_mnist_test.amat of the benchmark's format: 10,000 lines of 784 values."""
    folder = tmp_path_factory.mktemp("binarized_mnist")
    values = np.random.default_rng(0).integers(0, 2, (10_000, 784))
    np.savetxt(folder / "binarized_mnist_test.amat", values, fmt="%d")
    return folder


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_evaluates_a_test_file(folder, test_file_folder):
    """Every shipped model scores a benchmark test file (a class-conditional one: by its marginal)."""
    result = pixelrnn_cli("evaluate", "--checkpoint", str(folder), "--dataset", "binarized-mnist",
                          "--data-dir", str(test_file_folder), "--split", "test", "--limit", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["split"] == "test" and report["images"] == 5 and report["nll_nats"] > 0


@pytest.mark.skipif(not (SHARED / "binarized_mnist").is_dir(), reason="shared data folder absent")
@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_scores_what_its_card_says_on_validation_images(folder):
    """The first 500 validation images of its run's data: within 4 standard errors of the card's
    full-split NLL (a class-conditional model's: -ln p(x | y), given each image's label)."""
    from pixelrnn.data import binarize_fixed, load_labeled

    options = run_options(folder)
    split = load_labeled(options["dataset"], "valid", SHARED / options["dataset"].replace("-", "_"),
                         labels=options.get("conditional", False))
    images = binarize_fixed(split.images, 256, options["dataset"]) if options["binarize"] else split.images
    labels = None if split.labels is None else split.labels[:500]
    report = pixelrnn.evaluate(pixelrnn.load_model(folder), images[:500], labels=labels)
    best = best_record(folder)
    assert abs(report.nll_nats - best["valid_nll_nats"]) < 4 * report.nll_nats_stderr


# Mean NLL (nats) of the first 64 validation images under each shipped model, as computed by the
# code before the block protocol (commit d0ac995), in float32 on the CPU: the redesign must load
# every checkpoint unchanged and give the same likelihoods, to float rounding.
BEFORE_THE_BLOCK_PROTOCOL = {
    "binarized-mnist-diagonal-bilstm": 77.39320284128189,
    "binarized-mnist-diagonal-bilstm-1layer": 78.82053411006927,
    "binarized-mnist-diagonal-bilstm-h32": 77.00640964508057,
    "binarized-mnist-pixelcnn": 81.10444062948227,
    "binarized-mnist-pixelcnn-dropout": 80.93725675344467,
    "binarized-mnist-pixelcnn-k5": 79.26724451780319,
    "binarized-mnist-row-lstm": 79.3325605392456,
    "binarized-mnist-row-lstm-h32-k5": 78.71832478046417,
    "binarized-mnist-row-lstm-h64": 79.30647897720337,
}


@pytest.mark.skipif(not (SHARED / "binarized_mnist").is_dir(), reason="shared data folder absent")
@pytest.mark.parametrize("name", sorted(BEFORE_THE_BLOCK_PROTOCOL))
def test_shipped_model_gives_the_likelihoods_it_gave_before(name):
    import torch

    images = pixelrnn.load_dataset("binarized-mnist", "valid", SHARED / "binarized_mnist")[:64].long()
    with torch.no_grad():
        nll = -pixelrnn.load_model(ROOT / "checkpoints" / name).log_prob(images).double().mean().item()
    assert abs(nll - BEFORE_THE_BLOCK_PROTOCOL[name]) < 1e-4
