"""Checkpoints: safetensors + JSON, atomic, and clear errors for bad files."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import tiny_model
from safetensors.torch import save_file

import pixelrnn
from pixelrnn.training import checkpoints as ckpt
from pixelrnn.errors import PixelRNNError


@pytest.fixture
def model():
    return tiny_model("diagonal_bilstm", 3, 4).float()


def test_model_round_trip(tmp_path, model):
    ckpt.save_model(tmp_path / "m.safetensors", model, info={"note": "x"})
    loaded = pixelrnn.load_model(tmp_path / "m.safetensors")
    x = torch.randint(0, 4, (2, 3, 5, 5))
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    assert loaded.config == model.config


def test_a_truncated_file_is_refused(tmp_path, model):
    path = tmp_path / "m.safetensors"
    ckpt.save_model(path, model)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(PixelRNNError, match="corrupt or truncated"):
        pixelrnn.load_model(path)
    path.write_bytes(os.urandom(200))
    with pytest.raises(PixelRNNError, match="corrupt or truncated"):
        pixelrnn.load_model(path)


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(PixelRNNError, match="not a pixelrnn checkpoint"):
        pixelrnn.load_model(tmp_path / "other.safetensors")


def test_weights_that_do_not_match_their_config_are_refused(tmp_path, model):
    tensors = ckpt._model_tensors(model)
    tensors.pop(next(iter(tensors)))
    meta = ckpt._metadata(model, "model", {"info": {}})
    from safetensors.torch import save

    (tmp_path / "m.safetensors").write_bytes(save(tensors, meta))
    with pytest.raises(PixelRNNError, match="do not match the model configuration"):
        pixelrnn.load_model(tmp_path / "m.safetensors")


def test_non_finite_weights_and_a_newer_format_are_refused(tmp_path, model):
    from safetensors.torch import save

    tensors, meta = ckpt._model_tensors(model), ckpt._metadata(model, "model", {"info": {}})
    name = next(k for k in tensors if k.endswith("weight"))
    for bad in (float("nan"), float("inf")):
        broken = {**tensors, name: tensors[name].clone().index_fill_(0, torch.tensor([0]), bad)}
        (tmp_path / "m.safetensors").write_bytes(save(broken, meta))
        with pytest.raises(PixelRNNError, match="NaN or infinite values"):
            pixelrnn.load_model(tmp_path / "m.safetensors")
    (tmp_path / "m.safetensors").write_bytes(save(tensors, {**meta, "version": "2"}))
    with pytest.raises(PixelRNNError, match="format version 2; this pixelrnn reads version 1"):
        pixelrnn.load_model(tmp_path / "m.safetensors")


def test_missing_checkpoint_and_empty_run_folder(tmp_path):
    with pytest.raises(PixelRNNError, match="no such checkpoint"):
        pixelrnn.load_model(tmp_path / "nope.safetensors")
    with pytest.raises(PixelRNNError, match="no best.safetensors or last.safetensors"):
        pixelrnn.load_model(tmp_path)


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, model, monkeypatch):
    path = tmp_path / "m.safetensors"
    ckpt.save_model(path, model)
    before = path.read_bytes()

    def crash(fd):
        raise OSError("killed while writing")

    monkeypatch.setattr(os, "fsync", crash)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(PixelRNNError, match=r"m\.safetensors: cannot write it \(killed while writing\)"):
        ckpt.save_model(path, model)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    pixelrnn.load_model(path)
