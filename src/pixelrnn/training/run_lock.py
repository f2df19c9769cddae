"""An exclusive lock on a run folder, so that two training processes never write into one."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PixelRNNError

try:
    import fcntl
except ImportError:  # Windows: no flock; run folders are not guarded there
    fcntl = None

_HELD: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [descriptor, holders in this process]


class RunLock:
    """An exclusive ``flock`` on the folder itself (no lock file is written), held from
    construction to ``release()``. It excludes other processes only: holders in one process
    share it (a notebook may build a new Trainer while an old one lingers). The operating
    system drops it when the process ends, so a killed run never leaves a stale lock."""

    def __init__(self, folder: str | Path) -> None:
        self.folder, self._key = Path(folder), None
        self.acquire()

    def acquire(self) -> None:
        """Take the lock (a no-op while this object holds it); PixelRNNError if another process has it."""
        if fcntl is None or self._key is not None:
            return
        info = os.stat(self.folder)
        key = (info.st_dev, info.st_ino)
        if key not in _HELD:
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PixelRNNError(f"{self.folder} is in use by another training process: "
                                    "wait for it or stop it, or train into another --out") from None
            _HELD[key] = [fd, 0]
        _HELD[key][1] += 1
        self._key = key

    def release(self) -> None:
        if self._key is None:
            return
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            os.close(entry[0])
            del _HELD[self._key]
        self._key = None

    def __del__(self) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.folder)!r}, held={self._key is not None})"


class NoLock:
    """The lock of a process that does not write into the run folder (ranks > 0 of a
    distributed run, whose process 0 holds the RunLock)."""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass
