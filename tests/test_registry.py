"""An architecture is one Block subclass plus one registry entry: the model, its checks, the
cached sampler and the command line take it from there."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_cached_logits_equal, dependency_matrix, tiny_model, total_probability

import pixelrnn
from pixelrnn.layers import channel_groups, masked_1x1
from pixelrnn.models.block import Block, BlockCache


class PointwiseBlock(Block):
    """A toy architecture: ReLU -> 1x1 mask B (2h -> 2h); it sees nothing beyond the pixel's stream."""

    name = "pointwise"
    title = "Pointwise"
    paper = "a test"
    uses_kernel_size = False

    def __init__(self, hidden, channels, kernel_size=3):
        super().__init__()
        self.mix = masked_1x1(2 * hidden, 2 * hidden, channels)
        self.condition_features = 2 * hidden
        assert len(channel_groups(2 * hidden, channels)) == 2 * hidden

    def forward(self, stream, condition=None):
        out = self.mix.forward_nhwc(torch.relu(stream))
        return out if condition is None else out + condition

    def incremental(self, batch, height, width, pad):
        mix = self.mix.at_pixels(pad)

        class Cache(BlockCache):
            def at(self, stream, i, j, bias):
                out = mix.pointwise(torch.relu(stream[:, pad + i, pad + j]))
                return out if bias is None else out + bias

        return Cache()


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(pixelrnn.ARCHITECTURES, PointwiseBlock.name, PointwiseBlock)
    return PointwiseBlock.name


@pytest.mark.parametrize("channels", [1, 3])
def test_a_registered_block_is_a_whole_model(registered, channels):
    model = tiny_model(registered, channels, 2)
    dep = dependency_matrix(model, 3, 3)
    assert not (dep & torch.ones_like(dep).triu()).any()  # causal, through the model's own layers
    assert abs(total_probability(model, 1, 2) - 1) < 1e-9
    assert_cached_logits_equal(model, torch.randint(0, 2, (2, channels, 3, 4)))
    assert model.sample(3, 2, 2, seed=0).shape == (3, channels, 2, 2)
    assert "pointwise" in model.config.summary()


def test_the_registry_feeds_the_checks(registered):
    with pytest.raises(pixelrnn.PixelRNNError, match="Pointwise"):
        pixelrnn.TrainConfig(model=registered, dataset="digits", out="x", kernel_size=5).check()
    with pytest.raises(pixelrnn.PixelRNNError, match="unknown model 'nope'; known models: .*pointwise"):
        pixelrnn.build_model("nope")


def test_the_command_line_offers_every_registered_architecture():
    from test_training import pixelrnn_cli_here

    help_text = " ".join(pixelrnn_cli_here("train", "--help").stdout.split())
    assert f"{', '.join(pixelrnn.ARCHITECTURES)} (required for a new run)" in help_text
    assert "gated_pixelcnn" in help_text
    listed = pixelrnn_cli_here("architectures").stdout.splitlines()
    assert [line.split()[0] for line in listed] == list(pixelrnn.ARCHITECTURES)
    assert "Gated PixelCNN (van den Oord et al. 2016b" in listed[-1] and "gated_pixelcnn.py" in listed[-1]
