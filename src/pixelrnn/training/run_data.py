"""A training run's data: its training and validation images, their labels, and its batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import binarize, binarize_fixed, dataset_info, load_dataset, load_labeled
from .config import TrainConfig


@dataclass
class RunData:
    """Images (N, C, H, W) uint8 of the training and validation splits, with their labels (N,)
    int64 and class names in a class-conditional run (else None). ``levels``: the values per
    channel the model sees (2 with ``--binarize``, whose validation split is the fixed draw)."""

    train_images: torch.Tensor
    valid_images: torch.Tensor
    levels: int
    train_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def dims(self) -> int:
        """Values per image, C x H x W (the bits/dim denominator)."""
        return self.train_images[0].numel()

    @classmethod
    def load(cls, cfg: TrainConfig) -> RunData:
        info = dataset_info(cfg.dataset)
        options = dict(image_size=cfg.image_size, channels=cfg.channels) if cfg.dataset == "folder" else {}
        if cfg.conditional:
            train, valid = (load_labeled(cfg.dataset, split, cfg.data_dir, **options) for split in ("train", "valid"))
            data = cls(train.images, valid.images, info.levels, train.labels, valid.labels, train.classes)
        else:
            data = cls(*(load_dataset(cfg.dataset, split, cfg.data_dir, **options) for split in ("train", "valid")),
                       info.levels)
        if cfg.limit:
            data.train_images = data.train_images[: cfg.limit]
            data.train_labels = None if data.train_labels is None else data.train_labels[: cfg.limit]
        if cfg.binarize:
            data.valid_images, data.levels = binarize_fixed(data.valid_images, info.levels, cfg.dataset), 2
        return data

    def batch(self, indices: torch.Tensor, binarize_with: torch.Generator | None,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training images (B, C, H, W) long at ``indices`` (binarized with draws from
        ``binarize_with`` if given), and their labels (B,) in a conditional run."""
        images = self.train_images[indices]
        if binarize_with is not None:
            images = binarize(images, binarize_with)
        labels = None if self.train_labels is None else self.train_labels[indices].to(device)
        return images.to(device, dtype=torch.long), labels
