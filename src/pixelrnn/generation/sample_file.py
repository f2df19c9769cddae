"""Sample sets of any size, in batches, streamed to a .npy file (e.g. 50,000 images for a
sample-quality metric): memory holds one batch, and the disk space is checked first."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import PixelRNNError
from ..files import writable_folder
from .sampling import make_generator


def sample_batches(model, n: int, height: int, width: int, batch_size: int, *, seed: int | None = None,
                   method: str = "cached", temperature: float = 1.0, labels=None) -> Iterator[torch.Tensor]:
    """``n`` images in batches of ``batch_size`` (the last may be smaller), each (b, C, H, W)
    long, drawn one after another from one random stream: the images depend on the seed and
    the batch size (a single batch is ``model.sample(n, ..., seed=seed)``). ``labels``: a
    class-conditional model's class for every image (an int) or each image's, (n,)."""
    if n < 1 or batch_size < 1:
        raise PixelRNNError(f"need n >= 1 and a batch size >= 1, got {n} and {batch_size}")
    generator = make_generator(seed)
    if torch.is_tensor(labels) and labels.shape != (n,):
        raise PixelRNNError(f"expected {n} labels, got shape {tuple(labels.shape)}")
    for start in range(0, n, batch_size):
        part = labels[start : start + batch_size] if torch.is_tensor(labels) else labels
        yield model.sample(min(batch_size, n - start), height, width, seed=generator, method=method,
                           temperature=temperature, labels=part)


def sample_to_file(model, n: int, height: int, width: int, path: str | Path, batch_size: int = 256, *,
                   seed: int | None = None, method: str = "cached", temperature: float = 1.0,
                   progress: bool = False, labels=None) -> Path:
    """Draw ``n`` images into ``path`` (.npy, uint8, (n, C, H, W)), batch by batch (``labels`` as
    for :func:`sample_batches`).

    The file appears only when complete (written under a temporary name, then renamed); a run
    that would not fit on the disk is refused before any work, with one PixelRNNError line.
    """
    from tqdm import tqdm

    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise PixelRNNError(f"{path}: needs a file name ending in .npy")
    folder = writable_folder(path.parent)
    shape = (n, model.channels, height, width)
    needed, free = int(np.prod(shape, dtype=np.float64)) + 128, shutil.disk_usage(folder).free
    if needed > free:
        raise PixelRNNError(f"{path}: {n:,} images of {model.channels}x{height}x{width} values need "
                            f"{needed / 1e9:,.1f} GB, and {free / 1e9:,.1f} GB are free there")
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        with tqdm(total=n, unit="image", desc="sampling", disable=not progress) as bar:
            start = 0
            for images in sample_batches(model, n, height, width, batch_size, seed=seed, method=method,
                                         temperature=temperature, labels=labels):
                array[start : start + len(images)] = images.cpu().numpy().astype(np.uint8)
                start += len(images)
                bar.update(len(images))
        array.flush()
        del array
        os.replace(temporary, path)
    except OSError as error:
        raise PixelRNNError(f"{path}: cannot write it ({error.strerror or error})") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path
