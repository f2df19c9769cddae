"""The compiled CPU LSTM scan (csrc/lstm_scan.cpp): build once per machine, then call.

The kernel runs the same recurrence as :class:`pixelrnn.lstm_scan._LSTMScan`
(paper sections 3.1, 3.2) but does a cell's state-to-state product, gates and
update in one pass, with the cells of a step in parallel; the backward gathers
gradients instead of scattering them. It is built with PyTorch's C++ extension
tools the first time a CPU scan runs (about half a minute, once per machine and
source version) into ``$PIXELRNN_CACHE`` (default ``~/.cache/pixelrnn``)
``/kernels``. Where no C++ compiler is at hand it warns once and the PyTorch
scan is used instead; ``PIXELRNN_NATIVE=0`` or :func:`set_enabled` turns it off.

x86-64 builds target the CPU they run on (``-march=native``: AVX-512 where it is there, else
AVX2, ...); ``PIXELRNN_NATIVE_MARCH`` names another target (``x86-64-v3`` for AVX2 and FMA,
``x86-64-v2``, ``x86-64`` for SSE2 only), to measure or test a build another machine would make.
The build folder's name covers the source, PyTorch, the CPU's flags, the compiler flags and the
environment's header folders, so one home folder shared by different CPUs never loads a build made
for another, and two virtual environments sharing it never rebuild each other's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import sys
import sysconfig
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

_SOURCE = Path(__file__).with_name("csrc") / "lstm_scan.cpp"
_MAX_TAPS = 16  # kMaxTaps in the kernel
# Above this h the PyTorch scan is faster: the kernel does one matrix-vector product per cell and
# image, streaming the (K h, 4h) weight each time, where PyTorch batches them into matrix products.
# Measured 2026-11-25 (benchmarks/training.py, 7 layers, batch 16, kernel vs PyTorch, images/s,
# Row LSTM / Diagonal BiLSTM, runs interleaved on an otherwise idle machine):
#   h = 32:  1 thread 44.7 vs 46.9 / 35.5 vs 30.3;  2 threads 75.0 vs 64.7 / 63.2 vs 41.0
#   h = 64:  1 thread 12.3 vs 18.5 / 9.7 vs 13.5;   2 threads 25.0 vs 30.3 / 19.3 vs 22.8
#   h = 128: 1 thread 1.7 vs 6.2 / 1.3 vs 4.8;      2 threads 3.2 vs 11.1 / 2.6 vs 8.7
NATIVE_MAX_HIDDEN = 32
_enabled = os.environ.get("PIXELRNN_NATIVE", "1") != "0"


def set_enabled(enabled: bool) -> None:
    """Use the compiled kernel for CPU scans (the default) or the PyTorch scan."""
    global _enabled
    _enabled = bool(enabled)


def is_enabled() -> bool:
    return _enabled


def cpu_flags() -> str:
    """The CPU's feature flags line from /proc/cpuinfo ("flags : fpu ... avx512f ..."); empty
    where there is none (not Linux)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")


def _machine_tag() -> str:
    """Source, PyTorch, CPU and the environment's header folders, so a build for one machine is
    never loaded on another, and two environments sharing one cache (two checkouts, each with
    its own venv) keep a build each instead of rebuilding each other's: the compile command
    names PyTorch's and Python's headers, and ninja rebuilds when that command changes."""
    flags = cpu_flags()
    headers = [str(Path(torch.__file__).parent), sysconfig.get_paths()["include"]]
    key = "|".join([_SOURCE.read_text(), torch.__version__, platform.machine(), flags, sys.version, *headers,
                    *_cflags()])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _march() -> str:
    """The -march target of x86-64 builds: ``PIXELRNN_NATIVE_MARCH`` or ``native``."""
    return os.environ.get("PIXELRNN_NATIVE_MARCH", "").strip() or "native"


def _cflags() -> list[str]:
    """The compiler flags. ``-fno-trapping-math`` lets GCC if-convert the clamp in the kernel's
    exp, so the gate and cell loops vectorise without AVX-512's masked instructions too (GCC 12,
    -march=x86-64-v3: 11 of the kernel's loops vectorised instead of 7); it changes no value (no floating-
    point exceptions are read, and rounding is untouched)."""
    flags = ["-O3", "-fopenmp", "-fno-trapping-math"]
    return flags + ([f"-march={_march()}"] if platform.machine() in ("x86_64", "AMD64") else [])


def _put_ninja_on_path() -> None:
    """PyTorch runs `ninja` from PATH; the pip package's binary may not be on it (an unactivated venv)."""
    try:
        import ninja
    except ImportError:
        return
    path = os.environ.get("PATH", "")
    if ninja.BIN_DIR not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(filter(None, [ninja.BIN_DIR, path]))


def build_directory() -> Path:
    """Where this source, PyTorch and CPU's build lives: ``$PIXELRNN_CACHE/kernels/lstm_scan-<tag>``."""
    root = Path(os.environ.get("PIXELRNN_CACHE") or Path.home() / ".cache" / "pixelrnn")
    return root / "kernels" / f"lstm_scan-{_machine_tag()}"


@contextlib.contextmanager
def _build_lock(build: Path):
    """Hold the build folder against other processes, and clear a lock left by a killed one.

    PyTorch guards a build with a ``lock`` file that only its creator removes: a
    process killed while loading (a training run stopped at the wrong moment)
    leaves it behind, and every later load would wait for it forever. An
    operating-system lock (``flock``) is released when its holder dies, so while
    we hold one no live process of ours is inside PyTorch's, and its file can go
    (pytorch/pytorch#189245; PyTorch 2.13 still waits forever).
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): PyTorch's own lock only
        yield
        return
    with open(build / "pixelrnn.lock", "w") as handle:  # closing it releases the flock
        fcntl.flock(handle, fcntl.LOCK_EX)
        (build / "lock").unlink(missing_ok=True)
        yield


@functools.cache
def load() -> ModuleType | None:
    """The compiled module, building it on first use; None where it cannot be built."""
    from torch.utils.cpp_extension import load as load_extension

    build = build_directory()
    try:
        _put_ninja_on_path()
        build.mkdir(parents=True, exist_ok=True)
        if not any(build.glob("*.so")):
            print("pixelrnn: building the CPU LSTM kernel (once per machine, about 30 s)", file=sys.stderr)
        with _build_lock(build):
            return load_extension(
                name="pixelrnn_lstm_scan",
                sources=[str(_SOURCE)],
                extra_cflags=_cflags(),
                extra_ldflags=["-fopenmp"],
                build_directory=str(build),
                verbose=False,
            )
    except Exception as error:  # no compiler, no ninja, unsupported platform, ...
        message = str(error).strip().splitlines()[-1:] or [type(error).__name__]
        warnings.warn(f"pixelrnn: CPU LSTM kernel unavailable ({message[0]}); using the PyTorch scan")
        return None


def supports(gates_in: torch.Tensor, plan) -> bool:
    """Whether the kernel runs this scan: CPU, float32/64, the paper's read patterns, and h up to
    ``NATIVE_MAX_HIDDEN`` (where it is the faster one)."""
    if not _enabled or gates_in.device.type != "cpu" or gates_in.dtype not in (torch.float32, torch.float64):
        return False
    if gates_in.shape[-1] // 4 > NATIVE_MAX_HIDDEN:
        return False
    if plan.mode == "diagonals" and not set(plan.offsets) <= {0, -1}:
        return False
    if len(plan.offsets) > _MAX_TAPS:
        return False
    return load() is not None


class NativeLSTMScan(torch.autograd.Function):
    """The scan of :func:`pixelrnn.lstm_scan.lstm_scan`, forward and backward in C++."""

    @staticmethod
    def forward(ctx, gates_in, weight, h0, c0, plan):
        args = (plan.mode == "rows", list(plan.offsets), list(plan.mirrored))
        out, act, cells = load().forward(gates_in, weight, h0, c0, *args)
        ctx.args = args
        ctx.save_for_backward(out, act, cells, weight, h0, c0)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        out, act, cells, weight, h0, c0 = ctx.saved_tensors
        grads = load().backward(grad_out, act, cells, out, weight, h0, c0, *ctx.args)
        return (*grads, None)
