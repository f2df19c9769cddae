"""Autoregressive weight masks with RGB channel groups (paper section 3.4).

An image is generated in raster order and, inside a pixel, channel by channel
(R, then G, then B). Every feature map is therefore split into ``C`` contiguous
channel groups; the features of group ``g`` at pixel ``(i, j)`` may depend on
the values of channels ``< g`` of that pixel (and everything before the pixel).

For a kernel with centre ``(kh // 2, kw // 2)`` the connection from input
group ``g_in`` to output group ``g_out`` is

* fully open at every position above the centre row, and left of the centre
  in the centre row;
* at the centre, open iff ``g_in < g_out`` (mask ``"A"``, the first layer,
  which sees the image) or ``g_in <= g_out`` (mask ``"B"``, every later layer);
* closed right of the centre in the centre row, and in all rows below.

With one channel this reduces to: mask A excludes the centre, mask B keeps it.

Two more masks serve a vertical stack (the Gated PixelCNN's), whose features at row i
depend on rows above i only and so belong to no channel group: ``"above"`` opens every
position above the centre row (a first layer that reads the image), ``"vertical"`` every
position in the centre row and above (later layers, which read such features).
"""

from __future__ import annotations

import torch

MASK_TYPES = ("A", "B", "above", "vertical")


def channel_groups(num_features: int, channels: int) -> torch.Tensor:
    """Group index of each of ``num_features`` feature maps, as a (num_features,) long tensor.

    Groups are contiguous and as even as possible: feature ``k`` belongs to group
    ``floor(k * channels / num_features)``. Every group is non-empty, which needs
    ``num_features >= channels``.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if num_features < channels:
        raise ValueError(
            f"{num_features} feature maps cannot be split into {channels} channel groups; "
            f"use at least {channels}"
        )
    return torch.arange(num_features) * channels // num_features


def causal_mask(
    kernel_size: tuple[int, int],
    in_groups: torch.Tensor,
    out_groups: torch.Tensor,
    mask_type: str,
) -> torch.Tensor:
    """Mask of shape (out_features, in_features, kh, kw) with ones where weights may be non-zero.

    ``in_groups`` / ``out_groups`` give the channel group of each input / output
    feature map (see :func:`channel_groups`). The kernel centre is
    ``(kh // 2, kw // 2)``; kernels may be any shape, e.g. the 1 x k kernels of
    the Row LSTM's input-to-state convolution.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
    kh, kw = kernel_size
    centre_row, centre_col = kh // 2, kw // 2
    rows = torch.arange(kh).view(kh, 1)
    cols = torch.arange(kw).view(1, kw)
    if mask_type in ("above", "vertical"):
        open_rows = rows < centre_row if mask_type == "above" else rows <= centre_row
        spatial = open_rows.expand(kh, kw).view(1, 1, kh, kw)
        mask = spatial.expand(len(out_groups), len(in_groups), kh, kw)
        return mask.to(torch.get_default_dtype()).contiguous()
    spatial_past = (rows < centre_row) | ((rows == centre_row) & (cols < centre_col))
    is_centre = (rows == centre_row) & (cols == centre_col)

    g_out = out_groups.view(-1, 1)
    g_in = in_groups.view(1, -1)
    centre_open = g_in < g_out if mask_type == "A" else g_in <= g_out

    mask = spatial_past.view(1, 1, kh, kw) | (is_centre.view(1, 1, kh, kw) & centre_open.view(*centre_open.shape, 1, 1))
    return mask.to(torch.get_default_dtype())
