"""Model and training checkpoints: safetensors files with JSON metadata, written atomically.

Never pickle: a checkpoint holds tensors and JSON only, so loading one runs no code.

* A model file (``best.safetensors``, or any ``*.safetensors`` made by
  :func:`save_model`) holds the weights under ``model.*`` and the model's
  configuration in the metadata.
* A training checkpoint (``last.safetensors``) adds the optimizer state
  (``optimizer.*``), the random generator states (``rng.*``), the averaged
  weights if the run keeps them (``average.*``) and the trainer's progress
  (metadata ``trainer``), everything needed to resume exactly.

Files are written atomically (:func:`pixelrnn.files.atomic_write`): a process
killed at any moment leaves either the old or the new checkpoint, never a
partial one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..errors import PixelRNNError
from ..files import atomic_write
from ..models.multiscale import AnyModel, model_from_config

FORMAT = "pixelrnn"
VERSION = "1"
BEST, LAST = "best.safetensors", "last.safetensors"


def _metadata(model: AnyModel, kind: str, extra: dict | None) -> dict[str, str]:
    meta = {"format": FORMAT, "version": VERSION, "kind": kind,
            "model_config": json.dumps(model.config.to_dict())}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    return meta


def _model_tensors(model: AnyModel) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(path: str | Path, model: AnyModel, info: dict | None = None) -> None:
    """Save a model's weights and configuration (and optional JSON ``info``) to ``path``."""
    atomic_write(Path(path), save_safetensors(_model_tensors(model), _metadata(model, "model", {"info": info or {}})))


def save_training_state(path: str | Path, model: AnyModel, optimizer: torch.optim.Optimizer,
                        rng: dict[str, torch.Tensor], trainer: dict,
                        extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Save everything needed to resume training exactly (``extra_tensors``: e.g. averaged weights)."""
    tensors = _model_tensors(model)
    tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra_tensors or {}).items()})
    state = optimizer.state_dict()
    scalars = {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    for name, value in rng.items():
        tensors[f"rng.{name}"] = value
    extra = {"trainer": trainer, "optimizer_groups": state["param_groups"], "optimizer_scalars": scalars}
    atomic_write(Path(path), save_safetensors(tensors, _metadata(model, "training", extra)))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and decoded metadata of a pixelrnn safetensors file; clear errors otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PixelRNNError(f"{path}: cannot read the checkpoint ({error.strerror})") from None
    try:
        tensors = load_safetensors(data)
        header_size = int.from_bytes(data[:8], "little")
        raw_meta = json.loads(data[8 : 8 + header_size]).get("__metadata__", {})
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise PixelRNNError(f"{path}: not a readable safetensors file, corrupt or truncated ({error})") from None
    if raw_meta.get("format") != FORMAT:
        raise PixelRNNError(f"{path}: not a pixelrnn checkpoint (no pixelrnn metadata)")
    if raw_meta.get("version") != VERSION:
        raise PixelRNNError(f"{path}: checkpoint format version {raw_meta.get('version')}; this pixelrnn "
                            f"reads version {VERSION} (a newer pixelrnn wrote it?)")
    try:
        meta = {k: v if k in ("format", "version", "kind") else json.loads(v) for k, v in raw_meta.items()}
    except ValueError:
        raise PixelRNNError(f"{path}: corrupt checkpoint metadata") from None
    return tensors, meta


def model_from_checkpoint(path: str | Path, tensors: dict, meta: dict) -> AnyModel:
    """Build the model described by a checkpoint's metadata and load its weights."""
    try:
        model = model_from_config(meta["model_config"])
    except (KeyError, TypeError, ValueError, PixelRNNError) as error:
        raise PixelRNNError(f"{path}: bad model configuration in the checkpoint ({error})") from None
    load_prefixed(model, tensors, "model.", f"{path}: the weights do not match the model configuration "
                  "they came with")
    if not all(torch.isfinite(weight).all() for weight in model.state_dict().values()):
        raise PixelRNNError(f"{path}: the weights hold NaN or infinite values (a corrupt file, or a "
                            "diverged run)")
    return model


def load_prefixed(module: torch.nn.Module, tensors: dict, prefix: str, mismatch: str) -> None:
    """Load the tensors named ``prefix`` + a key of ``module.state_dict()``; PixelRNNError(``mismatch``)
    unless they are exactly those keys with those shapes."""
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = module.state_dict()
    if set(weights) != set(expected) or any(weights[k].shape != v.shape for k, v in expected.items()):
        raise PixelRNNError(mismatch)
    module.load_state_dict(weights)


def resolve_model_path(path: str | Path) -> Path:
    """A run folder means its best model (its last checkpoint if no evaluation ran yet)."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise PixelRNNError(f"{path}: no {BEST} or {LAST} in this folder")
    if not path.exists():
        raise PixelRNNError(f"{path}: no such checkpoint")
    return path


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> AnyModel:
    """Load a model from a model file, a training checkpoint, or a run folder (its best model)."""
    return load_model_with_meta(path, map_location)[0]


def load_model_with_meta(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[AnyModel, dict]:
    """:func:`load_model`, and the checkpoint's decoded metadata (``info``: what it was trained on)."""
    path = resolve_model_path(path)
    tensors, meta = read_checkpoint(path)
    return model_from_checkpoint(path, tensors, meta).to(map_location).eval(), meta


def trained_image_size(meta: dict) -> tuple[int, int] | None:
    """(H, W) of the images a checkpoint's model was trained on: recorded by training, else the
    fixed size of its dataset (or a training state's ``--image-size``); None if unknown (models
    run on any size)."""
    from ..data import DATASETS

    info = meta.get("info") or meta.get("trainer", {}).get("config", {})
    if info.get("image_size_hw"):
        return tuple(info["image_size_hw"])
    dataset = DATASETS.get(info.get("dataset"))
    size = dataset.size if dataset is not None and dataset.size else info.get("image_size")
    return (size, size) if size else None


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta.get("optimizer_scalars", {}).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
