"""Class conditioning: p(x | y) with a learned per-class bias in every block (van den Oord et al.
2016b, "Conditional Image Generation with PixelCNN Decoders", section 2.3: h^T V y).

A label y in [0, K) selects one row of an embedding per block, a bias of the block's
``condition_features`` added where the block adds its condition (the same place as the
Multi-Scale PixelRNN's conditioning maps), at every pixel alike. The label is known before any
pixel, so the bias needs no mask and the model stays causal and normalised for each y.

The module also holds the class prior p(y), the label frequencies of the training split, which
turns the conditional model into an unconditional one by exact marginalisation:
ln p(x) = logsumexp_y [ln p(y) + ln p(x | y)].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import PixelRNNError


class ClassEmbedding(nn.Module):
    """Labels (B,) -> one bias map (B, H, W, F_k) per block (a broadcast view: no copy per pixel).

    The embeddings start at zero, so a new conditional model starts as its unconditional twin.
    ``log_prior`` (K,): ln p(y), uniform until :meth:`set_prior` is given training labels.
    """

    def __init__(self, classes: int, layer_features: list[int]) -> None:
        super().__init__()
        self.classes = classes
        self.embed = nn.ModuleList(nn.Embedding(classes, n) for n in layer_features)
        for embedding in self.embed:
            nn.init.zeros_(embedding.weight)
        self.register_buffer("log_prior", torch.full((classes,), -math.log(classes)))

    def forward(self, labels: torch.Tensor, height: int, width: int) -> list[torch.Tensor]:
        return [e(labels)[:, None, None, :].expand(-1, height, width, -1) for e in self.embed]

    @torch.no_grad()
    def set_prior(self, labels: torch.Tensor) -> None:
        """ln p(y) from the training labels' frequencies (a class without images gets -inf)."""
        counts = torch.bincount(labels.long().flatten(), minlength=self.classes).double()
        if len(counts) > self.classes or counts.sum() == 0:
            raise PixelRNNError(f"class prior: need labels in [0, {self.classes}), got {len(labels)} "
                                f"labels up to {len(counts) - 1}")
        self.log_prior.copy_((counts / counts.sum()).log().to(self.log_prior.dtype))

    def extra_repr(self) -> str:
        return f"classes={self.classes}"


def check_labels(labels, classes: int, batch: int, device) -> torch.Tensor | None:
    """``labels`` (an int, or (B,) integers) as a (B,) long tensor on ``device``; None stays None.
    PixelRNNError for labels given to an unconditional model (``classes`` 0), a wrong count or a
    label outside [0, classes)."""
    if labels is None:
        return None
    if not classes:
        raise PixelRNNError("this model is not class-conditional: it takes no labels")
    labels = torch.as_tensor(labels, device=device)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise PixelRNNError(f"labels must be whole numbers, got {labels.dtype}")
    labels = labels.long()
    if labels.dim() == 0:
        labels = labels.expand(batch)
    if labels.shape != (batch,):
        raise PixelRNNError(f"expected {batch} labels (one per image), got shape {tuple(labels.shape)}")
    if batch and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        raise PixelRNNError(f"labels must be in [0, {classes - 1}] (the model's {classes} classes), "
                            f"got [{int(labels.min())}, {int(labels.max())}]")
    return labels
