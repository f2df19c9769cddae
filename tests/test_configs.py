"""The paper's configurations build, report their size, and train on MNIST-sized batches."""

from __future__ import annotations

import pytest
import torch

import pixelrnn

MNIST = [name for name, c in pixelrnn.PAPER_CONFIGS.items() if c.dataset == "binarized-mnist"]


@pytest.mark.parametrize("name", list(pixelrnn.PAPER_CONFIGS))
def test_paper_configuration_builds(name):
    config = pixelrnn.PAPER_CONFIGS[name]
    model = pixelrnn.build_paper_model(name)
    assert model.config.architecture == config.architecture
    assert model.config.hidden == config.model["hidden"]
    assert len(model.blocks) == config.model["layers"]
    assert pixelrnn.parameter_count(model) > 0


@pytest.mark.parametrize("name", MNIST)
def test_mnist_configuration_forward_backward_on_cpu(name):
    torch.manual_seed(0)
    model = pixelrnn.build_paper_model(name)
    x = torch.randint(0, 2, (2, 1, 28, 28))
    nll = -model.log_prob(x).mean()
    nll.backward()
    # An untrained model is close to the uniform 784 * ln 2 = 543.4 nats.
    assert 300 < nll.item() < 900
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_parameter_counts_match_a_hand_count():
    # 1-layer Diagonal BiLSTM, h = 32, binary output: count every tensor by hand.
    h, head = 32, 32
    input_conv = 2 * h * 1 * 4 * 7 + 2 * h  # 7x7 mask A, stored without the 3 rows below the centre
    lstm = (2 * h * 8 * h + 8 * h) + 2 * (2 * h * 4 * h) + 2 * 2 * h + (h * 2 * h + 2 * h)
    skip = 2 * h * 2 * h + 2 * h
    head_params = (2 * h * head + head) + (head * 1 + 1)
    expected = input_conv + lstm + skip + head_params
    model = pixelrnn.build_paper_model("binarized-mnist-diagonal-bilstm-1layer")
    assert pixelrnn.parameter_count(model) == expected


def test_unknown_configuration_lists_the_known_ones():
    with pytest.raises(ValueError, match="binarized-mnist-diagonal-bilstm"):
        pixelrnn.build_paper_model("mnist")
