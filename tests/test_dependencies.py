"""Property tests: every prediction depends only on earlier values (paper sections 3.2-3.5)."""

from __future__ import annotations

import pytest
import torch
from helpers import ARCHITECTURES, dependency_matrix, raster_index, tiny_model

CASES = [
    (arch, channels, levels)
    for arch in ARCHITECTURES
    for channels in (1, 3)
    for levels in (2, 256)
]
HEIGHT, WIDTH = 4, 5


@pytest.mark.parametrize("arch,channels,levels", CASES)
def test_no_dependence_on_current_or_later_values(arch, channels, levels):
    dep = dependency_matrix(tiny_model(arch, channels, levels), HEIGHT, WIDTH)
    later_or_same = torch.ones_like(dep).triu()
    assert not (dep & later_or_same).any()


@pytest.mark.parametrize("arch,channels,levels", CASES)
def test_changing_current_and_later_values_leaves_logits_unchanged(arch, channels, levels):
    """The literal property, on integer images: redraw value p and every value after it."""
    model = tiny_model(arch, channels, levels)
    generator = torch.Generator().manual_seed(2)
    shape = (2, channels, HEIGHT, WIDTH)
    x = torch.randint(0, levels, shape, generator=generator)
    order = raster_index(channels, HEIGHT, WIDTH)
    with torch.no_grad():
        base = model(x)
        for p in range(order.numel()):
            redraw = order >= p
            y = torch.where(redraw, torch.randint(0, levels, shape, generator=generator), x)
            if torch.equal(x, y):
                y = torch.where(redraw, levels - 1 - x, x)
            c, i, j = [int(v) for v in (order == p).nonzero()[0]]
            torch.testing.assert_close(model(y)[:, c, :, i, j], base[:, c, :, i, j], rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch,channels,levels", CASES)
def test_depends_on_left_neighbour_pixel_above_and_earlier_channels(arch, channels, levels):
    dep = dependency_matrix(tiny_model(arch, channels, levels), HEIGHT, WIDTH)
    order = raster_index(channels, HEIGHT, WIDTH)
    for i in range(HEIGHT):
        for j in range(WIDTH):
            for c in range(channels):
                out = order[c, i, j]
                neighbours = [order[:, i, j - 1]] if j > 0 else []
                if i > 0:
                    neighbours.append(order[:, i - 1, j])
                neighbours.append(order[:c, i, j])
                needed = torch.cat(neighbours)
                assert dep[out, needed].all(), (i, j, c)


def diagonal_bilstm_blind_spot(channels: int, height: int, width: int, input_kernel: int) -> torch.Tensor:
    """The earlier values that the Diagonal BiLSTM cannot see, as (n, n) bool in generation
    order: the last value of the previous row, x[r-1, W-1, C-1], from every pixel (r, c)
    with c < W - 1 - input_kernel // 2 (see pixelrnn/models/diagonal_bilstm.py)."""
    order = raster_index(channels, height, width)
    blind = torch.zeros(order.numel(), order.numel(), dtype=torch.bool)
    for r in range(1, height):
        for c in range(width - 1 - input_kernel // 2):
            blind[order[:, r, c], order[channels - 1, r - 1, width - 1]] = True
    return blind


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("layers", [1, 3])
def test_diagonal_bilstm_sees_all_context_but_its_blind_spot(channels, layers):
    height, width = 4, 7  # wide enough for the blind spot of a 7x7 input layer
    model = tiny_model("diagonal_bilstm", channels, 2, layers=layers)
    dep = dependency_matrix(model, height, width)
    earlier = torch.ones_like(dep).tril(-1)
    blind = diagonal_bilstm_blind_spot(channels, height, width, input_kernel=7)
    assert blind.any()
    assert torch.equal(dep, earlier & ~blind)


def test_diagonal_bilstm_blind_spot_shrinks_with_the_input_kernel():
    """With a 3x3 input layer more columns miss the end of the previous row."""
    height, width = 3, 6
    model = tiny_model("diagonal_bilstm", 1, 2, layers=1, input_kernel=3)
    dep = dependency_matrix(model, height, width)
    earlier = torch.ones_like(dep).tril(-1)
    assert torch.equal(dep, earlier & ~diagonal_bilstm_blind_spot(1, height, width, 3))


@pytest.mark.parametrize("arch", ["pixelcnn", "row_lstm"])
def test_convolutional_and_row_models_have_their_known_blind_spots(arch):
    """PixelCNN and Row LSTM miss part of the context (paper 3.1, 3.5): with one
    layer, pixel (3, 0) cannot see the far right of row 0."""
    model = tiny_model(arch, 1, 2, layers=1)
    dep = dependency_matrix(model, 4, 9)
    order = raster_index(1, 4, 9)
    assert not dep[order[0, 3, 0], order[0, 0, 8]]


def columns_seen_in_rows_above(model, height: int, width: int, row: int, column: int) -> list[list[int]]:
    """For r = 1..row: the column offsets (c - column) in row ``row - r`` that the
    prediction of pixel (row, column) depends on, for a one-channel model."""
    dep = dependency_matrix(model, height, width)
    order = raster_index(1, height, width)
    return [[c - column for c in range(width) if dep[order[0, row, column], order[0, row - r, c]]]
            for r in range(1, row + 1)]


@pytest.mark.parametrize("kernel_size,layers", [(3, 1), (3, 4), (5, 1), (5, 4)])
def test_row_lstm_sees_a_triangle_to_the_right_that_depth_does_not_widen(kernel_size, layers):
    """The Row LSTM's receptive field (paper 3.1): in the r-th row above a pixel it sees
    3 + (r - 1) * (k // 2) columns to its right (3: the 7x7 input layer's), whatever its
    depth: only a wider kernel widens the triangle (the README's k = 5 finding)."""
    model = tiny_model("row_lstm", 1, 2, layers=layers, kernel_size=kernel_size)
    seen = columns_seen_in_rows_above(model, height=6, width=16, row=5, column=3)
    for r, offsets in enumerate(seen, start=1):
        assert max(offsets) == 3 + (r - 1) * (kernel_size // 2)


@pytest.mark.parametrize("kernel_size,layers", [(3, 1), (3, 2), (5, 1), (5, 3)])
def test_pixelcnn_sees_a_triangle_to_the_right_and_a_band_above_that_depth_bounds(kernel_size, layers):
    """The PixelCNN's receptive field (paper 3.5): in the r-th row above a pixel it sees
    3 + min(L, r - 1) * (k // 2) columns to its right after L blocks of K x K masked
    convolutions (3: the 7x7 input layer's), the Row LSTM's triangle cut off by depth,
    and nothing above the 3 + L * (k // 2)-th row."""
    model = tiny_model("pixelcnn", 1, 2, layers=layers, kernel_size=kernel_size)
    seen = columns_seen_in_rows_above(model, height=10, width=20, row=9, column=3)
    top = 3 + layers * (kernel_size // 2)
    for r, offsets in enumerate(seen, start=1):
        if r > top:
            assert not offsets
        else:
            assert max(offsets) == 3 + min(layers, r - 1) * (kernel_size // 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_gated_pixelcnn_has_no_blind_spot(channels):
    """The vertical stack sees every column of the rows above within its widening band and the
    horizontal stack the pixels to the left: two layers on a 4 x 5 image see every earlier
    value (the PixelCNN of the same depth misses the far right of the rows above)."""
    height, width = 4, 5
    dep = dependency_matrix(tiny_model("gated_pixelcnn", channels, 2, layers=2), height, width)
    earlier = torch.ones_like(dep).tril(-1)
    assert torch.equal(dep, earlier)
    pixelcnn = dependency_matrix(tiny_model("pixelcnn", channels, 2, layers=2), height, width)
    assert not torch.equal(pixelcnn, earlier)
