"""The Triton scan (pixelrnn.layers.scan_triton) runs the PyTorch scan's step loops exactly.

On a machine without CUDA the kernels run in Triton's interpreter on CPU tensors, in float64
here, so that any difference in what they compute shows at 1e-12, and Triton compiles them for
GPUs it has not got; on a GPU the compiled kernels are checked against the PyTorch scan by
tests/test_devices.py (run by benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from pixelrnn.layers import scan_kernel, scan_triton
from pixelrnn.layers.lstm_scan import ScanPlan, TorchSteps, _LSTMScan, lstm_scan

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="with CUDA the kernels are compiled, not interpreted: see test_devices.py")

ROWS, DIAGONALS = (-1, 0, 1), (0, -1)
PLANS = [  # (plan, h): every read pattern, maps of one row or column, h over one block and ragged
    (ScanPlan("rows", 3, 4, ROWS), 8),
    (ScanPlan("rows", 1, 5, ROWS), 8),
    (ScanPlan("rows", 4, 1, ROWS), 8),
    (ScanPlan("rows", 2, 3, (0,)), 8),
    (ScanPlan("rows", 3, 3, (-2, -1, 0, 1, 2)), 24),
    (ScanPlan("rows", 2, 37, ROWS), 8),  # a step of more cells than a tile holds
    (ScanPlan("diagonals", 3, 5, DIAGONALS, (False, True)), 8),
    (ScanPlan("diagonals", 5, 3, DIAGONALS, (False, True)), 24),
    (ScanPlan("diagonals", 1, 4, DIAGONALS, (False, True)), 8),
    (ScanPlan("diagonals", 4, 1, DIAGONALS, (False,)), 8),
]


def scan_and_gradients(plan, hidden, batch, steps, dtype=torch.float64):
    torch.manual_seed(hidden + plan.height)
    d, k = len(plan.mirrored), len(plan.offsets)
    leaves = [
        torch.randn(plan.height, plan.width, batch, d, 4 * hidden, dtype=dtype),
        torch.randn(d, k * hidden, 4 * hidden, dtype=dtype) / hidden**0.5,
        torch.randn(d, hidden, dtype=dtype),
        torch.randn(d, hidden, dtype=dtype),
    ]
    grad_out = torch.randn(plan.height, plan.width, batch, d, hidden, dtype=dtype)
    leaves = [t.requires_grad_() for t in leaves]
    out = _LSTMScan.apply(*leaves, plan, steps)
    return [out, *torch.autograd.grad(out, leaves, grad_out)]


@pytest.mark.parametrize("plan,hidden", PLANS, ids=lambda p: f"{p.mode}-{p.height}x{p.width}-{len(p.offsets)}taps"
                         if isinstance(p, ScanPlan) else f"h{p}")
def test_the_triton_steps_compute_what_the_pytorch_steps_compute(plan, hidden):
    names = ["hidden states", "gates' gradient", "weight gradient", "h0 gradient", "c0 gradient"]
    expected = scan_and_gradients(plan, hidden, 2, TorchSteps)
    got = scan_and_gradients(plan, hidden, 2, scan_triton.TritonSteps)
    for name, a, b in zip(names, got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


@pytest.fixture
def triton_scan(monkeypatch):
    """The Triton scan turned on (interpreted) and the compiled CPU kernel off, for one test."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(scan_triton, "_enabled", True)
    monkeypatch.setattr(scan_kernel, "_enabled", False)


def test_the_scan_takes_the_triton_steps_only_when_turned_on_and_in_float32(triton_scan, monkeypatch):
    plan = ScanPlan("rows", 2, 2, ROWS)

    def steps_of(dtype):
        gates = torch.zeros(2, 2, 1, 1, 8, dtype=dtype, requires_grad=True)
        weight = torch.zeros(1, 6, 8, dtype=dtype)
        return lstm_scan(gates, weight, torch.zeros(1, 2, dtype=dtype), torch.zeros(1, 2, dtype=dtype), plan).grad_fn.steps

    assert steps_of(torch.float32) is scan_triton.TritonSteps
    assert steps_of(torch.float64) is TorchSteps  # the GPU kernels are float32 only
    monkeypatch.delenv("TRITON_INTERPRET")
    assert steps_of(torch.float32) is TorchSteps  # on a CPU only where the interpreter is asked for
    monkeypatch.setattr(scan_triton, "_enabled", False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert steps_of(torch.float32) is TorchSteps  # off by default


def test_the_triton_scan_trains_a_row_lstm_as_the_pytorch_scan_does(triton_scan):
    """A float32 model end to end: log-likelihoods and every gradient, Triton against PyTorch."""
    from helpers import tiny_model

    model = tiny_model("row_lstm", 3, 8, hidden=16).float()
    x = torch.randint(0, 8, (2, 3, 4, 5))
    results = []
    for enabled in (True, False):
        scan_triton.set_enabled(enabled)
        model.zero_grad()
        log_prob = model.log_prob(x)
        (-log_prob.mean()).backward()
        results.append((log_prob.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-4)
    for name, grad in results[1][1].items():
        torch.testing.assert_close(results[0][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def compiled_kernels():
    """A second copy of the kernel module, compiled rather than interpreted (this process's own is
    interpreted: there is no CUDA here), to compile for a GPU without one."""
    path = Path(scan_triton.__file__).with_name("scan_triton_kernels.py")
    spec = importlib.util.spec_from_file_location("pixelrnn_scan_triton_kernels_compiled", path)
    module = importlib.util.module_from_spec(spec)
    interpret = os.environ.pop("TRITON_INTERPRET", None)
    try:
        spec.loader.exec_module(module)
    finally:
        if interpret is not None:
            os.environ["TRITON_INTERPRET"] = interpret
    return module


@pytest.mark.parametrize("taps", [3, 2])  # the Row LSTM's and the Diagonal BiLSTM's
def test_the_kernels_compile_for_the_gpu_and_fit_in_its_registers(taps, tmp_path, monkeypatch):
    """Triton compiles both kernels to sm_90 (H100, H200) code here, with no GPU, as the scan
    launches them, and neither spills a register to local memory there; the Row LSTM's also to
    sm_80 (A100)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")  # the default, said aloud
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    kernels = compiled_kernels()
    for name, pointers in (("lstm_scan_forward", 4), ("lstm_scan_backward", 6)):
        kernel = getattr(kernels, name)
        signature = {
            arg: "*fp32" if i < pointers else "*i32" if arg in ("start", "first", "count", "offsets")
            else "constexpr" if arg.isupper() else "i32"
            for i, arg in enumerate(kernel.arg_names)
        }
        constants = {"TAPS": taps, "SLOTS": 32, "BLOCK": scan_triton.BLOCK, "PRECISION": "ieee"}
        for capability in (90, 80) if taps == 3 else (90,):
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constants),
                                      target=GPUTarget("cuda", capability, 32),
                                      options={"num_warps": scan_triton.WARPS})
            assert compiled.asm["cubin"], (name, capability)
            if capability == 90:
                cubin = tmp_path / f"{name}.cubin"
                cubin.write_bytes(compiled.asm["cubin"])
                usage = subprocess.run([cuobjdump, "--dump-resource-usage", cubin], capture_output=True,
                                       text=True, check=True).stdout
                registers, stack = re.search(r"REG:(\d+) STACK:(\d+)", usage).groups()
                assert int(stack) == 0 and int(registers) <= 255, (name, usage)


def test_a_misspelt_scan_setting_is_one_clear_error(monkeypatch):
    from pixelrnn.errors import PixelRNNError

    monkeypatch.setattr(scan_triton, "_SETTING", "trition")
    with pytest.raises(PixelRNNError, match="PIXELRNN_SCAN=trition: 'triton' runs"):
        scan_triton.supports(torch.zeros(1))
