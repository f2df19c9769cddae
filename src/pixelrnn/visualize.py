"""Pictures: training curves, image grids, confusion matrices and receptive fields (PNG)."""

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


# Receptive-field colours (RGB in 0..1): the predicted value, the earlier values it cannot see, the later
# ones, and the range that the values it sees are shaded in (weakest to strongest dependence).
FIELD_TARGET, FIELD_BLIND, FIELD_LATER = (0.85, 0.1, 0.1), (1.0, 0.7, 0.15), (0.93, 0.93, 0.93)
FIELD_SEEN_LIGHT, FIELD_SEEN_DARK = (0.78, 0.87, 0.97), (0.03, 0.19, 0.42)


def field_picture(field: torch.Tensor, earlier: torch.Tensor, pixel: tuple[int, int], channel: int,
                  decades: float = 6.0) -> np.ndarray:
    """(C, H, W) field and earlier-value mask -> (C, H, W, 3) float colours: the predicted value red,
    earlier values it sees blue (darker where the gradient is larger, on a log scale over ``decades``
    below the field's largest), earlier values it does not see (its blind spot) amber, later ones pale."""
    field = field.double().cpu()
    seen = field > 0
    colours = np.empty((*field.shape, 3))
    colours[...] = FIELD_LATER
    colours[(earlier & ~seen).numpy()] = FIELD_BLIND
    if seen.any():
        level = (field[seen].log10() - (field.max().log10() - decades)).clamp(0, decades) / decades
        shade = 0.35 + 0.65 * level.numpy()[:, None]  # 0.35: the weakest dependence still shows
        light, dark = np.array(FIELD_SEEN_LIGHT), np.array(FIELD_SEEN_DARK)
        colours[seen.numpy()] = light + shade * (dark - light)
    colours[channel, pixel[0], pixel[1]] = FIELD_TARGET
    return colours


def plot_receptive_fields(panels: list[tuple[str, np.ndarray]], path: str | Path, title: str = "") -> None:
    """A column per model, a row per input channel: ``panels`` holds (label, (C, H, W, 3) colours
    from ``field_picture``); a legend says what the colours mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    channels = panels[0][1].shape[0]
    fig, axes = plt.subplots(channels, len(panels), squeeze=False, dpi=100,
                             figsize=(max(3.4, 0.4 + 2.5 * len(panels)), 1.3 + 2.5 * channels))
    for column, (label, colours) in enumerate(panels):
        h, w = colours.shape[1:3]
        for c in range(channels):
            ax = axes[c][column]
            ax.imshow(colours[c], interpolation="nearest")
            if max(h, w) <= 32:  # a line between pixels where they are large enough to see
                ax.set_xticks(np.arange(-0.5, w), minor=True)
                ax.set_yticks(np.arange(-0.5, h), minor=True)
                ax.grid(which="minor", color="white", linewidth=0.4)
                ax.tick_params(which="minor", length=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(label, fontsize=8)
            if column == 0 and channels == 3:
                ax.set_ylabel(f"input {'RGB'[c]}", fontsize=8)
    legend = [Patch(color=FIELD_TARGET, label="predicted value"),
              Patch(color=FIELD_SEEN_DARK, label="seen (darker: larger gradient)"),
              Patch(color=FIELD_BLIND, label="earlier, not seen"), Patch(color=FIELD_LATER, label="later")]
    fig.legend(handles=legend, loc="lower center", ncol=4 if len(panels) >= 3 else 2, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    _save_figure(fig, path, bottom=0.35 / fig.get_figheight())  # room for the legend


def _save_figure(fig, path: str | Path, bottom: float = 0.0) -> None:
    """The figure as a PNG, written atomically; ``bottom``: the fraction of its height kept free."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, bottom, 1, 1))
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
