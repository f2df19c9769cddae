"""`pixelrnn sample` and `pixelrnn complete`."""

from __future__ import annotations

import argparse

from ..errors import PixelRNNError
from ..runtime import pick_device
from .io import dataset_split, make_parent, save_values

# A PNG grid beyond this many images is too large to look at (and to hold in memory).
MAX_GRID = 4096


def sample_command(args: argparse.Namespace) -> None:
    from ..generation.sample_file import sample_batches, sample_to_file
    from ..training.checkpoints import load_model_with_meta, trained_image_size
    from ..visualize import image_grid, save_png

    to_grid = args.out.lower().endswith(".png")
    if to_grid and args.n > MAX_GRID:
        raise PixelRNNError(f"--n {args.n}: a PNG grid holds at most {MAX_GRID} images; "
                            "write FILE.npy for more (streamed to disk in batches)")
    device = pick_device(args.device)
    make_parent(args.out)
    model, meta = load_model_with_meta(args.checkpoint, device)
    trained = trained_image_size(meta) or (28, 28)
    height, width = args.height or trained[0], args.width or args.height or trained[1]
    labels = sample_labels(model, args)
    options = dict(seed=args.seed, method=args.method, temperature=args.temperature, labels=labels)
    if args.per_class:  # one row per class
        args.n, args.columns = len(labels), args.per_class
    if not to_grid:
        sample_to_file(model, args.n, height, width, args.out, args.batch_size, progress=True, **options)
        print(f"{args.n} samples ({model.channels}x{height}x{width}, uint8): {args.out}")
        return
    if args.n <= args.batch_size:  # one batch: a progress bar over its values
        images = model.sample(args.n, height, width, progress=True, **options)
    else:
        import torch

        images = torch.cat(list(sample_batches(model, args.n, height, width, args.batch_size, **options)))
    columns = args.columns or max(1, int(round(args.n ** 0.5)))
    save_png(image_grid(images, model.levels, columns), args.out, scale=args.scale)
    print(f"{args.n} samples: {args.out} (values: {save_values(images, args.out)})")


def sample_labels(model, args: argparse.Namespace):
    """The labels to sample a class-conditional model with: --label K for every image, --per-class
    N (N of each class, class by class), or None (y drawn from the class prior: samples of p(x))."""
    import torch

    if args.label is not None and args.per_class:
        raise PixelRNNError("give --label K or --per-class N, not both")
    if args.per_class and not model.classes:
        raise PixelRNNError(f"--per-class: {args.checkpoint} is not class-conditional")
    if args.label is not None:
        return checked_label(model, args)
    if args.per_class:
        return torch.arange(model.classes).repeat_interleave(args.per_class)
    return None


def checked_label(model, args: argparse.Namespace) -> int:
    """--label K, refused for a model that is not class-conditional or a K outside its classes."""
    if not model.classes:
        raise PixelRNNError(f"--label: {args.checkpoint} is not class-conditional")
    if not 0 <= args.label < model.classes:
        raise PixelRNNError(f"--label {args.label}: the model's classes are 0..{model.classes - 1}")
    return args.label


def complete_command(args: argparse.Namespace) -> None:
    import torch

    from ..generation import completion_rows
    from ..training.checkpoints import load_model
    from ..training.evaluation import check_compatible
    from ..visualize import save_completion_grid

    device = pick_device(args.device)
    make_parent(args.out)
    model = load_model(args.checkpoint, device)
    if args.label is not None:
        checked_label(model, args)
    # A class-conditional model completes each image given its own label, unless --label K is given.
    images, levels, split = dataset_split(args, labelled=bool(model.classes) and args.label is None)
    images = images[: args.n].long()
    labels = args.label if args.label is not None else None if split.labels is None else split.labels[: args.n]
    check_compatible(model, images, levels, f"{args.dataset} {args.split}")
    rows = completion_rows(model, images, args.known_rows, args.samples, labels=labels, seed=args.seed,
                           method=args.method, progress=True)
    # One row per image: original, occluded, then the completions (like the paper's Figure 1).
    save_completion_grid(rows, model.levels, args.out, scale=args.scale)
    values = save_values(torch.stack(rows[2:], dim=1), args.out)
    shortfall = f" ({args.n} asked, {len(images)} available)" if len(images) < args.n else ""
    print(f"{len(images)} images{shortfall} x {args.samples} completions from the top {args.known_rows} "
          f"rows: {args.out} (values: {values})")
