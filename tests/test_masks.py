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
