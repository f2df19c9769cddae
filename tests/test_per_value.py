"""Per-value likelihoods (the page's heat map), the predictive distributions (the page's bars) and
the sampler's row hook: the values' ln p sum to the image's exact ln p, each is a normalised
conditional, and the predictive distribution of a value is that conditional at every level of it,
for every architecture, the multi-scale model and a class-conditional model's marginal; the hook
sees every row as drawn."""

from __future__ import annotations

import pytest
import torch
from helpers import ARCHITECTURES, tiny_model, tiny_multiscale

LEVELS = 3


def with_classes(model):
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0, 1)
    model.set_class_prior(torch.tensor([0, 1, 1]))
    return model


def models(arch):
    yield tiny_model(arch, 3, LEVELS)
    yield with_classes(tiny_model(arch, 1, LEVELS, classes=2))
    yield tiny_multiscale(arch, 1, LEVELS)
    yield with_classes(tiny_multiscale(arch, 3, LEVELS, classes=2))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_values_sum_to_the_image_and_each_is_a_normalised_conditional(arch):
    height, width = 4, 2
    for model in models(arch):
        torch.manual_seed(5)
        x = torch.randint(0, LEVELS, (2, model.channels, height, width))
        label_choices = [None] + ([torch.tensor([1, 0])] if model.classes else [])
        for labels in label_choices:
            with torch.no_grad():
                per_value = model.log_prob_per_value(x, labels)
                total = model.log_prob(x, labels)
            assert per_value.shape == x.shape
            torch.testing.assert_close(per_value.double().flatten(1).sum(1), total.double(), rtol=0, atol=1e-5)
            # Changing one value leaves the values before it alone: its conditional over all its
            # values sums to 1 at every position, in whatever order the model generates.
            positions = [(c, i, j) for c in range(model.channels) for i in range(height) for j in range(width)]
            variants = x[:1].repeat(len(positions) * LEVELS, 1, 1, 1)
            for k, (c, i, j) in enumerate(positions):
                variants[k * LEVELS : (k + 1) * LEVELS, c, i, j] = torch.arange(LEVELS)
            some = None if labels is None else labels[:1].repeat(len(variants))
            with torch.no_grad():
                at = model.log_prob_per_value(variants, some).double()
            for k, (c, i, j) in enumerate(positions):
                assert abs(at[k * LEVELS : (k + 1) * LEVELS, c, i, j].logsumexp(0).item()) < 1e-6
            # The predictive distributions are those conditionals, every value's from one pass.
            with torch.no_grad():
                predictive = model.predictive_log_probs(x, labels).double()
            assert predictive.shape == (2, model.channels, LEVELS, height, width)
            for k, (c, i, j) in enumerate(positions):
                torch.testing.assert_close(predictive[0, c, :, i, j], at[k * LEVELS : (k + 1) * LEVELS, c, i, j],
                                           rtol=0, atol=1e-5)
            torch.testing.assert_close(predictive.gather(2, x.unsqueeze(2)).squeeze(2), per_value.double(),
                                       rtol=0, atol=1e-5)

def test_the_row_hook_sees_each_row_once_complete_and_can_stop_the_pass():
    model = tiny_model("row_lstm", 3, LEVELS)
    seen = []
    final = model.sample(2, 4, 3, seed=7, progress=lambda i, images: seen.append((i, images.clone())))
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    for i, images in seen:
        assert torch.equal(images[:, :, : i + 1], final[:, :, : i + 1])
    torch.testing.assert_close(final, model.sample(2, 4, 3, seed=7))  # the hook changes nothing

    class Stop(Exception):
        pass

    def stop_after_first(i, images):
        raise Stop

    with pytest.raises(Stop):
        model.complete(final, 1, seed=7, progress=stop_after_first)
