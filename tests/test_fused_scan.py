"""The fused LSTM scans (PyTorch and compiled CPU kernel) compute exactly what the plain
reference recurrences compute, forward and backward."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import fallback_march, load_benchmark, tiny_model

import pixelrnn
from pixelrnn.layers import scan_kernel
from pixelrnn.layers.lstm_scan import ScanPlan, _LSTMScan, lstm_scan

CASES = [
    ("row_lstm", 1, 2, {}),
    ("row_lstm", 3, 256, {}),
    ("row_lstm", 1, 4, {"kernel_size": 1}),
    ("row_lstm", 3, 4, {"kernel_size": 5}),
    ("diagonal_bilstm", 1, 2, {}),
    ("diagonal_bilstm", 3, 256, {}),
    ("diagonal_bilstm", 3, 4, {"residual": False, "skip": False}),
]
SIZES = [(1, 1), (1, 5), (5, 1), (3, 7), (6, 4), (5, 5)]


@pytest.fixture(params=["native", "torch"])
def scan_backend(request):
    """Runs a test with the compiled CPU kernel, then with the PyTorch scan."""
    native = request.param == "native"
    if native and scan_kernel.load() is None:
        pytest.skip("the CPU LSTM kernel cannot be built here (no C++ compiler?)")
    previous = scan_kernel.is_enabled()
    scan_kernel.set_enabled(native)
    yield request.param
    scan_kernel.set_enabled(previous)


def _run(model, x, fused):
    model.set_fused(fused).zero_grad()
    x = x.clone().requires_grad_()
    logits = model(x)
    weights = torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).view_as(logits)
    (logits * weights).sum().backward()
    return logits.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("arch,channels,levels,options", CASES)
@pytest.mark.parametrize("height,width", SIZES)
def test_fused_matches_reference_forward_and_backward(
    scan_backend, arch, channels, levels, options, height, width
):
    model = tiny_model(arch, channels, levels, **options)
    x = torch.rand(3, channels, height, width, dtype=torch.float64) * (levels - 1)
    fused, reference = _run(model, x, True), _run(model, x, False)
    torch.testing.assert_close(fused[0], reference[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(fused[1], reference[1], rtol=0, atol=1e-12)
    for name, grad in reference[2].items():
        torch.testing.assert_close(fused[2][name], grad, rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", ["binarized-mnist-diagonal-bilstm", "binarized-mnist-row-lstm"])
def test_fused_matches_reference_at_the_paper_configuration_in_float32(scan_backend, name):
    torch.manual_seed(0)
    model = pixelrnn.build_paper_model(name)
    x = torch.randint(0, 2, (4, 1, 28, 28)).float()
    fused, reference = _run(model, x, True), _run(model, x, False)
    torch.testing.assert_close(fused[0], reference[0], rtol=1e-4, atol=1e-4)
    for name_, grad in reference[2].items():
        torch.testing.assert_close(fused[2][name_], grad, rtol=1e-3, atol=1e-5, msg=name_)


def test_scan_gradients_pass_gradcheck(scan_backend):
    torch.manual_seed(0)
    height, width, batch, hidden = 3, 4, 2, 2
    plan = ScanPlan("diagonals", height, width, offsets=(0, -1), mirrored=(False, True))
    inputs = (
        torch.randn(height, width, batch, 2, 4 * hidden, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 2 * hidden, 4 * hidden, dtype=torch.float64, requires_grad=True),
        torch.randn(2, hidden, dtype=torch.float64, requires_grad=True),
        torch.randn(2, hidden, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda *a: lstm_scan(*a, plan), inputs)


def test_scan_refuses_mismatched_directions():
    plan = ScanPlan("diagonals", 2, 2, offsets=(0, -1), mirrored=(False,))
    with pytest.raises(ValueError, match="directions"):
        lstm_scan(torch.zeros(2, 2, 1, 2, 8), torch.zeros(2, 4, 8), torch.zeros(2, 2), torch.zeros(2, 2), plan)


PLANS = [
    ScanPlan("rows", 4, 5, offsets=(-1, 0, 1)),
    ScanPlan("rows", 3, 6, offsets=(-2, -1, 0, 1, 2)),
    ScanPlan("diagonals", 4, 6, offsets=(0, -1), mirrored=(False, True)),
    ScanPlan("diagonals", 6, 3, offsets=(-1, 0), mirrored=(True,)),
]
PLAN_IDS = ["rows-k3", "rows-k5", "diagonals-bi", "diagonals-mirrored"]


@pytest.mark.parametrize("hidden", [3, 8, 16, 32, 64])
@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
def test_native_kernel_matches_the_pytorch_scan(plan, hidden):
    """Each hidden size the kernel compiles as a constant (8, 16, 32, 64) and one it does not (3)."""
    assert_native_matches_pytorch(plan, hidden, batch=3)


@pytest.mark.parametrize("threads,batch", [(1, 3), (2, 3), (2, 1), (3, 2), (4, 5)])
@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
def test_native_kernel_matches_with_any_threads_and_batch(plan, threads, batch):
    """Both ways the kernel shares work: each thread a slice of the batch (batch >= threads > 1),
    or the sites of every step across threads (fewer images than threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert_native_matches_pytorch(plan, 8, batch)
    finally:
        torch.set_num_threads(before)


def assert_native_matches_pytorch(plan, hidden, batch):
    if scan_kernel.load() is None:
        pytest.skip("the CPU LSTM kernel cannot be built here (no C++ compiler?)")
    torch.manual_seed(hidden)
    d, k = len(plan.mirrored), len(plan.offsets)
    inputs = [
        torch.randn(plan.height, plan.width, batch, d, 4 * hidden, dtype=torch.float64),
        torch.randn(d, k * hidden, 4 * hidden, dtype=torch.float64) / hidden**0.5,
        torch.randn(d, hidden, dtype=torch.float64),
        torch.randn(d, hidden, dtype=torch.float64),
    ]
    grad_out = torch.randn(plan.height, plan.width, batch, d, hidden, dtype=torch.float64)
    results = []
    for function in (scan_kernel.NativeLSTMScan, _LSTMScan):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = function.apply(*leaves, plan)
        results.append([out, *torch.autograd.grad(out, leaves, grad_out)])
    for native, torch_scan in zip(*results):
        torch.testing.assert_close(native, torch_scan, rtol=0, atol=1e-12)


def test_cpu_scans_use_the_native_kernel_when_it_is_built(scan_backend):
    plan = ScanPlan("rows", 2, 2, offsets=(-1, 0, 1))
    gates = torch.zeros(2, 2, 1, 1, 8, requires_grad=True)
    out = lstm_scan(gates, torch.zeros(1, 6, 8), torch.zeros(1, 2), torch.zeros(1, 2), plan)
    expected = "NativeLSTMScan" if scan_backend == "native" else "_LSTMScan"
    assert type(out.grad_fn).__name__ == expected + "Backward"


def test_wide_scans_take_the_pytorch_scan(scan_backend):
    """Above NATIVE_MAX_HIDDEN the kernel is the slower one (measured), so it is not used there."""
    plan = ScanPlan("rows", 2, 2, offsets=(-1, 0, 1))
    for hidden in (scan_kernel.NATIVE_MAX_HIDDEN, scan_kernel.NATIVE_MAX_HIDDEN + 1):
        gates = torch.zeros(2, 2, 1, 1, 4 * hidden, requires_grad=True)
        out = lstm_scan(gates, torch.zeros(1, 3 * hidden, 4 * hidden), torch.zeros(1, hidden),
                        torch.zeros(1, hidden), plan)
        native = scan_backend == "native" and hidden <= scan_kernel.NATIVE_MAX_HIDDEN
        assert type(out.grad_fn).__name__ == ("NativeLSTMScan" if native else "_LSTMScan") + "Backward"


def test_without_a_compiler_the_pytorch_scan_runs_after_one_warning(monkeypatch):
    import torch.utils.cpp_extension

    def no_compiler(**kwargs):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    scan_kernel.load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="kernel unavailable .*command not found"):
            assert scan_kernel.load() is None
        plan = ScanPlan("rows", 2, 2, offsets=(-1, 0, 1))
        gates = torch.zeros(2, 2, 1, 1, 8, requires_grad=True)
        out = lstm_scan(gates, torch.zeros(1, 6, 8), torch.zeros(1, 2), torch.zeros(1, 2), plan)
        assert type(out.grad_fn).__name__ == "_LSTMScanBackward"
    finally:
        scan_kernel.load.cache_clear()


def test_two_environments_sharing_a_cache_keep_a_build_each(monkeypatch):
    """The compile command names PyTorch's and Python's header folders, and ninja rebuilds when the
    command changes: two venvs (two checkouts) sharing ``~/.cache/pixelrnn`` must not take turns
    rebuilding one folder, so each environment has a folder of its own."""
    import sysconfig

    here = scan_kernel.build_directory()
    assert scan_kernel.build_directory() == here  # stable within one environment
    real_paths = sysconfig.get_paths
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**real_paths(*a, **k), "include": "/other/python"})
    assert scan_kernel.build_directory() != here
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__file__", "/other/venv/torch/__init__.py")
    assert scan_kernel.build_directory() != here


def test_a_lock_left_by_a_killed_process_does_not_block_the_next_load(tmp_path):
    """PyTorch's build lock outlives a process killed while loading; the next load must not wait on it."""
    if scan_kernel.load() is None:
        pytest.skip("the CPU kernel cannot be built here")
    build = tmp_path / "kernels" / scan_kernel.build_directory().name
    shutil.copytree(scan_kernel.build_directory(), build, ignore=shutil.ignore_patterns("*lock"))
    (build / "lock").touch()  # what a process killed inside PyTorch's load leaves
    script = "from pixelrnn.layers import scan_kernel; print(scan_kernel.load().__file__)"
    env = {**os.environ, "PIXELRNN_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(build))
    assert not (build / "lock").exists()


def test_a_build_for_another_cpu_target_matches_the_reference():
    """The kernel as a machine without this one's vector units builds it: AVX2 (x86-64-v3) where
    this CPU has AVX-512, else SSE2 only (x86-64). The native-versus-PyTorch tests run on it."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64") or scan_kernel.load() is None:
        pytest.skip("x86-64 builds only, with a C++ compiler")
    env = {**os.environ, "PIXELRNN_NATIVE_MARCH": fallback_march()}
    where = subprocess.run([sys.executable, "-c", "from pixelrnn.layers import scan_kernel as k; "
                            "print(k.build_directory())"], env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() != str(scan_kernel.build_directory())  # its own build, never this CPU's
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                             "-k", "native_kernel_matches or uses_the_native_kernel"],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]


def _kernels_of_the_pytorch_scan(plan: ScanPlan) -> tuple[int, int]:
    d, hidden = len(plan.mirrored), 2
    gates = torch.randn(plan.height, plan.width, 2, d, 4 * hidden, requires_grad=True)
    leaves = [gates, torch.randn(d, len(plan.offsets) * hidden, 4 * hidden, requires_grad=True),
              torch.zeros(d, hidden, requires_grad=True), torch.zeros(d, hidden, requires_grad=True)]
    _LSTMScan.apply(*leaves, plan)  # builds the plan's index tensors once
    counter = load_benchmark("training").OperatorCount
    with counter() as forward:
        out = _LSTMScan.apply(*leaves, plan)
    grad = torch.ones_like(out)
    with counter() as backward:
        torch.autograd.grad(out, leaves, grad)
    return forward.kernels, backward.kernels


@pytest.mark.parametrize("mode,offsets,mirrored", [
    ("rows", (-1, 0, 1), (False,)), ("rows", (-2, -1, 0, 1, 2), (False,)),
    ("diagonals", (0, -1), (False, True)), ("diagonals", (-1, 0), (True,)),
])
def test_the_pytorch_scan_runs_a_few_kernels_per_step(mode, offsets, mirrored):
    """The GPU runs the recurrences on the PyTorch scan, where a step's matrices are too small to fill
    it and each kernel launch costs: a step must stay at K + 6 kernels forward and K + 14 backward for
    K slot offsets, however many directions (it was about 2.5x that before the step-major packing)."""
    small, large = (ScanPlan(mode, size, size, offsets, mirrored) for size in (4, 9))
    (forward_small, backward_small), (forward_large, backward_large) = map(
        _kernels_of_the_pytorch_scan, (small, large))
    steps = large.steps - small.steps
    k = len(offsets)
    assert (forward_large - forward_small) / steps <= k + 6
    assert (backward_large - backward_small) / steps <= k + 14
