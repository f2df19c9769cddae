"""Process-level settings: faster CPU training (glibc malloc) and the device to run on; used by the
CLI, the trainer and the benchmarks."""

from __future__ import annotations

import ctypes
import ctypes.util

from .errors import PixelRNNError

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed blocks instead of returning them to the system.

    A training step allocates and frees the same large activation buffers every
    time; by default glibc maps each block of more than a few MiB afresh, and
    the kernel zeroes every page again on first touch (about a fifth of a
    recurrent model's CPU step, measured with ``benchmarks/training.py``).
    Returns False where the C library is not glibc; nothing changes then.
    """
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1


def pick_device(name: str | None = None):
    """The torch.device to run on: ``None`` or ``"auto"`` picks CUDA where there is one, else the CPU;
    otherwise a torch device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked to exist here."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PixelRNNError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:N or mps)") from None
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= found:
        raise PixelRNNError(f"--device {name}: no such CUDA device here ({found} found)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PixelRNNError(f"--device {name}: MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise PixelRNNError(f"--device {name}: not supported (auto, cpu, cuda, cuda:N or mps)")
    return device
