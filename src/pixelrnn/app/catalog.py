"""The models a page offers, loaded on first use, and the example images each can show."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import PixelRNNError

SHIPPED = Path(__file__).resolve().parents[3] / "checkpoints"  # a source checkout's shipped models
DEMO_MODEL = Path(__file__).resolve().parents[1] / "shipped"


@dataclass
class Entry:
    """One model on offer: ``name`` (its id on the page) and ``path`` (run folder or model file)."""

    name: str
    path: Path
    model: torch.nn.Module | None = None
    meta: dict = field(default_factory=dict)
    examples: torch.Tensor | None = None  # (N, C, H, W) long: validation images, loaded on first use
    examples_note: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)


class Catalog:
    """Models by name. ``paths``: checkpoints given by the user (run folders or model files);
    ``shipped``: also offer the package's shipped models. ``data``: {dataset: folder} where
    the example images of a model's dataset are read (the embedded digits need none)."""

    def __init__(self, paths=(), shipped: bool = True, data: dict[str, str] | None = None) -> None:
        self.data = dict(data or {})
        self.entries: dict[str, Entry] = {}
        for path in map(Path, paths):
            if not path.exists():
                raise PixelRNNError(f"{path}: no such checkpoint")
            self._add(path.stem if path.is_file() else path.name, path)
        if shipped:
            if SHIPPED.is_dir():
                for folder in sorted(p for p in SHIPPED.iterdir() if (p / "best.safetensors").is_file()):
                    self._add(folder.name, folder)
            elif DEMO_MODEL.is_dir():
                for file in sorted(DEMO_MODEL.glob("*.safetensors")):
                    self._add(file.stem, file)
        if not self.entries:
            raise PixelRNNError("no models to serve: give --checkpoint PATH")

    def _add(self, name: str, path: Path) -> None:
        base, k = name, 2
        while name in self.entries:
            name, k = f"{base}-{k}", k + 1
        self.entries[name] = Entry(name, path)

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> Entry:
        """The entry with its model loaded (PixelRNNError for an unknown name or a bad file)."""
        from ..training.checkpoints import load_model_with_meta

        entry = self.entries.get(name)
        if entry is None:
            raise PixelRNNError(f"unknown model {name!r}; known: {', '.join(self.entries)}")
        with entry.lock:
            if entry.model is None:
                entry.model, entry.meta = load_model_with_meta(entry.path)
        return entry

    def describe(self, name: str) -> dict:
        """What the page needs to know of a model: size, channels, levels, classes, figures."""
        return self.open(name)[1]

    def open(self, name: str) -> tuple[torch.nn.Module, dict]:
        """The loaded model and :meth:`describe`'s dict, from one lookup."""
        from ..training.checkpoints import trained_image_size

        entry = self.get(name)
        model, info = entry.model, entry.meta.get("info") or {}
        height, width = trained_image_size(entry.meta) or ((28, 28) if model.channels == 1 else (32, 32))
        classes = info.get("class_names") or [str(k) for k in range(model.classes)]
        description = {"name": name, "architecture": model.config.architecture, "channels": model.channels,
                       "levels": model.levels, "height": height, "width": width, "classes": classes[: model.classes],
                       "dataset": info.get("dataset"), "valid_nll_nats": info.get("valid_nll_nats"),
                       "valid_bits_per_dim": info.get("valid_bits_per_dim"), "path": str(entry.path)}
        return model, description

    def examples(self, name: str, count: int) -> tuple[torch.Tensor | None, str]:
        """Up to ``count`` validation images of the model's dataset, as the model sees them, or
        (None, why not)."""
        entry = self.get(name)
        with entry.lock:
            if entry.examples is None and not entry.examples_note:
                try:
                    entry.examples, entry.examples_note = self._load_examples(entry)
                except PixelRNNError as error:
                    entry.examples_note = str(error)
        if entry.examples is None:
            return None, entry.examples_note
        return entry.examples[:count], entry.examples_note

    def _load_examples(self, entry: Entry) -> tuple[torch.Tensor, str]:
        from ..data import binarize_fixed, dataset_info, load_dataset

        info = entry.meta.get("info") or {}
        dataset = info.get("dataset")
        model = entry.model
        if dataset in self.data:
            split = "valid" if "valid" in dataset_info(dataset).splits else "test"
            images = load_dataset(dataset, split, self.data[dataset])
            if info.get("binarize"):
                images = binarize_fixed(images, dataset_info(dataset).levels, dataset)
            note = f"{dataset}, {split} split"
        elif model.channels == 1 and model.levels == 2:
            images, note = load_dataset("digits", "test"), "the package's embedded test digits"
        else:
            raise PixelRNNError(f"no example images: start the server with --data {dataset}=FOLDER")
        size = self.describe(entry.name)
        if images.shape[1:] != (model.channels, size["height"], size["width"]):
            raise PixelRNNError(f"no example images: {note} are {tuple(images.shape[1:])}, the model's "
                                f"images {(model.channels, size['height'], size['width'])}")
        return images[:256].long(), note
