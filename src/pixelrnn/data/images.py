"""Image files (PNG, JPEG) to uint8 arrays, and a user's own folder of them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import PixelRNNError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def decode_image(blob: bytes, name: str, channels: int, size: int, resize: bool) -> np.ndarray:
    """Decode one image to (channels, size, size) uint8.

    Grey images are converted to RGB when ``channels`` is 3 and RGB to grey (ITU-R
    601-2 luma) when it is 1. With ``resize`` a differently sized image is cropped
    to its central square (so nothing is stretched) and resized (Lanczos); without
    it, it is an error.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(blob))
        image.load()
    except UnidentifiedImageError:
        raise PixelRNNError(f"{name}: not a readable image (not a PNG or JPEG, or its header is corrupt)") from None
    except OSError as error:
        raise PixelRNNError(f"{name}: not a readable image ({error})") from None
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        if not resize:
            raise PixelRNNError(f"{name}: {image.size[0]}x{image.size[1]} pixels, expected {size}x{size}")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != size:
            image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def read_folder(folder: Path, channels: int, size: int) -> np.ndarray:
    """Every PNG / JPEG directly in ``folder``, sorted by name -> (N, channels, size, size),
    each cropped to its central square and resized to ``size`` where it differs."""
    if not folder.is_dir():
        raise PixelRNNError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PixelRNNError(f"{folder}: no PNG or JPEG images")
    return np.stack([decode_image(p.read_bytes(), str(p), channels, size, resize=True) for p in files])
