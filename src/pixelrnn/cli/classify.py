"""`pixelrnn classify`, and `pixelrnn evaluate` of a class-conditional model: its conditional and
unconditional NLL and its likelihood classifier, from one pass of the model per class."""

from __future__ import annotations

import argparse
import json

from ..errors import PixelRNNError
from ..runtime import pick_device
from .io import dataset_split, make_parent, save_array


def classify_command(args: argparse.Namespace) -> None:
    """argmax_y p(y | x) for every image of a split; accuracy and a confusion matrix."""
    evaluate_classes(args, classify=True)


def evaluate_classes(args: argparse.Namespace, classify: bool, model=None) -> None:
    """Report -ln p(x | y), -ln p(x) and (``classify``) the classifier's accuracy on the split."""
    from ..data import dataset_info, no_labels_reason
    from ..training.checkpoints import load_model_with_meta
    from ..training.class_evaluation import class_log_joints, class_report
    from ..training.evaluation import check_compatible, nll_report
    from ..visualize import plot_confusion

    for path in (args.per_image, getattr(args, "confusion", None), getattr(args, "predictions", None)):
        if path:
            make_parent(path)
    meta = {}
    if model is None:
        model, meta = load_model_with_meta(args.checkpoint, pick_device(args.device))
    if not model.classes:
        raise PixelRNNError(f"{args.checkpoint} is not class-conditional (train it with --conditional): "
                            "it has no classes to classify into")
    try:  # labels where the dataset has them: a folder dataset has them if it has class folders
        images, levels, split = dataset_split(args, labelled=classify or dataset_info(args.dataset).classes is not None
                                              or args.dataset == "folder")
    except PixelRNNError:
        if classify or args.dataset != "folder":
            raise
        images, levels, split = dataset_split(args, labelled=False)
    check_compatible(model, images, levels, f"{args.dataset} {args.split}")
    names = meta.get("info", {}).get("class_names") or split.classes
    if split.classes is not None and len(split.classes) != model.classes:
        raise PixelRNNError(f"{args.dataset} has {len(split.classes)} classes, the model {model.classes}")
    joint = class_log_joints(model, images, args.batch_size, progress=not args.json)
    dims = images[0].numel()
    if split.labels is None:  # a dataset without labels: the unconditional NLL only
        report = nll_report(-joint.logsumexp(1), dims)
        if args.per_image:
            save_array(-joint.logsumexp(1).numpy(), args.per_image)
        if args.json:
            print(json.dumps({**report.to_dict(), "measure": "unconditional -ln p(x)", "dataset": args.dataset,
                              "split": args.split, "checkpoint": str(args.checkpoint)}))
        else:
            print(f"{args.dataset} {args.split}: {report.images} images, unconditional NLL -ln sum_y p(y) p(x | y) "
                  f"{report.nll_nats:.3f} ± {report.nll_nats_stderr:.3f} nats ({report.bits_per_dim:.4f} bits/dim); "
                  f"no conditional NLL: {no_labels_reason(args.dataset)}")
        return
    result = class_report(joint, split.labels, model.class_log_prior, dims, names)
    if args.per_image:  # -ln p(x | y) of each image given its label
        save_array(-(joint.gather(1, split.labels[:, None]).squeeze(1)
                     - model.class_log_prior.double().cpu()[split.labels]).numpy(), args.per_image)
    if getattr(args, "predictions", None):
        save_array(joint.argmax(1).numpy(), args.predictions)
    if classify and getattr(args, "confusion", None):
        plot_confusion(result.confusion, result.class_names, args.confusion,
                       f"{args.dataset} {args.split}: accuracy {result.accuracy:.2%}")
    if args.json:
        out = {**result.to_dict(), "dataset": args.dataset, "split": args.split, "checkpoint": str(args.checkpoint)}
        if not classify:
            out.pop("confusion")
        print(json.dumps(out))
        return
    c, u = result.conditional, result.unconditional
    print(f"{args.dataset} {args.split}: {c.images} images, {model.classes} classes")
    print(f"  conditional NLL -ln p(x | y):  {c.nll_nats:.3f} ± {c.nll_nats_stderr:.3f} nats ({c.bits_per_dim:.4f} bits/dim)")
    print(f"  unconditional -ln p(x):        {u.nll_nats:.3f} ± {u.nll_nats_stderr:.3f} nats ({u.bits_per_dim:.4f} bits/dim)"
          f" = -ln sum_y p(y) p(x | y), p(y) from the training labels")
    if classify:
        print(f"  likelihood classifier argmax_y p(y | x): accuracy {result.accuracy:.2%} "
              f"({round(result.accuracy * c.images)} of {c.images})")
        if args.confusion:
            print(f"  confusion matrix: {args.confusion}")
