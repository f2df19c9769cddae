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


def read_folder(folder: Path, channels: int, size: int,
                classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Every PNG / JPEG directly in ``folder`` (or, if it has none, in its subfolders), sorted by
    name -> (N, channels, size, size), each cropped to its central square and resized to ``size``
    where it differs; labels None.

    ``classes`` (names of subfolders): the images of ``folder/NAME/`` for each name instead,
    labelled with the name's index -> images and labels (N,) int64; a subfolder of images whose
    name is not among them is an error (it would be left out silently).
    """
    if not folder.is_dir():
        raise PixelRNNError(f"{folder}: no such folder")
    if classes is None:
        subfolders = image_subfolders(folder)
        if _image_files(folder) or not subfolders:
            return _read_images(folder, channels, size), None
        return read_folder(folder, channels, size, subfolders)[0], None  # class folders, labels unused
    unknown = sorted(set(image_subfolders(folder)) - set(classes))
    if unknown:
        raise PixelRNNError(f"{folder}: class folder(s) {', '.join(unknown)} are not among the training "
                            f"split's classes ({', '.join(classes)})")
    images, labels = [], []
    for index, name in enumerate(classes):
        if (folder / name).is_dir():
            images.append(_read_images(folder / name, channels, size))
            labels.append(np.full(len(images[-1]), index, dtype=np.int64))
    if not images:
        raise PixelRNNError(f"{folder}: no class folders ({', '.join(classes)})")
    return np.concatenate(images), np.concatenate(labels)


def image_subfolders(folder: Path) -> list[str]:
    """The sorted names of the subfolders of ``folder`` that hold images: its classes."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _image_files(p))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_images(folder: Path, channels: int, size: int) -> np.ndarray:
    files = _image_files(folder)
    if not files:
        raise PixelRNNError(f"{folder}: no PNG or JPEG images")
    return np.stack([decode_image(p.read_bytes(), str(p), channels, size, resize=True) for p in files])
