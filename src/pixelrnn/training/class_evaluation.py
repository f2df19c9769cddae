"""A class-conditional model on a labelled split: its conditional and unconditional NLL and its
likelihood classifier (Bayes' rule), all from one pass of the model per class."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import PixelRNNError
from ..models.multiscale import AnyModel
from .evaluation import NLLReport, nll_report, over_batches


@dataclass(frozen=True)
class ClassReport:
    """``conditional``: -ln p(x | y) for the true labels; ``unconditional``: -ln p(x) =
    -ln sum_y p(y) p(x | y); ``accuracy`` of argmax_y p(y | x); ``confusion[t][p]``: images of
    class t predicted as p."""

    conditional: NLLReport
    unconditional: NLLReport
    accuracy: float
    confusion: list[list[int]]
    class_names: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def class_log_joints(model: AnyModel, images: torch.Tensor, batch_size: int | None = None,
                     progress: bool = False) -> torch.Tensor:
    """ln p(y) + ln p(x | y) in nats for every image and class, (N, K) float64."""
    if not model.classes:
        raise PixelRNNError("this model is not class-conditional: it has no classes to classify into")
    return over_batches(model, images, batch_size, progress, f"evaluating ({model.classes} classes)",
                        lambda x, start: model.class_log_joint(x), model.classes)


def class_report(joint: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor, dims: int,
                 class_names: list[str] | None = None) -> ClassReport:
    """:class:`ClassReport` from :func:`class_log_joints` (N, K), true ``labels`` (N,), the model's
    ln p(y) ``prior`` (K,) and ``dims`` values per image."""
    labels = labels.long().cpu()
    classes = joint.shape[1]
    if len(labels) != len(joint) or (len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < classes):
        raise PixelRNNError(f"labels: need {len(joint)} labels in 0..{classes - 1}")
    true_joint = joint.gather(1, labels[:, None]).squeeze(1)
    conditional = -(true_joint - prior.double().cpu()[labels])
    unconditional = -joint.logsumexp(1)
    predicted = joint.argmax(1)
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    names = list(class_names) if class_names else [str(k) for k in range(classes)]
    accuracy = (predicted == labels).double().mean().item() if len(labels) else math.nan
    return ClassReport(nll_report(conditional, dims), nll_report(unconditional, dims), accuracy,
                       confusion.tolist(), names)
