"""Process-level settings that make CPU training faster; used by the CLI and the benchmarks."""

from __future__ import annotations

import ctypes
import ctypes.util

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
