"""Process-level settings: faster CPU training (glibc malloc), CPU threads that follow the
machine's load, the device to run on, full float32 precision on GPUs, and the CPU's name for
figures; used by the CLI, the trainer, evaluation, sampling and the benchmarks."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time
from pathlib import Path

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


def cpu_name() -> str:
    """The CPU's model name, its widest vector instructions (AVX-512, AVX2 or neither) and its
    CPU count, to print beside a speed figure (the compiled kernel's speed depends on them)."""
    from .layers.scan_kernel import cpu_flags  # its build reads the same flags

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = cpu_flags().split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name}, {vector}, {os.cpu_count()} CPUs"


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


_DEFAULT_THREADS: int | None = None


def _busy_cpu_seconds() -> float | None:
    """CPU seconds every process has spent busy since boot (``/proc/stat``), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class LoadAwareThreads:
    """Sets torch's CPU threads to the cores that other processes leave free, and keeps them so.

    Every operation of a step is a parallel region that ends when its slowest thread does; a
    thread that shares its core with another busy process runs at half speed or less, and the
    whole step with it (docs/speed.md: 3x slower than idle beside one busy core, with 2 threads
    on 2 cores). So: count the cores that others keep busy (all the machine's busy time less this
    process's own, over a window) and use the rest, at least one and at most ``max_threads``.

    ``PIXELRNN_THREADS=N`` (or ``OMP_NUM_THREADS``) fixes the count instead, as torchrun does for
    its processes, e.g. for a run that
    must be bit-identical to another one (the reduction order of some products and of the scan
    kernel's weight gradients depends on the thread count). ``poll()`` re-measures at most every
    ``interval`` seconds, over the time since the last measurement.
    """

    def __init__(self, interval: float = 30.0, max_threads: int | None = None) -> None:
        import torch

        global _DEFAULT_THREADS
        if _DEFAULT_THREADS is None:  # torch's own default, before any instance changed it
            _DEFAULT_THREADS = torch.get_num_threads()
        self.interval = interval
        self.fixed = self._fixed_count()
        self.max_threads = max_threads or self.fixed or _DEFAULT_THREADS
        self.cpus = os.cpu_count() or 1
        self._last = None

    @staticmethod
    def _fixed_count() -> int | None:
        import torch

        if "LOCAL_RANK" in os.environ:  # a torchrun process: torchrun sets its threads (OMP_NUM_THREADS)
            return torch.get_num_threads()
        value = os.environ.get("PIXELRNN_THREADS", "auto").strip().lower()
        if value not in ("", "auto"):
            try:
                count = int(value)
            except ValueError:
                raise PixelRNNError(f"PIXELRNN_THREADS={value}: needs a whole number >= 1 or 'auto'") from None
            if count < 1:
                raise PixelRNNError(f"PIXELRNN_THREADS={value}: needs a whole number >= 1 or 'auto'")
            return count
        omp = os.environ.get("OMP_NUM_THREADS", "")
        return int(omp) if omp.isdigit() and int(omp) >= 1 else None

    @property
    def adaptive(self) -> bool:
        return self.fixed is None and self.max_threads > 1 and _busy_cpu_seconds() is not None

    def start(self, window: float = 0.1) -> int:
        """Measure over ``window`` seconds and set the threads; returns the count."""
        import torch

        if self.fixed is not None and "LOCAL_RANK" not in os.environ:  # torchrun's processes: left alone
            torch.set_num_threads(self.fixed)
        if not self.adaptive:
            return torch.get_num_threads()
        self._last = self._sample()
        time.sleep(window)
        return self._update()

    def poll(self) -> int:
        """Re-measure and set the threads if ``interval`` seconds have passed (cheap otherwise)."""
        import torch

        if self._last is None or time.monotonic() - self._last[0] < self.interval:
            return torch.get_num_threads()
        return self._update()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        return time.monotonic(), _busy_cpu_seconds(), time.process_time()

    def _update(self) -> int:
        import torch

        now = self._sample()
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-6)  # cores in use elsewhere
        threads = max(1, min(self.max_threads, int(self.cpus - others + 0.5)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads


class _FullFloat32:
    """float32 products at full precision on CUDA while any block under it runs: by default PyTorch
    lets cuDNN convolutions round float32 inputs to TF32 (10-bit mantissas) on Ampere and later
    GPUs, which would make a GPU's NLL another figure than the CPU's (used by evaluation and
    sampling; training keeps PyTorch's default). The settings are the process's, so blocks may
    nest and overlap in threads (the page samples in threads): the first to enter saves them, the
    last to leave restores them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: list = []

    @staticmethod
    def flags():
        """([(owner, attribute)], the value at full precision) of the API this torch has."""
        import torch

        backends = torch.backends
        if hasattr(backends.cudnn, "conv") and hasattr(backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
            return [(backends.cudnn.conv, "fp32_precision"), (backends.cuda.matmul, "fp32_precision")], "ieee"
        # the legacy flags; never mix the two APIs (PyTorch refuses to read flags set by both)
        return [(backends.cudnn, "allow_tf32"), (backends.cuda.matmul, "allow_tf32")], False

    @contextlib.contextmanager
    def __call__(self):
        flags, exact = self.flags()
        with self.lock:
            if self.depth == 0:
                self.saved = [getattr(owner, name) for owner, name in flags]
                for owner, name in flags:
                    setattr(owner, name, exact)
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if self.depth == 0:
                    for (owner, name), value in zip(flags, self.saved):
                        setattr(owner, name, value)


full_float32 = _FullFloat32()
