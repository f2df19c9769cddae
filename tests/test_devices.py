"""On an accelerator the models compute what they compute on the CPU (run by benchmarks/gpu_check.sh).

Each test takes its device from ``DEVICES``: the CUDA device when this machine has one, none on
a CPU-only machine (the tests skip; no test depends on a GPU). ``PIXELRNN_TEST_DEVICES=cpu``
runs them with the CPU standing in for the accelerator, to check the tests themselves.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from helpers import ARCHITECTURES, assert_cached_logits_equal, load_benchmark, tiny_model, tiny_multiscale
from test_conditional import CLASSES, conditional
from test_training import TRAIN, pixelrnn_cli_here

import pixelrnn
from pixelrnn.layers import scan_kernel, scan_triton


def accelerators() -> list[str]:
    named = os.environ.get("PIXELRNN_TEST_DEVICES")
    if named:
        return named.split(",")
    return ["cuda"] if torch.cuda.is_available() else []


DEVICES = accelerators()
on_each_device = pytest.mark.parametrize("device", DEVICES or [pytest.param("cuda", marks=pytest.mark.skip(
    reason="no CUDA device (PIXELRNN_TEST_DEVICES=cpu checks these tests on the CPU)"))])


def log_prob_and_gradients(model, x, labels=None):
    """(log_prob (B,), gradients of the mean NLL by parameter name), all on the CPU."""
    model.zero_grad(set_to_none=True)
    log_prob = model.log_prob(x, labels)
    (-log_prob.mean()).backward()
    grads = {name: p.grad.cpu() for name, p in model.named_parameters() if p.grad is not None}
    return log_prob.detach().cpu(), grads


def assert_same_on_device(model, x, device, labels=None):
    """``model`` (float64, on the CPU) gives the same log-likelihoods and gradients on ``device``."""
    expected, expected_grads = log_prob_and_gradients(model, x, labels)
    moved = copy.deepcopy(model).to(device)
    got, grads = log_prob_and_gradients(moved, x.to(device), None if labels is None else labels.to(device))
    torch.testing.assert_close(got, expected)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], msg=lambda m, name=name: f"{name}: {m}")


@on_each_device
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,levels", [(1, 2), (3, 8)])
def test_log_likelihoods_and_gradients_match_the_cpu(device, arch, channels, levels):
    model = tiny_model(arch, channels, levels).train()
    assert_same_on_device(model, torch.randint(0, levels, (3, channels, 5, 6)), device)


@on_each_device
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_fused_recurrences_match_the_reference_loops(device, arch):
    """The recurrent layers run on an accelerator through the PyTorch scan (the C++ kernel is the
    CPU's): it must agree with the plain loops there, values and gradients."""
    model = tiny_model(arch, 3, 8).to(device)
    x = torch.randint(0, 8, (3, 3, 5, 6), device=device)
    fused = log_prob_and_gradients(model.set_fused(True), x)
    reference = log_prob_and_gradients(model.set_fused(False), x)
    torch.testing.assert_close(fused[0], reference[0])
    for name, grad in fused[1].items():
        torch.testing.assert_close(grad, reference[1][name])


@on_each_device
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_multiscale_and_class_conditional_models_match_the_cpu(device, arch):
    assert_same_on_device(tiny_multiscale(arch, 3, 8), torch.randint(0, 8, (2, 3, 6, 6)), device)
    model, x = conditional(tiny_model(arch, 3, 8, classes=CLASSES)), torch.randint(0, 8, (3, 3, 4, 5))
    assert_same_on_device(model, x, device, labels=torch.tensor([0, 2, 1]))  # p(x | y)
    assert_same_on_device(model, x, device)  # the exact marginal p(x), summed over the classes


@on_each_device
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_cached_logits_equal_the_full_model(device, arch, channels):
    model = tiny_model(arch, channels, 5).to(device)
    assert_cached_logits_equal(model, torch.randint(0, 5, (2, channels, 4, 6), device=device), atol=1e-10)


@on_each_device
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("method", ["cached", "naive"])
def test_samples_drawn_on_the_device_are_the_cpu_samples(device, arch, method):
    """The random numbers come from one CPU generator, so a seed draws the same images anywhere
    (but where float rounding moves a probability across a drawn number)."""
    assert_same_samples_on_device(tiny_model(arch, 3, 8), device, method)


@on_each_device
@pytest.mark.parametrize("arch", ["pixelcnn", "diagonal_bilstm"])
def test_class_conditional_samples_on_the_device_are_the_cpu_samples(device, arch):
    """Without labels the classes are drawn from the prior first, from the same CPU generator."""
    assert_same_samples_on_device(conditional(tiny_model(arch, 3, 8, classes=CLASSES)), device, "cached")


def assert_same_samples_on_device(model, device, method):
    on_cpu = pixelrnn.sample(model, 24, 4, 5, seed=5, method=method)
    there = pixelrnn.sample(copy.deepcopy(model).to(device), 24, 4, 5, seed=5, method=method)
    assert there.device.type == torch.device(device).type and there.dtype == torch.long
    differing = (on_cpu != there.cpu()).flatten(1).any(1).float().mean().item()
    assert differing <= 1 / 24


@on_each_device
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bf16_autocast_on_the_device(device, arch):
    """As on the CPU (tests/test_precision.py): float32 likelihoods within 0.1% of float32's."""
    model = tiny_model(arch, 3, 256).float().to(device)
    x = torch.randint(0, 256, (6, 3, 8, 7), device=device)
    with torch.no_grad():
        exact = model.log_prob(x)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            mixed = model.log_prob(x)
    assert mixed.dtype == torch.float32
    assert ((mixed - exact).abs() / exact.abs()).max() < 1e-3
    assert not torch.equal(mixed, exact)  # autocast did act


@on_each_device
@pytest.mark.parametrize("arch", ["row_lstm", "diagonal_bilstm"])  # gpu_check's train-triton rows
def test_the_triton_scan_gives_the_pytorch_scans_likelihoods_and_gradients(device, arch, monkeypatch):
    """The Triton kernels (compiled on CUDA; interpreted where the CPU stands in) against the
    PyTorch scan on the same device, float32. On a GPU at the paper's h and CIFAR-10 size:
    32 slots a step and h in several blocks, as the kernels run there."""
    pytest.importorskip("triton")
    hidden, size = (128, 32) if torch.device(device).type == "cuda" else (16, 5)
    monkeypatch.setenv("TRITON_INTERPRET", "1" if device == "cpu" else "0")
    torch.manual_seed(0)
    model = pixelrnn.build_model(arch, channels=3, levels=256, hidden=hidden, layers=2, head=32).to(device)
    x = torch.randint(0, 256, (4, 3, size, size), device=device)
    monkeypatch.setattr(scan_kernel, "_enabled", False)
    results = []
    for triton in (True, False):
        monkeypatch.setattr(scan_triton, "_enabled", triton)
        results.append(log_prob_and_gradients(model, x))
    (got, got_grads), (expected, expected_grads) = results
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)  # nats per image
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@on_each_device
def test_train_evaluate_and_sample_on_the_device(tmp_path, device):
    """The command line end to end on the device; its run evaluates to the same NLL on the CPU."""
    run = tmp_path / "run"
    assert pixelrnn_cli_here(*TRAIN, "--out", run, "--device", device).returncode == 0
    reports = {}
    for where in (device, "cpu"):
        result = pixelrnn_cli_here("evaluate", "--checkpoint", run, "--dataset", "digits", "--split", "valid",
                                   "--limit", "64", "--json", "--device", where)
        assert result.returncode == 0, result.stderr
        reports[where] = json.loads(result.stdout)
    assert reports[device]["nll_nats"] == pytest.approx(reports["cpu"]["nll_nats"], rel=1e-5)
    drawn = pixelrnn_cli_here("sample", "--checkpoint", run, "--n", "4", "--seed", "0", "--device", device,
                              "--out", tmp_path / "s.png")
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("arch", ["pixelcnn", "row_lstm", "diagonal_bilstm"])  # gpu_check's train-graph rows
def test_a_training_step_replayed_as_a_cuda_graph_trains_as_the_eager_one(arch):
    """The GPU check's `train-graph` rows (benchmarks/training.py --cuda-graph) time a real step:
    3 eager warm-up steps and 2 replays of the captured one leave the weights of 5 eager steps."""
    training = load_benchmark("training")
    options = dict(channels=3, levels=16, hidden=8, layers=2, head=16)
    eager, step = training.training_step(arch, options, size=8, batch=4, device="cuda")
    for _ in range(5):
        step()
    captured, replay = training.training_step(arch, options, size=8, batch=4, device="cuda", cuda_graph=True)
    for _ in range(2):
        replay()
    torch.cuda.synchronize()
    for (name, expected), got in zip(eager.named_parameters(), captured.parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
