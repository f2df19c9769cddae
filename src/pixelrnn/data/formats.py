"""Readers for the official file formats of the datasets; each returns uint8 numpy arrays.

Every reader checks what it reads and raises PixelRNNError naming the file
and the line or record that is wrong: a truncated or malformed file is never
read as fewer or different images.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import PixelRNNError


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise PixelRNNError(f"{path}: cannot read the file ({error})") from None


def read_amat(path: Path, pixels: int = 784) -> np.ndarray:
    """Binarized MNIST text (Salakhutdinov & Murray): one image a line, `pixels` values 0/1.

    Returns (N, pixels) uint8.
    """
    data = read_bytes(path)
    line_length = 2 * pixels  # "v v ... v\n"
    if data and len(data) % line_length == 0:
        raw = np.frombuffer(data, np.uint8).reshape(-1, line_length)
        values = raw[:, 0::2]
        if (raw[:, 1:-1:2] == ord(" ")).all() and (raw[:, -1] == ord("\n")).all() and (
            (values == ord("0")) | (values == ord("1"))
        ).all():
            return values - ord("0")
    return _read_amat_slowly(path, data, pixels)


def _read_amat_slowly(path: Path, data: bytes, pixels: int) -> np.ndarray:
    """Any whitespace layout; names the first bad line."""
    rows = []
    for number, line in enumerate(data.decode("ascii", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != pixels:
            raise PixelRNNError(f"{path}, line {number}: {len(fields)} values, expected {pixels}")
        bad = [v for v in fields if v not in ("0", "1")]
        if bad:
            raise PixelRNNError(f"{path}, line {number}: value {bad[0]!r} is not 0 or 1")
        rows.append(np.array(fields, dtype=np.uint8))
    if not rows:
        raise PixelRNNError(f"{path}: no images in the file")
    return np.stack(rows)


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST and Fashion-MNIST format), as uint8."""
    data = read_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise PixelRNNError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    dims = data[3]
    if dims != expected_dims:
        raise PixelRNNError(f"{path}: {dims} dimensions, expected {expected_dims}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise PixelRNNError(f"{path}: truncated header")
    shape = struct.unpack(f">{dims}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise PixelRNNError(
            f"{path}: {len(data) - header} bytes of data for shape {shape}, expected {expected}"
            " (truncated or corrupt file)"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: dicts, lists, bytes, numpy arrays."""

    allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 python batch (a pickled dict) -> images (N, 3, 32, 32) uint8, labels (N,) int64.

    b'data' is (N, 3072): the R plane, then G, then B, each 32x32 row-major; b'labels' N
    class indices in 0..9.
    Only plain data is unpickled: a file that asks for any other object is refused.
    """
    try:
        batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise PixelRNNError(f"{name}: not a CIFAR-10 python batch ({error})") from None
    if not isinstance(batch, dict) or b"data" not in batch:
        raise PixelRNNError(f"{name}: not a CIFAR-10 python batch (no b'data' entry)")
    images = np.asarray(batch[b"data"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise PixelRNNError(
            f"{name}: b'data' is {images.dtype} {images.shape}, expected uint8 (N, 3072)"
        )
    labels = np.asarray(batch.get(b"labels", []), dtype=np.int64)
    if labels.shape != (len(images),) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
        raise PixelRNNError(f"{name}: b'labels' is not {len(images)} class indices in 0..9")
    return images.reshape(-1, 3, 32, 32), labels


def read_png_tar(path: Path, size: int) -> np.ndarray:
    """A tar archive of size x size RGB PNG images (downsampled ImageNet) -> (N, 3, size, size).

    Members are read in sorted name order, so the order does not depend on the archive.
    """
    from .images import decode_image

    try:
        with tarfile.open(path) as archive:
            members = sorted(
                (m for m in archive.getmembers() if m.isfile() and m.name.lower().endswith(".png")),
                key=lambda m: m.name,
            )
            if not members:
                raise PixelRNNError(f"{path}: no PNG images in the archive")
            images = []
            for member in members:
                blob = archive.extractfile(member).read()
                images.append(decode_image(blob, f"{path}:{member.name}", 3, size, resize=False))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise PixelRNNError(f"{path}: cannot read the tar archive ({error})") from None
    return np.stack(images)
