"""Flushing subnormal floats to zero on the CPU, in every thread PyTorch computes in.

A trained model's backward pass makes float32 subnormals (below 1.18e-38): the softmax
probabilities of the levels a model has ruled out, and the gradients they carry back.
x86 CPUs compute with subnormals slowly: on trained CIFAR-10 weights the forward and backward
of a training step took 1.7 to 2.5 times as long as with them flushed to zero on a 2-core Intel
Xeon with AVX-512 (docs/speed.md, "Subnormal numbers on trained weights"). Flushing changes numbers below
1.2e-38 only: likelihoods stay the same bit for bit, gradients move by less than 1e-30.

``torch.set_flush_denormal`` sets the calling thread's flag only (the CPU's MXCSR register
on x86), and PyTorch's OpenMP worker threads keep their own: with two threads half of every
parallel operation would still meet subnormals. :func:`flush_denormals` sets the flag in the
calling thread and in each thread of its OpenMP team, through the OpenMP runtime's
``GOMP_parallel`` entry point (libgomp; LLVM's and Intel's runtimes provide it too); threads
the runtime starts later copy the flag from the thread that starts them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from pathlib import Path

import torch

from .errors import PixelRNNError

_SUBNORMAL = 1e-39  # a float32 subnormal: what a flushing thread turns into 0
_TEAM_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def is_flushed() -> bool:
    """Whether the calling thread flushes float32 subnormals to zero."""
    return (torch.tensor(_SUBNORMAL) * 1.0).item() == 0.0


def wanted() -> bool:
    """``PIXELRNN_FLUSH_DENORMALS`` (``1`` by default; ``0`` keeps IEEE subnormals)."""
    value = os.environ.get("PIXELRNN_FLUSH_DENORMALS", "1").strip()
    if value not in ("0", "1"):
        raise PixelRNNError(f"PIXELRNN_FLUSH_DENORMALS={value}: needs 1 (flush, the default) or 0")
    return value == "1"


@functools.cache
def _openmp_parallel():
    """``GOMP_parallel(fn, data, threads, flags)`` of the OpenMP runtime PyTorch computes with,
    or None (another parallel backend, or no such entry point)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    torch_libs = Path(torch.__file__).parent / "lib"
    bundled = sorted(torch_libs.glob("lib*omp*.so*")) + sorted(torch_libs.glob("lib*omp*.dylib"))
    for library in [*map(str, bundled), None]:  # None: the process's global symbols
        try:
            parallel = ctypes.CDLL(library).GOMP_parallel
        except (OSError, AttributeError, TypeError):  # TypeError: no global symbols (Windows)
            continue
        parallel.argtypes = [_TEAM_FUNCTION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        return parallel
    return None


def flush_denormals(on: bool = True) -> bool:
    """Flush float32 subnormals to zero (``on``) or keep them, in the calling thread and the
    threads of its OpenMP team. True where every one of them was set; False where the CPU
    cannot flush or only the calling thread could be set (no OpenMP entry point found)."""
    supported = torch.set_flush_denormal(on)
    parallel = _openmp_parallel()
    if not supported or parallel is None:
        return False
    # Each member of a team as large as any PyTorch forms sets its own flag (the runtime keeps
    # threads a larger team started, so the team covers every CPU this process may use, not
    # just today's thread count); the calling thread runs it too. ctypes releases the GIL for
    # the call and each thread takes it back.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    team = max(torch.get_num_threads(), cpus)
    parallel(_TEAM_FUNCTION(lambda _: torch.set_flush_denormal(on)), None, team, 0)
    return True


@contextlib.contextmanager
def flushed(on: bool = True):
    """Within the block, subnormals are flushed (``on``) or kept; afterwards the calling
    thread's setting before the block is restored, in its OpenMP team too."""
    before = is_flushed()
    flush_denormals(on)
    try:
        yield
    finally:
        flush_denormals(before)
