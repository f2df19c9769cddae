"""Values to pictures for the page: image grids, -log p heat maps and receptive fields as PNG data URLs."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch

from ..visualize import image_grid


def png_data_url(picture: np.ndarray, scale: int = 1) -> str:
    """An (H, W, 3) uint8 picture as a ``data:image/png;base64,...`` URL, each pixel repeated
    ``scale`` times (the browser would blur a small image it scales itself)."""
    from PIL import Image

    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grid_url(images: torch.Tensor, levels: int, scale: int, columns: int = 4) -> str:
    """(N, C, H, W) values (negative: not drawn yet, grey) -> one grid, as a data URL."""
    return png_data_url(image_grid(images, levels, min(columns, len(images))), scale)


def heatmap_url(nats: torch.Tensor, scale: int, top: float | None = None) -> str:
    """(H, W) -log p of each pixel in nats -> a heat map (magma: dark = expected, bright =
    surprising), 0 to ``top`` (default: the largest value)."""
    from matplotlib import colormaps

    values = nats.detach().double().cpu().numpy()
    top = float(values.max()) if top is None else top
    colours = colormaps["magma"](values / top if top > 0 else np.zeros_like(values))[..., :3]
    return png_data_url((colours * 255).round().astype(np.uint8), scale)


def field_url(field: torch.Tensor, earlier: torch.Tensor, pixel: tuple[int, int], scale: int) -> str:
    """(H, W) receptive field of a pixel (each input pixel's gradient, its channels summed) and the
    pixels before it, (H, W) bool -> the picture of ``visualize.field_picture``, as a data URL."""
    from ..visualize import field_picture

    colours = field_picture(field[None], earlier[None], pixel, 0)[0]
    return png_data_url((colours * 255).round().astype(np.uint8), scale)
