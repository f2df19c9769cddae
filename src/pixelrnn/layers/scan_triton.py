"""The LSTM scan's step loops as two Triton kernels: one launch a layer forward, one backward.

The PyTorch scan (:class:`pixelrnn.layers.lstm_scan.TorchSteps`) runs K + 6 operators a step
forward and K + 14 backward; on a GPU each is a kernel launch too small to fill it, so the
recurrent layers are bound by their number (docs/speed.md, "On a GPU"). :class:`TritonSteps`
runs the same loops on the same packed buffers inside one kernel each
(:mod:`pixelrnn.layers.scan_triton_kernels`): one program per direction and image walks every
step, so a layer costs two launches whatever its size. Everything else of the scan (packing,
the state-to-state weight gradient in one product, h0 and c0) stays in
:class:`pixelrnn.layers.lstm_scan._LSTMScan`.

It is opt-in until it has been measured on a GPU: ``PIXELRNN_SCAN=triton`` or
:func:`set_enabled`, for float32 CUDA maps where Triton is installed (CUDA builds of PyTorch
bring it). Matrix products follow ``torch.backends.cuda.matmul.allow_tf32`` (off by default:
full float32, as PyTorch's). Without CUDA the kernels run in Triton's interpreter on CPU
tensors, which is how the tests check them against the PyTorch scan on a CPU (in float64 too);
the scan takes them on the CPU only where ``TRITON_INTERPRET=1`` asks for that.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from types import ModuleType

import torch

from ..errors import PixelRNNError

_SETTING = os.environ.get("PIXELRNN_SCAN", "")
_enabled = _SETTING == "triton"
# Units per tile and warps per program. Compiled ahead of time by Triton 3.9 (no GPU needed), both
# kernels fit in sm_90's registers with these (166 and 186 a thread, no spills; 32-unit tiles spill
# hundreds of bytes); tests/test_scan_triton.py keeps it so.
BLOCK, WARPS = 16, 4


def set_enabled(enabled: bool) -> None:
    """Run CUDA scans with the Triton kernels (True) or the PyTorch operators (False, the default)."""
    global _enabled
    _enabled = bool(enabled)


def is_enabled() -> bool:
    return _enabled


def available() -> bool:
    """Whether Triton is installed (it runs on CUDA, or in its interpreter without CUDA)."""
    return importlib.util.find_spec("triton") is not None


def supports(gates_in: torch.Tensor) -> bool:
    """Whether :func:`pixelrnn.layers.lstm_scan.lstm_scan` runs these gates with the Triton kernels:
    turned on, float32, and on CUDA; on the CPU only where asked with ``TRITON_INTERPRET=1`` on a
    machine without CUDA (Triton's interpreter: thousands of times slower, for checking the kernels)."""
    if _SETTING not in ("", "torch", "native", "triton"):  # said at the first scan, as one line
        raise PixelRNNError(f"PIXELRNN_SCAN={_SETTING}: 'triton' runs the CUDA scans as Triton kernels; "
                            "leave it unset (or 'torch') for the PyTorch operators")
    if not (_enabled and gates_in.dtype == torch.float32 and available()):
        return False
    return gates_in.is_cuda or (gates_in.device.type == "cpu" and interpreter_asked() and _interpreted())


def interpreter_asked() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@contextlib.contextmanager
def _interpret(on: bool):
    """Triton's interpreter on (for the CPU) while inside; otherwise nothing changes."""
    if not on:
        yield
        return
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


def _interpreted() -> bool:
    return not torch.cuda.is_available()


@functools.lru_cache(maxsize=None)
def kernels() -> ModuleType:
    """The kernel module: compiled for the GPU where CUDA is, else interpreted (on the CPU)."""
    with _interpret(_interpreted()):
        from . import scan_triton_kernels
    return scan_triton_kernels


@functools.lru_cache(maxsize=64)
def _tables(plan, pack, device: torch.device) -> tuple[tuple[torch.Tensor, ...], int]:
    """((start, first, count) per step and the K offsets, as int32 tensors on ``device``), and the
    tile's number of cells: 16 where no step has more, else 32 (tl.dot wants 16 or more)."""
    spans = [plan.active_slots(t) for t in range(plan.steps)]
    counts = [b - a + 1 for a, b in spans]
    columns = (pack.start, [a for a, _ in spans], counts, list(plan.offsets))
    return tuple(torch.tensor(c, dtype=torch.int32, device=device) for c in columns), 16 if max(counts) <= 16 else 32


def _launch(kernel, buffers, acts, hidden, cell, plan, pack, batch: int) -> None:
    """Runs ``kernel`` on ``buffers`` (the last one the weight), one program per direction and image.

    Tiles of 32 cells (16 where no step has more) by ``BLOCK`` units."""
    weight = buffers[-1]
    d, four_h = acts.shape[0], acts.shape[-1]
    hid = four_h // 4
    tables, tile = _tables(plan, pack, acts.device)
    allow_tf32 = acts.is_cuda and torch.backends.cuda.matmul.allow_tf32
    with _interpret(_interpreted()):  # the interpreter reads the setting at each call too
        kernel[(batch, d)](
            *buffers, *tables,
            plan.steps, batch, pack.row, pack.pad, plan.slots, hid,
            acts.stride(0), hidden.stride(0), cell.stride(0), weight.stride(0),
            TAPS=len(plan.offsets),
            SLOTS=tile,
            BLOCK=BLOCK,
            PRECISION="tf32" if allow_tf32 else "ieee",
            num_warps=WARPS,
        )


class TritonSteps:
    """The step loops of :class:`pixelrnn.layers.lstm_scan.TorchSteps`, each one Triton kernel."""

    @staticmethod
    def forward(acts, hidden, cell, weight, plan, pack, batch: int) -> None:
        buffers = (acts, hidden, cell, weight.contiguous())
        _launch(kernels().lstm_scan_forward, buffers, acts, hidden, cell, plan, pack, batch)

    @staticmethod
    def backward(acts, grad_acts, cell, grad_hidden, grad_cell, weight, plan, pack, batch: int) -> None:
        buffers = (acts, grad_acts, cell, grad_hidden, grad_cell, weight.contiguous())
        _launch(kernels().lstm_scan_backward, buffers, acts, grad_hidden, cell, plan, pack, batch)
