"""The public contract: shapes, dtypes, any image size, clear errors."""

from __future__ import annotations

import pytest
import torch
from helpers import ARCHITECTURES, tiny_model

import pixelrnn


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,levels", [(1, 2), (3, 256)])
def test_contract_shapes_and_float_input(arch, channels, levels):
    model = pixelrnn.build_model(arch, channels=channels, levels=levels, hidden=6, layers=2, head=12)
    x = torch.randint(0, levels, (2, channels, 5, 6))
    logits = model(x)
    assert logits.shape == (2, channels, levels, 5, 6) and logits.dtype == torch.float32
    xf = x.float().requires_grad_()
    logits_f = model(xf)
    torch.testing.assert_close(logits_f, logits)
    logits_f.sum().backward()
    assert xf.grad is not None and xf.grad.abs().sum() > 0
    logp = model.log_prob(x)
    assert logp.shape == (2,) and (logp < 0).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("height,width", [(1, 1), (1, 6), (6, 1), (3, 8), (9, 2)])
def test_any_image_size(arch, height, width):
    model = tiny_model(arch, 1, 2)
    x = torch.randint(0, 2, (2, 1, height, width))
    assert model(x).shape == (2, 1, 2, height, width)
    assert model.log_prob(x).shape == (2,)


@pytest.mark.parametrize("multiscale", [False, True], ids=["pixelrnn", "multiscale"])
def test_models_sample_and_complete_like_a_distribution(multiscale):
    """model.sample / model.complete (the tfp-like API) are pixelrnn.sample / pixelrnn.complete."""
    model = (pixelrnn.build_multiscale("row_lstm", factor=2, condition_features=4, channels=3, levels=4,
                                       hidden=3, layers=1) if multiscale else tiny_model("row_lstm", 3, 4))
    drawn = model.sample(2, 4, 5, seed=3, temperature=0.8)
    assert drawn.shape == (2, 3, 4, 5) and drawn.dtype == torch.long
    assert torch.equal(drawn, pixelrnn.sample(model, 2, 4, 5, seed=3, temperature=0.8))
    filled = model.complete(drawn, 2, seed=4, method="naive")
    assert torch.equal(filled, pixelrnn.complete(model, drawn, 2, seed=4, method="naive"))
    assert torch.equal(filled[:, :, :2], drawn[:, :, :2])


def test_batch_elements_are_independent():
    model = tiny_model("diagonal_bilstm", 3, 4)
    x = torch.randint(0, 4, (3, 3, 4, 4))
    torch.testing.assert_close(model.log_prob(x)[1:2], model.log_prob(x[1:2]))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.full((1, 1, 4, 4), 2), r"values must be in \[0, 1\]"),
        (torch.full((1, 1, 4, 4), -1), r"values must be in \[0, 1\]"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.long), r"shape \(B, 1, H, W\)"),
        (torch.zeros(4, 4, dtype=torch.long), r"shape \(B, 1, H, W\)"),
    ],
)
def test_bad_images_are_refused(bad, message):
    model = tiny_model("pixelcnn", 1, 2)
    with pytest.raises(ValueError, match=message):
        model.log_prob(bad)


def test_log_prob_refuses_non_integer_floats():
    with pytest.raises(ValueError, match="integer"):
        tiny_model("pixelcnn", 1, 2).log_prob(torch.full((1, 1, 2, 2), 0.5))


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("pixel_cnn", {}, "unknown model 'pixel_cnn'; known models: pixelcnn, row_lstm, diagonal_bilstm"),
        ("pixelcnn", {"levels": 1}, "levels must be in 2..256"),
        ("pixelcnn", {"levels": 257}, "levels must be in 2..256"),
        ("pixelcnn", {"channels": 2}, "channels must be 1 or 3"),
        ("pixelcnn", {"levels": 4, "output": "sigmoid"}, "sigmoid output needs levels=2"),
        ("row_lstm", {"channels": 3, "hidden": 2}, "hidden=2 is too small"),
        ("row_lstm", {"kernel_size": 4}, "kernel_size must be odd"),
    ],
)
def test_bad_options_are_refused(name, options, message):
    with pytest.raises(ValueError, match=message):
        pixelrnn.build_model(name, **options)


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="unknown model option"):
        pixelrnn.build_model("pixelcnn", hiden=4)


def test_defaults_follow_the_paper():
    binary = pixelrnn.build_model("diagonal_bilstm", channels=1, levels=2)
    assert binary.config.output == "sigmoid" and binary.config.head == 32
    natural = pixelrnn.build_model("row_lstm", channels=3, levels=256, hidden=4, layers=1)
    assert natural.config.output == "softmax" and natural.config.head == 1024
    assert natural.config.residual and natural.config.skip


def test_training_from_python(tmp_path):
    """pixelrnn.train(TrainConfig(...)) trains a run folder and returns the model it saved as best
    (with --ema, the averaged weights)."""
    config = pixelrnn.TrainConfig(model="row_lstm", dataset="digits", out=str(tmp_path / "run"), limit=32,
                                  hidden=4, layers=1, batch_size=8, steps=4, eval_every=4, ema=0.9, ema_from=1)
    model = pixelrnn.train(config, progress=False)
    best = pixelrnn.load_model(tmp_path / "run")
    for p, q in zip(model.parameters(), best.parameters()):
        assert torch.equal(p, q)
    x = pixelrnn.load_dataset("digits", "test")[:2].long()
    assert model.log_prob(x).shape == (2,)


@pytest.mark.parametrize("page", ["README.md", "docs/api.md"])
def test_the_docs_python_examples_run_as_written(tmp_path, monkeypatch, page):
    """A page's Python blocks, in order, in an empty folder; only the training budget is cut."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    code = "\n".join(blocks)
    assert "steps=1500" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("steps=1500", "steps=2"), page, "exec"), namespace)
    assert (tmp_path / "runs" / "digits" / "best.safetensors").is_file()
    assert namespace["samples"].shape == (16, 1, 28, 28)
