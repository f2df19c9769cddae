"""Finding dataset files: a data folder given by the user, the cache, or a download.

Downloads go to ``$PIXELRNN_DATA/<dataset>`` (default ``~/.cache/pixelrnn/<dataset>``),
through a temporary file that is checked (MD5, where the dataset publishes
one) before it is renamed into place, so an interrupted download never
leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import PixelRNNError


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset: its name in the data folder, where to download it, its MD5."""

    name: str
    url: str | None
    md5: str | None = None
    alternatives: tuple[str, ...] = ()  # other accepted names, e.g. the .gz of a text file


def cache_dir(dataset: str) -> Path:
    root = os.environ.get("PIXELRNN_DATA") or Path.home() / ".cache" / "pixelrnn"
    return Path(root) / dataset


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _present(folder: Path, file: RemoteFile) -> Path | None:
    for name in (file.name, *file.alternatives):
        if (folder / name).is_file():
            return folder / name
    return None


def locate(dataset: str, files: list[RemoteFile], data_dir: str | Path | None,
           search: tuple[Path, ...] = ()) -> list[Path]:
    """Paths of ``files``: all from ``data_dir`` when given (never downloading), else from the
    first of ``search`` and the cache that has them, else downloaded into the cache."""
    if data_dir is not None:
        folder = Path(data_dir)
        found = [_present(folder, f) for f in files]
        missing = [f.name for f, p in zip(files, found) if p is None]
        if missing:
            raise PixelRNNError(f"{dataset}: {', '.join(missing)} not found in {folder}")
        return found
    cache = cache_dir(dataset)
    for folder in (*search, cache):
        found = [_present(folder, f) for f in files]
        if all(found):
            return found
    return [_present(cache, f) or download(dataset, f, cache) for f in files]


def download(dataset: str, file: RemoteFile, folder: Path) -> Path:
    """Download one file into ``folder`` with a progress bar; check its MD5."""
    from tqdm import tqdm

    if file.url is None:
        raise PixelRNNError(
            f"{dataset}: {file.name} cannot be downloaded automatically; put it in {folder} "
            "or pass --data-dir"
        )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file.name
    partial = folder / (file.name + ".part")
    try:
        with urllib.request.urlopen(file.url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(partial, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=file.name, leave=False
            ) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        partial.unlink(missing_ok=True)
        raise PixelRNNError(
            f"{dataset}: could not download {file.name} from {file.url} ({error}); "
            f"offline, put the file in {folder} or pass --data-dir DIR"
        ) from None
    if file.md5 is not None and (actual := md5sum(partial)) != file.md5:
        partial.unlink(missing_ok=True)
        raise PixelRNNError(
            f"{dataset}: {file.name} from {file.url} has MD5 {actual}, expected {file.md5}"
        )
    os.replace(partial, target)
    return target
