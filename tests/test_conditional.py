"""Class-conditional models p(x | y): causal and normalised for every label, the marginal over
classes exact, the cached sampler equal to the whole model, samples that follow p(x | y) and p(x),
the likelihood classifier by Bayes' rule; labelled data and the commands around them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import (ARCHITECTURES, all_images, chi_square_p_value, dependency_matrix, tiny_model,
                     tiny_multiscale, total_probability)

import pixelrnn
from pixelrnn.cli.main import main
from pixelrnn.data import load_dataset, load_labeled
from pixelrnn.errors import PixelRNNError
from pixelrnn.training.class_evaluation import class_log_joints, class_report

CLASSES = 3


def conditional(model):
    """A tiny class-conditional model whose class embeddings are random (they start at zero) and
    whose prior is not uniform."""
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0, 1)
    model.set_class_prior(torch.tensor([0, 1, 1, 2, 2, 2]))
    return model


class GivenLabel(torch.nn.Module):
    """``model`` with its label fixed: images -> logits of p(x | y) (for the dependency helper)."""

    def __init__(self, model, label: int) -> None:
        super().__init__()
        self.model, self.label = model, label
        self.channels, self.levels = model.channels, model.levels

    def forward(self, x):
        return self.model(x, labels=torch.full((len(x),), self.label))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_label_keeps_the_model_causal_and_moves_every_value(arch, channels):
    model = conditional(tiny_model(arch, channels, 4, classes=CLASSES))
    height, width = 3, 4
    n = channels * height * width
    strictly_before = torch.ones(n, n, dtype=torch.bool).tril(-1)
    for label in range(CLASSES):
        dep = dependency_matrix(GivenLabel(model, label), height, width)
        assert not (dep & ~strictly_before).any()  # nothing at or after a value's own position
    x = torch.randint(0, 4, (2, channels, height, width))
    logits = [model(x, labels=torch.full((2,), y)) for y in range(CLASSES)]
    # The label reaches every value's logits, the first one included (it is known before any pixel).
    assert ((logits[0] - logits[1]).abs().amax(dim=(0, 2)) > 1e-6).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_normalised_for_every_label_and_the_marginal_is_exact(arch):
    model = conditional(tiny_model(arch, 1, 2, classes=CLASSES))
    images = all_images(1, 2, 3, 2)
    with torch.no_grad():
        for label in range(CLASSES):
            assert model.log_prob(images, label).exp().sum().item() == pytest.approx(1, abs=1e-9)
        joint = model.class_log_joint(images)
        marginal = model.log_prob(images)
    assert total_probability(model, 2, 3) == pytest.approx(1, abs=1e-9)  # log_prob without labels: p(x)
    prior = torch.tensor([1 / 6, 2 / 6, 3 / 6], dtype=torch.float64)
    expected = sum(prior[y] * model.log_prob(images, y).exp() for y in range(CLASSES))
    torch.testing.assert_close(marginal.exp(), expected.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(model.class_log_posterior(images).exp().sum(1), torch.ones(len(images),
                               dtype=torch.float64))
    torch.testing.assert_close(joint.logsumexp(1), marginal)


def test_multiscale_model_is_normalised_for_every_label():
    model = conditional(tiny_multiscale("pixelcnn", 1, 2, classes=CLASSES))
    images = all_images(1, 2, 4, 2)
    with torch.no_grad():
        for label in range(CLASSES):
            assert model.log_prob(images, label).exp().sum().item() == pytest.approx(1, abs=1e-6)
        assert model.log_prob(images).exp().sum().item() == pytest.approx(1, abs=1e-6)
        assert model.log_prob_terms(images, 1).shape == (len(images), 2)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_cached_logits_equal_the_whole_model_given_labels(arch, channels):
    model = conditional(tiny_model(arch, channels, 5, classes=CLASSES))
    x, labels = torch.randint(0, 5, (3, channels, 4, 5)), torch.tensor([0, 2, 1])
    full = model(x, labels=labels)
    cache = model.incremental(3, 4, 5, labels=labels)
    for i in range(4):
        cache.begin_row(i)
        for j in range(5):
            for c in range(channels):
                torch.testing.assert_close(cache.logits(i, j)[:, c], full[:, c, :, i, j], rtol=0, atol=1e-12)
                cache.set_value(i, j, c, x[:, c, i, j])
        cache.finish_row(i)


def fitted_two_class_model(arch: str, height: int = 2, width: int = 2):
    """A tiny conditional model fitted to two classes: class 0 mostly all-zero images, class 1
    mostly all-one images (80%), the rest uniform noise; prior 1/4, 3/4."""
    model = tiny_model(arch, 1, 2, hidden=6, layers=1, head=12, classes=2).float().train()
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        labels = torch.randint(0, 2, (64,), generator=generator)
        noise = torch.randint(0, 2, (64, 1, height, width), generator=generator)
        keep = torch.rand(64, 1, 1, 1, generator=generator) < 0.8
        x = torch.where(keep, labels.view(-1, 1, 1, 1).expand_as(noise), noise)
        optimiser.zero_grad()
        (-model.log_prob(x, labels).mean()).backward()
        optimiser.step()
    model.set_class_prior(torch.tensor([0, 1, 1, 1]))
    return model.eval()


def frequencies(samples: torch.Tensor) -> torch.Tensor:
    index = (samples.flatten(1) * (2 ** torch.arange(samples[0].numel() - 1, -1, -1))).sum(1)
    return torch.bincount(index, minlength=2 ** samples[0].numel()).double()


@pytest.mark.parametrize("arch", ["pixelcnn", "row_lstm", "diagonal_bilstm", "gated_pixelcnn"])
@pytest.mark.parametrize("method", ["cached", "naive"])
def test_samples_follow_p_x_given_y_and_p_x(arch, method):
    model = fitted_two_class_model(arch)
    images = all_images(1, 2, 2, 2)
    with torch.no_grad():
        for label in (0, 1):
            probs = model.log_prob(images, label).double().exp()
            assert probs.max() > 0.5  # the class's constant image dominates
            samples = model.sample(2000, 2, 2, labels=label, seed=label, method=method)
            assert chi_square_p_value(frequencies(samples), probs) > 1e-3
        marginal = model.log_prob(images).double().exp()  # 1/4 of class 0's, 3/4 of class 1's
        assert chi_square_p_value(frequencies(model.sample(2000, 2, 2, seed=5, method=method)), marginal) > 1e-3


def test_the_likelihood_classifier_finds_the_known_classes():
    model = fitted_two_class_model("pixelcnn")
    zeros, ones = torch.zeros(5, 1, 2, 2, dtype=torch.long), torch.ones(5, 1, 2, 2, dtype=torch.long)
    images, labels = torch.cat([zeros, ones]), torch.tensor([0] * 5 + [1] * 5)
    joint = class_log_joints(model, images, batch_size=3)
    report = class_report(joint, labels, model.class_log_prior, dims=4, class_names=["zero", "one"])
    assert report.accuracy == 1.0 and report.confusion == [[5, 0], [0, 5]]
    posterior = model.class_log_posterior(images).exp()
    assert (posterior[:5, 0] > 0.9).all() and (posterior[5:, 1] > 0.9).all()
    # The report's figures are the model's: -ln p(x | y) and -ln p(x).
    with torch.no_grad():
        assert report.conditional.nll_nats == pytest.approx(-model.log_prob(images, labels).mean().item(), rel=1e-5)
        assert report.unconditional.nll_nats == pytest.approx(-model.log_prob(images).mean().item(), rel=1e-5)


def test_bad_labels_are_refused():
    model = conditional(tiny_model("pixelcnn", 1, 2, classes=CLASSES))
    x = torch.zeros(2, 1, 2, 2, dtype=torch.long)
    for labels, message in [(3, "labels must be in"), (-1, "labels must be in"), (torch.tensor([0]), "expected 2 labels"),
                            (torch.tensor([0.5, 1.0]), "whole numbers")]:
        with pytest.raises(PixelRNNError, match=message):
            model.log_prob(x, labels)
    with pytest.raises(PixelRNNError, match="class-conditional"):
        model(x)  # the whole-image logits need a label
    with pytest.raises(PixelRNNError, match="needs a label"):
        model.complete(x, 1)
    with pytest.raises(PixelRNNError, match="not class-conditional"):
        tiny_model("pixelcnn", 1, 2).log_prob(x, 0)
    with pytest.raises(PixelRNNError, match="classes must be"):
        pixelrnn.build_model("pixelcnn", classes=1)


# --- labelled data and the commands ------------------------------------------------------------


def write_class_folders(root, splits=("train", "valid", "test"), per_class: int = 12) -> None:
    """A folder dataset of two classes known by their look: dark and light 6x6 grey images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for name, level in (("dark", 30), ("light", 225)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = np.clip(rng.normal(level, 15, (6, 6)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")


def test_folder_classes_are_subfolders_matched_by_name(tmp_path):
    write_class_folders(tmp_path, per_class=3)
    split = load_labeled("folder", "valid", tmp_path, channels=1, image_size=6)
    assert split.classes == ("dark", "light") and split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert split.images[:3].float().mean() < 100 < split.images[3:].float().mean()
    assert load_dataset("folder", "valid", tmp_path, channels=1, image_size=6).shape == (6, 1, 6, 6)
    (tmp_path / "test" / "dark").rename(tmp_path / "test" / "dusk")
    with pytest.raises(PixelRNNError, match="dusk are not among the training split's classes"):
        load_labeled("folder", "test", tmp_path, channels=1, image_size=6)


def test_datasets_without_labels_say_so():
    with pytest.raises(PixelRNNError, match="benchmark files carry no labels.*--dataset mnist --binarize"):
        load_labeled("binarized-mnist", "train")
    with pytest.raises(PixelRNNError, match="digits has no class labels"):
        load_labeled("digits", "train")


def test_train_classify_sample_and_complete_a_conditional_model(tmp_path, capsys):
    write_class_folders(tmp_path / "data")
    data = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--channels", "1", "--image-size", "6",
            "--binarize"]
    run = str(tmp_path / "run")
    assert main(["train", *data, "--conditional", "--model", "pixelcnn", "--hidden", "8", "--layers", "2",
                 "--optimizer", "adam", "--lr", "3e-3", "--steps", "60", "--quiet", "--out", run, "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["classify", "--checkpoint", run, *data, "--split", "test", "--json",
                 "--confusion", str(tmp_path / "confusion.png"), "--predictions", str(tmp_path / "p.npy")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == 1.0 and report["class_names"] == ["dark", "light"]
    assert report["confusion"] == [[12, 0], [0, 12]]
    assert report["unconditional"]["nll_nats"] > report["conditional"]["nll_nats"]  # knowing y helps
    assert (tmp_path / "confusion.png").stat().st_size > 0
    assert np.load(tmp_path / "p.npy").tolist() == [0] * 12 + [1] * 12
    assert main(["evaluate", "--checkpoint", run, *data, "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "conditional NLL" in out and "unconditional" in out and "accuracy" not in out
    # One row per class: dark images in the first row, light in the second.
    assert main(["sample", "--checkpoint", run, "--per-class", "4", "--seed", "0", "--out",
                 str(tmp_path / "grid.png"), "--height", "6"]) == 0
    values = np.load(tmp_path / "grid.npy")
    assert values.shape == (8, 1, 6, 6) and values[:4].mean() < 0.5 < values[4:].mean()
    assert main(["complete", "--checkpoint", run, *data, "--split", "test", "--known-rows", "3", "--n", "2",
                 "--samples", "1", "--label", "1", "--out", str(tmp_path / "c.png"), "--seed", "0"]) == 0
    completed = np.load(tmp_path / "c.npy")
    assert completed.shape == (2, 1, 1, 6, 6)
    # The card: the training command with --conditional, and a class grid its sample command redraws.
    assert main(["card", run, "--samples", "6"]) == 0
    card = (tmp_path / "run" / "README.md").read_text()
    assert "--conditional" in card and "conditional on 2 classes" in card and "--classify" in card
    command = card.split("`pixelrnn sample ")[1].split("`")[0].split()
    assert "--per-class" in command
    assert main(["sample", *command, "--out", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "run" / "samples.png").read_bytes()
    capsys.readouterr()
    for args, message in [
        (["sample", "--checkpoint", run, "--label", "2", "--out", str(tmp_path / "x.png")], "classes are 0..1"),
        (["classify", "--checkpoint", "checkpoints/binarized-mnist-pixelcnn", *data, "--split", "test"],
         "not class-conditional"),
        (["train", "--dataset", "binarized-mnist", "--conditional", "--model", "pixelcnn", "--out",
          str(tmp_path / "r2")], "carry no labels"),
    ]:
        assert main(args) == 2
        assert message in capsys.readouterr().err
