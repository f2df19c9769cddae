"""The trained models shipped under checkpoints/: loadable, carded, evaluable, and as good as stated."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from test_training import pixelrnn_cli_here

import pixelrnn
from pixelrnn.data import dataset_info

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "checkpoints").iterdir() if p.is_dir())
SHARED = Path(os.environ.get("PIXELRNN_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARCHITECTURES = {"pixelcnn": "pixelcnn", "row-lstm": "row_lstm", "diagonal-bilstm": "diagonal_bilstm"}


def run_options(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def best_record(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    return min(records, key=lambda r: r["valid_nll_nats"])


def trained_levels(options: dict) -> int:
    """The values per channel the run modelled: 2 for binarized data, else its dataset's."""
    return 2 if options["binarize"] else dataset_info(options["dataset"]).levels


def test_the_diagonal_bilstm_and_the_pixelcnn_are_shipped():
    names = {p.name for p in SHIPPED}
    assert {"binarized-mnist-diagonal-bilstm", "binarized-mnist-pixelcnn"} <= names


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_matches_its_name_and_card(folder):
    model = pixelrnn.load_model(folder)
    options = run_options(folder)
    expected = next(arch for suffix, arch in ARCHITECTURES.items() if f"-{suffix}" in folder.name)
    assert model.config.architecture == expected and model.config.levels == trained_levels(options)
    assert folder.name.startswith(options["dataset"])
    card = (folder / "README.md").read_text()
    best = best_record(folder)
    assert f"**{best['valid_nll_nats']:.2f} ± {best['valid_nll_nats_stderr']:.2f} nats**" in card
    assert (folder / "curves.png").stat().st_size > 0
    assert "![samples](samples.png)" in card and (folder / "samples.png").stat().st_size > 0
    assert (folder / "best.safetensors").stat().st_size < 5_000_000  # "a few MB at most"
    if model.levels > 2:  # natural images: bits/dim, and the paper's Figure 1
        assert f"({best['valid_bits_per_dim']:.4f} bits/dim)" in card
        assert "![completions](completions.png)" in card and (folder / "completions.png").stat().st_size > 0


@pytest.fixture(scope="module")
def test_files(tmp_path_factory) -> dict[str, Path]:
    """Folders holding a test file of each benchmark's own format, random values: binarized
    MNIST's binarized_mnist_test.amat (10,000 lines of 784 values) and CIFAR-10's test_batch
    (a pickled dict of 10,000 rows of 3,072 bytes, R, G then B planes)."""
    rng = np.random.default_rng(0)
    binary = tmp_path_factory.mktemp("binarized_mnist")
    np.savetxt(binary / "binarized_mnist_test.amat", rng.integers(0, 2, (10_000, 784)), fmt="%d")
    cifar = tmp_path_factory.mktemp("cifar10")
    (cifar / "cifar-10-batches-py").mkdir()
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": rng.integers(0, 10, 10_000).tolist(),
             b"data": rng.integers(0, 256, (10_000, 3072), dtype=np.uint8)}
    (cifar / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    return {"binarized-mnist": binary, "cifar10": cifar}


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_evaluates_a_test_file(folder, test_files):
    """Every shipped model scores its benchmark's test file (a class-conditional one: by its
    marginal; one trained on MNIST binarized by the package: the binarized-MNIST benchmark's)."""
    options = run_options(folder)
    dataset = "binarized-mnist" if trained_levels(options) == 2 else options["dataset"]
    result = pixelrnn_cli_here("evaluate", "--checkpoint", folder, "--dataset", dataset,
                               "--data-dir", test_files[dataset], "--split", "test", "--limit", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["split"] == "test" and report["images"] == 5 and report["nll_nats"] > 0


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_scores_what_its_card_says_on_validation_images(folder):
    """The first 256 validation images of its run's data: within 4 standard errors of the card's
    full-split NLL (a class-conditional model's: -ln p(x | y), given each image's label). All
    shipped models are within 1.6 of it today; test_shipped_model_gives_the_likelihoods_it_gave_before
    pins the binarized-MNIST models' likelihoods exactly."""
    from pixelrnn.data import binarize_fixed, load_labeled

    options = run_options(folder)
    data = SHARED / options["dataset"].replace("-", "_")
    if not data.is_dir():
        pytest.skip(f"shared data folder {data} absent")
    split = load_labeled(options["dataset"], "valid", data, labels=options.get("conditional", False))
    images = binarize_fixed(split.images, 256, options["dataset"]) if options["binarize"] else split.images
    labels = None if split.labels is None else split.labels[:256]
    report = pixelrnn.evaluate(pixelrnn.load_model(folder), images[:256], labels=labels)
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
