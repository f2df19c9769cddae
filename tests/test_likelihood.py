"""The likelihood is exact: probabilities of all images of a tiny size sum to one."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import ARCHITECTURES, float32_product_settings, tiny_model, total_probability

import pixelrnn

SIZES = [
    # channels, height, width, levels, output
    (1, 2, 2, 2, "sigmoid"),
    (1, 2, 2, 2, "softmax"),
    (3, 2, 2, 2, "sigmoid"),
    (1, 2, 2, 3, "softmax"),
    (1, 1, 3, 4, "softmax"),
    (1, 3, 1, 4, "softmax"),
]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,height,width,levels,output", SIZES)
def test_probabilities_of_all_images_sum_to_one(arch, channels, height, width, levels, output):
    model = tiny_model(arch, channels, levels, output=output)
    assert abs(total_probability(model, height, width) - 1.0) < 1e-9


def test_log_prob_is_the_sum_of_per_value_conditionals():
    model = tiny_model("row_lstm", 3, 5)
    x = torch.randint(0, 5, (2, 3, 3, 4))
    logits = model(x)
    manual = torch.zeros(2, dtype=torch.float64)
    for b in range(2):
        for c in range(3):
            for i in range(3):
                for j in range(4):
                    manual[b] += torch.log_softmax(logits[b, c, :, i, j], 0)[x[b, c, i, j]]
    torch.testing.assert_close(model.log_prob(x), manual)


def test_sigmoid_output_is_the_paper_bernoulli():
    model = tiny_model("pixelcnn", 1, 2)
    x = torch.randint(0, 2, (3, 1, 4, 4))
    logits = model(x)
    assert torch.equal(logits[:, :, 0], torch.zeros_like(logits[:, :, 0]))
    p_one = torch.sigmoid(logits[:, :, 1])
    expected = torch.where(x == 1, p_one, 1 - p_one).log().flatten(1).sum(1)
    torch.testing.assert_close(model.log_prob(x), expected)


def test_units():
    assert pixelrnn.nats_to_bits(math.log(2)) == pytest.approx(1.0)
    # A uniform 256-level model is exactly 8 bits per dimension.
    dims = 3 * 32 * 32
    assert pixelrnn.bits_per_dim(dims * math.log(256), dims) == pytest.approx(8.0)
    nll = torch.tensor([100.0, 200.0])
    assert torch.allclose(pixelrnn.bits_per_dim(nll, 784), nll / (784 * math.log(2)))


def test_evaluation_batches_change_nothing_and_fit_the_cpu():
    """The default evaluation batch keeps a CPU batch's logits near 96 MiB (CIFAR-10 size: 32 images,
    binary 28 x 28: 256) and the figures equal those of one image at a time."""
    from pixelrnn.training.evaluation import default_batch_size, per_image_nll

    cifar = pixelrnn.build_model("pixelcnn", channels=3, levels=256, hidden=4, layers=1)
    assert default_batch_size(cifar, torch.zeros(1, 3, 32, 32)) == 32
    binary = pixelrnn.build_model("row_lstm", channels=1, levels=2, hidden=4, layers=1)
    assert default_batch_size(binary, torch.zeros(1, 1, 28, 28)) == 256
    images = torch.randint(0, 256, (70, 3, 8, 8))
    together, alone = per_image_nll(cifar, images), per_image_nll(cifar, images, batch_size=1)
    torch.testing.assert_close(together, alone, rtol=1e-6, atol=0)
    assert torch.allclose(together.sum(1), -cifar.log_prob(images).double(), rtol=1e-5)


def test_evaluation_runs_float32_products_at_full_precision_and_restores_the_settings():
    """No TF32 while a likelihood is evaluated (a GPU's default for convolutions), PyTorch's own
    settings after, and the legacy flags still readable (the two TF32 APIs are never mixed)."""
    from pixelrnn.training.evaluation import over_batches

    before, exact = float32_product_settings()
    seen = []

    def compute(x, start):
        seen.append(float32_product_settings()[0])
        return torch.zeros(len(x), 1)

    over_batches(tiny_model("pixelcnn", 1, 2), torch.zeros(5, 1, 3, 3), 2, False, "evaluating", compute, 1)
    assert seen == [(exact, exact)] * 3
    assert float32_product_settings()[0] == before
    assert torch.backends.cudnn.allow_tf32 in (True, False)  # raises if the flags were left mixed


def test_overlapping_evaluations_in_threads_restore_pytorchs_settings():
    """The settings are the process's: the page samples in threads, so passes that overlap in time
    (begun and ended in any order) leave PyTorch's settings as they found them."""
    import threading

    from pixelrnn.runtime import full_float32

    before, exact = float32_product_settings()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with full_float32():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with full_float32():
            second_in.set()
            first_out.wait(10)
            seen.append(float32_product_settings()[0])  # after the first pass ended

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == [(exact, exact)]
    assert float32_product_settings()[0] == before
    with full_float32(), full_float32():  # nested in one thread
        assert float32_product_settings()[0] == (exact, exact)
    assert float32_product_settings()[0] == before
