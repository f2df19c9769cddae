"""Pictures: training curves, image grids and confusion matrices (PNG)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write


def plot_curves(records: list[dict], path: str | Path, levels: int, events: list[tuple[int, str]] = ()) -> None:
    """Training and validation NLL against the step, from metrics.jsonl records: in nats per image
    for binary data (``levels`` 2, the paper's MNIST unit), else in bits/dim; ``events``
    ([(step, label)], e.g. learning-rate changes) are drawn as labelled vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, unit = ("nll_nats", "nats") if levels == 2 else ("bits_per_dim", "bits/dim")
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(steps, [r[f"train_{key}"] for r in records], "o-", label="train (running mean)")
    ax.plot(steps, [r[f"valid_{key}"] for r in records], "s-", label="validation (exact)")
    labels: dict[int, list[str]] = {}
    for step, label in events:
        if step <= steps[-1]:  # scheduled changes still to come are not drawn
            labels.setdefault(step, []).append(label)
    for step, label in ((step, ", ".join(text)) for step, text in labels.items()):
        ax.axvline(step, color="grey", linestyle=":", linewidth=1)
        ax.annotate(label, (step, 1), xycoords=("data", "axes fraction"), xytext=(2, -2),
                    textcoords="offset points", rotation=90, va="top", fontsize=7, color="dimgrey")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"NLL ({unit})")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, path)


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: str | Path, title: str = "") -> None:
    """A confusion matrix (``confusion[t][p]``: images of true class t predicted as p) as a PNG,
    rows normalised to fractions of each true class, with the counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.int64)
    fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    k = len(counts)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 + 0.45 * k), max(3.6, 1.2 + 0.45 * k)), dpi=100)
    ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for t in range(k):
        for p in range(k):
            if counts[t, p]:
                ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=7,
                        color="white" if fractions[t, p] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted class: argmax_y p(y | x)")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=9)
    _save_figure(fig, path)


def _save_figure(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())


def image_grid(images: torch.Tensor, levels: int, columns: int, padding: int = 2) -> np.ndarray:
    """(N, C, H, W) values in [0, levels) -> one (rows*H', columns*W', 3) uint8 picture.

    Negative values (e.g. occluded pixels) are drawn mid-grey.
    """
    images = images.detach().cpu().long()
    n, c, h, w = images.shape
    pixels = (images.float() * (255.0 / (levels - 1))).round().clamp(0, 255).to(torch.uint8)
    pixels[images < 0] = 128
    if c == 1:
        pixels = pixels.expand(n, 3, h, w)
    rows = max(1, -(-n // columns))
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, 3), 128, np.uint8)
    for index in range(n):
        r, col = divmod(index, columns)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = pixels[index].permute(1, 2, 0).numpy()
    return grid


def save_png(picture: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Save an (H, W, 3) uint8 picture, each pixel repeated ``scale`` times."""
    from PIL import Image

    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    atomic_write(Path(path), buffer.getvalue())


def save_completion_grid(rows: list[torch.Tensor], levels: int, path: str | Path, scale: int = 3) -> None:
    """Save Figure-1 rows (2 + k tensors (B, C, H, W): originals, occluded, completions) as one PNG
    with a row per image."""
    grid = torch.stack(rows, dim=1).flatten(0, 1)
    save_png(image_grid(grid, levels, columns=len(rows)), path, scale=scale)
