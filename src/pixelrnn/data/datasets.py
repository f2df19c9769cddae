"""The dataset registry: each dataset knows its splits, channels, levels, files and sources.

``load_dataset(name, split)`` returns a split's images as a uint8 tensor (N, C, H, W)
with values in [0, levels); ``load_labeled(name, split)`` the images with their class labels,
for the datasets that have them (MNIST, Fashion-MNIST, CIFAR-10, a folder of class folders).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import PixelRNNError
from .download import RemoteFile, locate
from .formats import read_amat, read_cifar_batch, read_idx, read_png_tar
from .images import image_subfolders, read_folder

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    levels: int
    size: int | None  # None: set by the user (the folder dataset)
    splits: tuple[str, ...]
    source: str
    licence: str
    note: str = ""
    loader: Callable = field(repr=False, default=None)  # (split, data_dir, labelled) -> (images, labels or None)
    classes: tuple[str, ...] | None = None  # class names, label k = classes[k]; folder: its subfolders

    @property
    def dims(self) -> int | None:
        return None if self.size is None else self.channels * self.size * self.size


# --- binarized MNIST ------------------------------------------------------------------

_BMNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
# MD5 of the uncompressed files as published (train and valid checked against our copies;
# the test file's is not known to us, so it is checked by its format and size only).
_BMNIST_MD5 = {
    "train": "db28b1a6ae0fe70cbd3da91acf46e477",
    "valid": "bf37822a04e94123630de6a7dfd9c9ef",
    "test": None,
}
_BMNIST_COUNT = {"train": 50_000, "valid": 10_000, "test": 10_000}


def _binarized_mnist(split: str, data_dir, labelled: bool = False) -> tuple[np.ndarray, None]:
    name = f"binarized_mnist_{split}.amat"
    file = RemoteFile(name, _BMNIST_URL + name, _BMNIST_MD5[split], alternatives=(name + ".gz",))
    (path,) = locate("binarized-mnist", [file], data_dir)
    images = read_amat(path)
    if len(images) != _BMNIST_COUNT[split]:
        raise PixelRNNError(
            f"{path}: {len(images)} images, expected {_BMNIST_COUNT[split]} (truncated file?)"
        )
    return images.reshape(-1, 1, 28, 28), None


# --- MNIST and Fashion-MNIST (IDX) -----------------------------------------------------

_IDX_FILES = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {"train": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
         "test": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
         "train-labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
         "test-labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")},
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {"train": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
         "test": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
         "train-labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
         "test-labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")},
    ),
}
_IDX_SEARCH = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
MNIST_VALID = 10_000  # the last 10,000 training images form the validation split


def _idx_dataset(name: str) -> Callable:
    def read(key: str, dims: int, data_dir) -> tuple[Path, np.ndarray]:
        base, files = _IDX_FILES[name]
        file_name, md5 = files[key]
        file = RemoteFile(file_name, base + file_name, md5, alternatives=(file_name[:-3],))
        (path,) = locate(name, [file], data_dir, _IDX_SEARCH.get(name, ()))
        return path, read_idx(path, expected_dims=dims)

    def load(split: str, data_dir, labelled: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        part = "test" if split == "test" else "train"
        path, images = read(part, 3, data_dir)
        if images.shape[1:] != (28, 28):
            raise PixelRNNError(f"{path}: images of {images.shape[1:]}, expected (28, 28)")
        keep = slice(-MNIST_VALID) if split == "train" else slice(-MNIST_VALID, None) if split == "valid" else slice(None)
        if not labelled:  # the label file is read only when asked for
            return images[keep, None], None
        path, labels = read(part + "-labels", 1, data_dir)
        if len(labels) != len(images) or labels.max(initial=0) > 9:
            raise PixelRNNError(f"{path}: {len(labels)} labels for {len(images)} images, or a label above 9")
        return images[keep, None], labels[keep].astype(np.int64)

    return load


# --- CIFAR-10 (python version) ---------------------------------------------------------

_CIFAR_ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
)
CIFAR_VALID = 5_000  # the last 5,000 images of data_batch_5 form the validation split


def _cifar_batches(split: str) -> list[str]:
    if split == "test":
        return ["test_batch"]
    return [f"data_batch_{i}" for i in range(1, 6)]


def _cifar10(split: str, data_dir, labelled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    names = _cifar_batches(split)
    folder = None
    if data_dir is not None:  # DIR/cifar-10-batches-py, or that folder itself
        folder = Path(data_dir)
        folder = folder if folder.name == "cifar-10-batches-py" else folder / "cifar-10-batches-py"
    if folder is not None and folder.is_dir():
        batches = []
        for n in names:
            if not (folder / n).is_file():
                raise PixelRNNError(f"cifar10: {n} not found in {folder}")
            batches.append(read_cifar_batch(str(folder / n), (folder / n).read_bytes()))
    else:
        (archive,) = locate("cifar10", [_CIFAR_ARCHIVE], data_dir)
        batches = _read_cifar_archive(archive, names)
    images, labels = (np.concatenate(part) for part in zip(*batches))
    keep = slice(-CIFAR_VALID) if split == "train" else slice(-CIFAR_VALID, None) if split == "valid" else slice(None)
    return images[keep], labels[keep]


def _read_cifar_archive(archive: Path, names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            out = []
            for n in names:
                try:
                    member = tar.extractfile(f"cifar-10-batches-py/{n}")
                except KeyError:
                    raise PixelRNNError(f"{archive}: no cifar-10-batches-py/{n} in the archive") from None
                out.append(read_cifar_batch(f"{archive}:{n}", member.read()))
            return out
    except (tarfile.TarError, OSError, EOFError) as error:
        raise PixelRNNError(f"{archive}: cannot read the archive ({error})") from None


# --- downsampled ImageNet ---------------------------------------------------------------


def _imagenet(size: int) -> Callable:
    def load(split: str, data_dir, labelled: bool = False) -> tuple[np.ndarray, None]:
        name = f"{split}_{size}x{size}.tar"
        file = RemoteFile(name, f"https://image-net.org/small/{name}")
        (path,) = locate(f"imagenet{size}", [file], data_dir)
        return read_png_tar(path, size), None

    return load


# --- the embedded digits -----------------------------------------------------------------


def _digits(split: str, data_dir, labelled: bool = False) -> tuple[np.ndarray, None]:
    with resources.files("pixelrnn.data").joinpath("digits.npz").open("rb") as f:
        packed = np.load(f)[split]
    return np.unpackbits(packed, axis=1)[:, :784].reshape(-1, 1, 28, 28), None


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "digits", 1, 2, 28, SPLITS,
            "3,000 MNIST digits shipped with the package (train 2,000 / valid 500 / test 500), "
            "binarized once with a fixed seed",
            "CC BY-SA 3.0 (MNIST, Y. LeCun and C. Cortes)", loader=_digits,
        ),
        DatasetInfo(
            "binarized-mnist", 1, 2, 28, SPLITS,
            "Salakhutdinov & Murray (2008) fixed binarization of MNIST, binarized_mnist_*.amat",
            "CC BY-SA 3.0 (MNIST)", "50,000 / 10,000 / 10,000 images", loader=_binarized_mnist,
        ),
        DatasetInfo(
            "mnist", 1, 256, 28, SPLITS, "MNIST, official IDX files (LeCun, Cortes, Burges)",
            "CC BY-SA 3.0", "valid = the last 10,000 training images", loader=_idx_dataset("mnist"),
            classes=tuple("0123456789"),
        ),
        DatasetInfo(
            "fashion-mnist", 1, 256, 28, SPLITS, "Fashion-MNIST, official IDX files (Zalando Research)",
            "MIT", "valid = the last 10,000 training images; Debian's dataset-fashion-mnist is found",
            loader=_idx_dataset("fashion-mnist"),
            classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                     "Bag", "Ankle boot"),
        ),
        DatasetInfo(
            "cifar10", 3, 256, 32, SPLITS, "CIFAR-10, python version (Krizhevsky 2009)",
            "free for research use, see the CIFAR page",
            "valid = the last 5,000 images of data_batch_5; train = the other 45,000",
            loader=_cifar10,
            classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        ),
        DatasetInfo(
            "imagenet32", 3, 256, 32, ("train", "valid"),
            "downsampled ImageNet 32x32 (van den Oord et al. 2016), tar archives of PNGs; "
            "no public test split, the paper reports valid",
            "ImageNet terms of access", loader=_imagenet(32),
        ),
        DatasetInfo(
            "imagenet64", 3, 256, 64, ("train", "valid"),
            "downsampled ImageNet 64x64 (van den Oord et al. 2016), tar archives of PNGs",
            "ImageNet terms of access", loader=_imagenet(64),
        ),
        DatasetInfo(
            "folder", 3, 256, None, SPLITS,
            "your own PNG / JPEG images: DIR/train, DIR/valid, DIR/test (or DIR alone: every split); "
            "for labels, one subfolder of images per class in each",
            "yours",
        ),
    ]
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise PixelRNNError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


FOLDER_DEFAULTS = {"image_size": 32, "channels": 3}  # the folder dataset's options, when not given


def check_folder_options(name: str, image_size: int | None = None, channels: int | None = None) -> None:
    """PixelRNNError if ``image_size`` or ``channels`` is given for a dataset other than ``folder``
    (the others have images of a fixed size, so nothing would read them)."""
    if name != "folder" and (image_size, channels) != (None, None):
        info = dataset_info(name)
        raise PixelRNNError(f"--image-size and --channels are for the folder dataset; {name} has "
                            f"{info.size}x{info.size} images with {info.channels} channel(s)")


def load_dataset(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    image_size: int | None = None,
    channels: int | None = None,
) -> torch.Tensor:
    """A split's images as a uint8 tensor (N, C, H, W) with values in [0, levels).

    ``data_dir``: a folder that holds the dataset's files (never downloads then);
    without it the files come from the cache or are downloaded. ``image_size``
    (default 32) and ``channels`` (default 3) are the folder dataset's; for the
    others, whose images have a fixed size, giving them is an error, as is a
    ``data_dir`` for the embedded digits (nothing would read it).
    """
    return _load(name, split, data_dir, image_size, channels, labelled=False).images


@dataclass(frozen=True)
class LabeledSplit:
    """A split's images (N, C, H, W) uint8, their labels (N,) int64 in [0, len(classes)) and the
    class names (label k is ``classes[k]``)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: tuple[str, ...] | None


def load_labeled(name: str, split: str, data_dir: str | Path | None = None, *,
                 image_size: int | None = None, channels: int | None = None, labels: bool = True) -> LabeledSplit:
    """:func:`load_dataset` with the class labels; PixelRNNError for a dataset without labels
    (``labels=False``: the images alone, labels and classes None). The folder dataset's classes
    are the subfolders of its training split (``DIR/train/NAME/``, or ``DIR/NAME/``), sorted by
    name; the other splits' class folders are matched by name."""
    return _load(name, split, data_dir, image_size, channels, labelled=labels)


def no_labels_reason(name: str) -> str:
    """Why a dataset has no labels, as the end of an error line."""
    if name == "binarized-mnist":
        return ("the binarized-MNIST benchmark files carry no labels; for a class-conditional binarized "
                "MNIST use --dataset mnist --binarize")
    if name == "folder":
        return "a folder dataset has labels when its split folders hold one subfolder of images per class"
    return f"{name} has no class labels"


def _load(name: str, split: str, data_dir, image_size, channels, labelled: bool) -> LabeledSplit:
    info = dataset_info(name)
    if split not in info.splits:
        raise PixelRNNError(f"{name} has no split {split!r}; its splits: {', '.join(info.splits)}")
    check_folder_options(name, image_size, channels)
    if name == "digits" and data_dir is not None:
        raise PixelRNNError(f"digits are part of the package: no data folder to read ({data_dir})")
    classes = info.classes
    if labelled and info.classes is None and name != "folder":
        raise PixelRNNError(f"labels: {no_labels_reason(name)}")
    if name == "folder":
        image_size = FOLDER_DEFAULTS["image_size"] if image_size is None else image_size
        channels = FOLDER_DEFAULTS["channels"] if channels is None else channels
        if data_dir is None:
            raise PixelRNNError("the folder dataset needs --data-dir DIR (your images)")
        if channels not in (1, 3):
            raise PixelRNNError(f"channels must be 1 or 3, got {channels}")
        root = Path(data_dir)
        folder = root / split if (root / split).is_dir() else root
        present = [s for s in ("train", "valid", "test") if (root / s).is_dir()]
        if folder == root and present:  # split folders, but not this one: not the whole folder instead
            raise PixelRNNError(f"{root}: no {split}/ folder (it has {', '.join(s + '/' for s in present)})")
        if labelled:
            train_folder = root / "train" if "train" in present else root
            classes = tuple(image_subfolders(train_folder)) if train_folder.is_dir() else ()
            if not classes:
                raise PixelRNNError(f"labels: {train_folder} has no class subfolders; {no_labels_reason(name)}")
        images, labels = read_folder(folder, channels, image_size, list(classes) if labelled else None)
    else:
        images, labels = info.loader(split, data_dir, labelled)
    as_tensor = lambda a: torch.from_numpy(np.require(a, requirements=["C", "W"]))  # noqa: E731
    return LabeledSplit(as_tensor(images), as_tensor(labels) if labelled else None, classes if labelled else None)


FIXED_DRAW_SEED = 1234  # the one binarization draw of evaluation splits (training's valid split too)


def binarize(grey: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dynamic binarization: Bernoulli(pixel / 255) draws, (N, 1, H, W) uint8 -> {0, 1} uint8."""
    return torch.bernoulli(grey.float() / 255.0, generator=generator).to(torch.uint8)


def binarize_fixed(grey: torch.Tensor, levels: int, name: str) -> torch.Tensor:
    """The fixed binarization of an evaluation split (seed ``FIXED_DRAW_SEED``): the same draw for
    every run and every ``pixelrnn evaluate``. PixelRNNError unless the images are grey with 256
    levels (``levels``), since binarizing 0/1 data would all but empty it."""
    if levels != 256 or grey.shape[1] != 1:
        raise PixelRNNError(f"--binarize needs a grey 256-level dataset, not {name} "
                            f"({grey.shape[1]} channel(s), {levels} levels)")
    return binarize(grey, torch.Generator().manual_seed(FIXED_DRAW_SEED))
