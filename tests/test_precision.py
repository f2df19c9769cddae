"""--precision bf16: training steps under bf16 autocast, likelihoods and their sums in float32.

Stated tolerance (measured on the shipped models: mean NLL within 0.005 nats, each image within
0.2%): every image's bf16 log-likelihood within 0.1% of float32's for tiny random models, and
within 0.5% (the mean within 0.02 nats) for the shipped trained models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import ARCHITECTURES, tiny_model, tiny_multiscale
from test_training import TRAIN, pixelrnn_cli_here

import pixelrnn

SHARED = Path(os.environ.get("PIXELRNN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def bf16_and_float32(model, x):
    with torch.no_grad():
        exact = model.log_prob(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.log_prob(x)
    return mixed, exact


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,levels", [(1, 2), (3, 256)])
def test_bf16_log_likelihoods_are_float32_and_close(arch, channels, levels):
    model = tiny_model(arch, channels, levels).float()
    x = torch.randint(0, levels, (6, channels, 8, 7), generator=torch.Generator().manual_seed(0))
    mixed, exact = bf16_and_float32(model, x)
    assert mixed.dtype == torch.float32
    assert ((mixed - exact).abs() / exact.abs()).max() < 1e-3
    assert not torch.equal(mixed, exact)  # autocast did act


@pytest.mark.parametrize("arch", ["row_lstm", "gated_pixelcnn"])
def test_bf16_log_likelihoods_of_a_multiscale_model(arch):
    model = tiny_multiscale(arch, 3, 16).float()
    x = torch.randint(0, 16, (4, 3, 6, 6), generator=torch.Generator().manual_seed(1))
    mixed, exact = bf16_and_float32(model, x)
    assert ((mixed - exact).abs() / exact.abs()).max() < 1e-3


@pytest.mark.skipif(not (SHARED / "binarized_mnist").is_dir(), reason="shared data folder absent")
@pytest.mark.parametrize("name", ["binarized-mnist-diagonal-bilstm", "binarized-mnist-pixelcnn-k5",
                                  "binarized-mnist-row-lstm-h32-k5"])
def test_bf16_log_likelihoods_of_shipped_models(name):
    x = pixelrnn.load_dataset("binarized-mnist", "valid", SHARED / "binarized_mnist")[:64].long()
    model = pixelrnn.load_model(Path(__file__).resolve().parents[1] / "checkpoints" / name)
    mixed, exact = bf16_and_float32(model, x)
    assert abs(mixed.mean() - exact.mean()) < 0.02
    assert ((mixed - exact).abs() / exact.abs()).max() < 5e-3


def test_precision_is_part_of_the_run(tmp_path):
    run = tmp_path / "run"
    bf16 = pixelrnn_cli_here(*TRAIN, "--out", str(run), "--precision", "bf16", "--steps", "4")
    assert bf16.returncode == 0, bf16.stderr
    assert json.loads((run / "run.json").read_text())["precision"] == "bf16"
    fp32 = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "fp32"), "--steps", "4")
    assert fp32.returncode == 0, fp32.stderr
    # The same run in float32 ends elsewhere (autocast acted), and not far (bf16 is close).
    a, b = (pixelrnn.load_model(r / "last.safetensors").requires_grad_(False) for r in (run, tmp_path / "fp32"))
    gaps = [float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True)]
    assert 0 < max(gaps) < 0.05
    from pixelrnn.cli.cards import write_card

    assert "--precision bf16" in write_card(run, samples=1).read_text()
    refused = pixelrnn_cli_here("train", "--out", str(run), "--resume", "--steps", "6", "--precision", "fp32")
    assert refused.returncode == 2 and "a run with --precision bf16, not fp32" in refused.stderr
    bad = pixelrnn_cli_here(*TRAIN, "--out", str(tmp_path / "bad"), "--precision", "fp16")
    assert bad.returncode == 2 and "--precision" in bad.stderr
