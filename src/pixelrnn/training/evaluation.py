"""Exact negative log-likelihood of a dataset split, in nats per image and bits per dimension."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import torch

from ..errors import PixelRNNError
from ..models.distribution import bits_per_dim
from ..models.multiscale import AnyModel
from ..runtime import full_float32


@dataclass(frozen=True)
class NLLReport:
    """Mean NLL over ``images`` images with the standard error of the mean."""

    nll_nats: float
    nll_nats_stderr: float
    bits_per_dim: float
    bits_per_dim_stderr: float
    images: int
    dims: int
    # Multi-Scale PixelRNN: the mean NLL of each stage, {"small_image": ..., "rest_given_small": ...}
    stage_nll_nats: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def check_compatible(model: AnyModel, images: torch.Tensor, levels: int, what: str) -> None:
    """Refuse data whose channels or levels differ from the model's, with a one-line reason."""
    if images.dim() != 4:
        raise PixelRNNError(f"{what}: expected images (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] != model.channels or levels != model.levels:
        raise PixelRNNError(
            f"{what} has {images.shape[1]} channel(s) and {levels} levels, the model "
            f"{model.channels} channel(s) and {model.levels} levels"
        )


def per_image_nll(model: AnyModel, images: torch.Tensor, batch_size: int | None = None,
                  progress: bool = False, labels: torch.Tensor | None = None) -> torch.Tensor:
    """-ln p(x) in nats for every image, (N, T) float64, T terms that sum to it: one, or for a
    Multi-Scale PixelRNN its two stages. Images: (N, C, H, W) in [0, levels). ``labels`` (N,):
    -ln p(x | y) of a class-conditional model; without them its marginal -ln p(x) (one term)."""
    def terms(x: torch.Tensor, start: int) -> torch.Tensor:
        y = None if labels is None else labels[start : start + len(x)].to(x.device)
        return -model.log_prob_terms(x, y)

    return over_batches(model, images, batch_size, progress, "evaluating", terms, 1)


CPU_LOGITS_BYTES = 96 * 2**20  # one CPU batch's output logits, about


def default_batch_size(model: AnyModel, images: torch.Tensor) -> int:
    """Images per evaluation batch: 256 on a GPU; on the CPU as many as keep one batch's logits
    (B, H, W, C, levels float32) near 96 MiB, from 1 to 256 (CIFAR-10: 32, binarized MNIST: 256).
    Larger CPU batches are no faster and need gigabytes (CIFAR-10 Row LSTM, 1,024 images: 32 ->
    0.9 GiB peak, 256 -> 4.3 GiB and 1.2x the time)."""
    if next(model.parameters()).device.type != "cpu":
        return 256
    per_image = images[0].numel() * model.levels * 4 if len(images) else 1
    return max(1, min(256, CPU_LOGITS_BYTES // per_image))


@torch.no_grad()
def over_batches(model: AnyModel, images: torch.Tensor, batch_size: int | None, progress: bool, desc: str,
                 compute, columns: int) -> torch.Tensor:
    """``compute(x, start)`` (b, T) for batches x of ``images`` on the model's device (the first at
    image ``start``), in eval mode, without gradients -> (N, T) float64 on the CPU. ``batch_size``
    None: :func:`default_batch_size`."""
    from tqdm import tqdm

    batch_size = default_batch_size(model, images) if batch_size is None else batch_size
    if batch_size < 1:
        raise PixelRNNError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        with full_float32():
            for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress,
                              leave=False):
                x = images[start : start + batch_size].to(device=device, dtype=torch.long)
                out.append(compute(x, start).double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, columns, dtype=torch.float64)


def nll_report(nll: torch.Tensor, dims: int) -> NLLReport:
    """Summarise per-image NLLs (nats) of images with ``dims`` values each."""
    n = len(nll)
    if n == 0:
        raise PixelRNNError("no images to evaluate")
    mean = nll.mean().item()
    stderr = nll.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return NLLReport(mean, stderr, bits_per_dim(mean, dims), bits_per_dim(stderr, dims), n, dims)


def evaluate(model: AnyModel, images: torch.Tensor, batch_size: int | None = None,
             progress: bool = False, labels: torch.Tensor | None = None) -> NLLReport:
    """Exact mean NLL of ``images`` under ``model`` (with the stages of a multi-scale model);
    ``labels`` (N,): a class-conditional model's -ln p(x | y), else its marginal -ln p(x)."""
    return report_of_terms(per_image_nll(model, images, batch_size, progress, labels), images)


def report_of_terms(terms: torch.Tensor, images: torch.Tensor) -> NLLReport:
    """:func:`nll_report` of :func:`per_image_nll`'s (N, T) terms for ``images`` (N, C, H, W), with
    each stage's mean if T = 2."""
    report = nll_report(terms.sum(1), math.prod(images.shape[1:]))
    if terms.shape[1] == 1:
        return report
    stages = dict(zip(("small_image", "rest_given_small"), terms.mean(0).tolist()))
    return dataclasses.replace(report, stage_nll_nats=stages)
