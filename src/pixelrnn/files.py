"""Output files: written atomically, and their folders checked before any long work.

A file is written to a temporary file in the same folder, flushed to disk and renamed over the
old one: a process killed at any moment leaves either the old or the new file, never a partial
one. Errors name the file the user asked for, not the temporary one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import PixelRNNError


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise PixelRNNError(f"{path}: cannot write it ({error.strerror or error})") from None
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def writable_folder(folder: Path) -> Path:
    """Create ``folder`` if needed and check that files can be written in it, so a bad output
    path fails at once, not after minutes of work. PixelRNNError if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise PixelRNNError(f"{folder}: cannot write there ({error.strerror or error})") from None
    return folder
