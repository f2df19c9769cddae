"""Masks, checked against the definition of paper section 3.4 written out by hand."""

from __future__ import annotations

import pytest
import torch

from pixelrnn.layers import MaskedConv2d
from pixelrnn.layers.masks import causal_mask, channel_groups


def test_single_channel_3x3_masks():
    one = torch.zeros(1, dtype=torch.long)
    a = causal_mask((3, 3), one, one, "A")[0, 0]
    b = causal_mask((3, 3), one, one, "B")[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_row_kernel_mask():
    one = torch.zeros(1, dtype=torch.long)
    assert causal_mask((1, 5), one, one, "B")[0, 0].tolist() == [[1, 1, 1, 0, 0]]
    assert causal_mask((1, 5), one, one, "A")[0, 0].tolist() == [[1, 1, 0, 0, 0]]


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("kernel", [(1, 1), (1, 3), (3, 3), (7, 7), (5, 3), (2, 4)])
def test_rgb_masks_follow_the_definition(mask_type, kernel):
    in_groups = channel_groups(7, 3)
    out_groups = channel_groups(5, 3)
    mask = causal_mask(kernel, in_groups, out_groups, mask_type)
    kh, kw = kernel
    for o in range(5):
        for i in range(7):
            for r in range(kh):
                for c in range(kw):
                    if r < kh // 2 or (r == kh // 2 and c < kw // 2):
                        expected = 1
                    elif (r, c) == (kh // 2, kw // 2):
                        g_in, g_out = in_groups[i], out_groups[o]
                        expected = int(g_in < g_out if mask_type == "A" else g_in <= g_out)
                    else:
                        expected = 0
                    assert mask[o, i, r, c] == expected


def test_channel_groups_are_contiguous_and_non_empty():
    assert channel_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert channel_groups(4, 3).tolist() == [0, 0, 1, 2]
    assert channel_groups(128, 3).bincount().tolist() == [43, 43, 42]
    with pytest.raises(ValueError, match="cannot be split"):
        channel_groups(2, 3)


def test_masked_weights_stay_masked_after_training_steps():
    conv = MaskedConv2d(channel_groups(3, 3), channel_groups(6, 3), 5, "A")
    optimiser = torch.optim.SGD(conv.parameters(), lr=1.0)
    x = torch.randn(2, 3, 6, 6)
    for _ in range(3):
        optimiser.zero_grad()
        conv(x).square().sum().backward()
        optimiser.step()
    assert torch.equal(conv.masked_weight() * (1 - conv.mask), torch.zeros_like(conv.weight))
    assert (conv.weight.grad * (1 - conv.mask)).abs().sum() == 0


@pytest.mark.parametrize("kernel", [(2, 2), (1, 4), (4, 1)])
def test_even_kernels_keep_the_output_on_the_input_grid(kernel):
    conv = MaskedConv2d(channel_groups(1, 1), channel_groups(2, 1), kernel, "B")
    assert conv(torch.randn(1, 1, 5, 7)).shape == (1, 2, 5, 7)


@pytest.mark.parametrize("mask_type,open_rows", [("above", 2), ("vertical", 3)])
def test_vertical_stack_masks_open_whole_rows_for_every_group(mask_type, open_rows):
    """A vertical stack's features at row i hold rows above i only: they belong to no channel
    group, so its masks open whole rows (above the centre, or up to it) between any groups."""
    groups = channel_groups(6, 3)
    mask = causal_mask((5, 5), groups, groups, mask_type)
    expected = torch.zeros(5, 5)
    expected[:open_rows] = 1
    assert torch.equal(mask, expected.expand(6, 6, 5, 5))


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("width", [1, 3, 5])
def test_a_row_kernel_as_one_product_and_at_one_pixel_equals_the_convolution(mask_type, width):
    torch.manual_seed(0)
    conv = MaskedConv2d(channel_groups(6, 3), channel_groups(9, 3), (1, width), mask_type).double()
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)  # (B, H, W, F)
    full = conv.forward_nhwc(x)
    torch.testing.assert_close(conv.forward_row(x, width_dim=2), full, rtol=0, atol=1e-12)
    cells = x.permute(1, 2, 0, 3)  # (H, W, B, F), the Row LSTM's layout
    torch.testing.assert_close(conv.forward_row(cells, width_dim=1), full.permute(1, 2, 0, 3), rtol=0, atol=1e-12)
    pad = 3
    padded = torch.nn.functional.pad(x, (0, 0, pad, pad, pad, pad))
    pixels = conv.at_pixels(pad)
    for i, j in [(0, 0), (2, 3), (3, 6)]:
        torch.testing.assert_close(pixels.at(padded, i, j), full[:, i, j], rtol=0, atol=1e-12)
