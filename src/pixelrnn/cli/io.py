"""The commands' inputs and outputs: dataset images as the options ask, output folders checked
before any work, arrays written atomically."""

from __future__ import annotations

import argparse


def dataset_images(args: argparse.Namespace):
    """(images, levels) of the --dataset split as a model sees it: with --binarize, the fixed
    binarization draw that training evaluates on; with --limit, its first N images."""
    images, levels, _ = dataset_split(args, labelled=False)
    return images, levels


def dataset_split(args: argparse.Namespace, labelled: bool):
    """(images, levels, split): as :func:`dataset_images`, with the :class:`LabeledSplit` whose
    labels (cut by --limit) and class names a class-conditional model needs when ``labelled``
    (PixelRNNError for a dataset without labels)."""
    from ..data import LabeledSplit, binarize_fixed, dataset_info, load_labeled

    split = load_labeled(args.dataset, args.split, args.data_dir, image_size=args.image_size,
                         channels=args.channels, labels=labelled)
    images, levels = split.images, dataset_info(args.dataset).levels
    if args.binarize:
        images, levels = binarize_fixed(images, levels, args.dataset), 2
    labels = None if split.labels is None else split.labels[: args.limit]
    return images[: args.limit], levels, LabeledSplit(images[: args.limit], labels, split.classes)


def make_parent(path) -> None:
    """Create the folder of an output file and check it is writable, before any work."""
    from pathlib import Path

    from ..files import writable_folder

    writable_folder(Path(path).parent)


def save_values(values, path) -> str:
    """The raw sampled values beside a PNG: same name, .npy (uint8)."""
    from pathlib import Path

    target = Path(path).with_suffix(".npy")
    save_array(values.cpu().numpy().astype("uint8"), target)
    return str(target)


def save_array(array, path) -> None:
    """A NumPy array as a .npy file, written atomically."""
    import io
    from pathlib import Path

    import numpy as np

    from ..files import atomic_write

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(Path(path), buffer.getvalue())
