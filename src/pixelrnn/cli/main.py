"""Command-line interface: ``pixelrnn COMMAND ...`` (``pixelrnn COMMAND --help`` for each)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import PixelRNNError
from ..models.pixelrnn import CONNECTIONS
from ..models.registry import ARCHITECTURES
from ..runtime import pick_device
from ..training.interrupts import TrainingInterrupted
from .classify import classify_command, evaluate_classes
from .generate import complete_command, sample_command
from .receptive_field import add_receptive_field_parser
from .serve import add_serve_parser
from .io import dataset_images, make_parent, save_array
from .types import batch_change, count, lr_change, npy_path, png_or_npy_path, png_path, positive


def _configs(args: argparse.Namespace) -> None:
    """Print the paper's configurations with their parameter counts."""
    from ..models.configs import PAPER_CONFIGS, build_paper_model, parameter_count

    header = f"{'name':40} {'model':16} {'h':>4} {'layers':>6} {'params':>11} {'effective':>11}  paper"
    print(header)
    print("-" * len(header))
    for name, config in PAPER_CONFIGS.items():
        model = build_paper_model(name)
        print(
            f"{name:40} {config.architecture:16} {config.model['hidden']:>4} "
            f"{config.model['layers']:>6} {parameter_count(model):>11,} "
            f"{parameter_count(model, effective=True):>11,}  "
            f"{config.paper_result:.2f} {config.unit} ({config.split})"
        )
    print("\nparams: stored weights; effective: without the weights that masks hold at zero.")


def _architectures(args: argparse.Namespace) -> None:
    """The registry: each architecture's name, what it is, where it comes from, its file."""
    import inspect

    for name, block in ARCHITECTURES.items():
        kernel = "--kernel-size K" if block.uses_kernel_size else "fixed kernels"
        print(f"{name:16} {block.title} ({block.paper}); {kernel}; {inspect.getsourcefile(block)}")


def _datasets(args: argparse.Namespace) -> None:
    from ..data import DATASETS

    for info in DATASETS.values():
        size = f"{info.size}x{info.size}" if info.size else "any size"
        print(f"{info.name:16} {size:>9} x{info.channels}  {info.levels:>3} levels  "
              f"splits: {', '.join(info.splits)}")
        print(f"{'':16} {info.source}; licence: {info.licence}" + (f"; {info.note}" if info.note else ""))


# What defines a run: with --resume these come from the run, and one given must match it.
RUN_OPTIONS = ("model", "dataset", "optimizer", "lr_decay", "clip", "hidden", "layers", "seed",
               "checkpoint_every", "patience", "binarize", "image_size", "channels", "limit", "scale_factor",
               "dropout", "init_from", "warmup", "kernel_size", "head", "precision", "conditional", "connections")


def _train(args: argparse.Namespace) -> None:
    from ..training import TrainConfig, Trainer

    given = {name: getattr(args, name) for name in RUN_OPTIONS
             if getattr(args, name) is not None and getattr(args, name) is not False}
    if not args.resume and not {"model", "dataset"} <= given.keys():
        raise PixelRNNError("a new run needs --model and --dataset (--resume takes them from the run)")
    config = TrainConfig(
        **{"model": "", "dataset": "", **given},  # "" only on --resume, which uses the run's own
        out=args.out, data_dir=args.data_dir, epochs=args.epochs, steps=args.steps,
        batch_size=TrainConfig.batch_size if args.batch_size is None else args.batch_size,
        lr=TrainConfig.lr if args.lr is None else args.lr, eval_every=args.eval_every,
        lr_changes=args.lr_at or [], batch_changes=args.batch_at or [], ema=args.ema, ema_from=args.ema_from,
    )
    if not args.resume and args.epochs is None and args.steps is None:
        config.epochs = 1
    changes = dict(new_lr=args.lr, new_batch_size=args.batch_size, new_eval_every=args.eval_every, expect=given)
    resume = "auto" if args.auto_resume else args.resume
    trainer = Trainer(config, resume=resume, force=args.force, progress=not args.quiet, device=args.device, log=True,
                      threads=args.threads, **(changes if args.resume else {}))
    ranks = trainer.ranks
    processes = f", {ranks.world} processes (a global batch of {ranks.world} x the batch size)" if ranks.world > 1 else ""
    if ranks.main:
        print(f"training {trainer.model.config.architecture} on {trainer.config.dataset} "
              f"({len(trainer.train_images)} images) into {trainer.out}, {trainer.device}{processes}", file=sys.stderr)
    result = trainer.run()
    if result and ranks.main:
        print(f"step {result['step']}: validation NLL {result['valid_nll_nats']:.2f} nats "
              f"({result['valid_bits_per_dim']:.4f} bits/dim); best "
              f"{trainer.state['best_valid']:.2f} nats, saved in {trainer.out / 'best.safetensors'}")


def _evaluate(args: argparse.Namespace) -> None:
    from ..training.checkpoints import load_model
    from ..training.evaluation import check_compatible, per_image_nll, report_of_terms

    device = pick_device(args.device)  # a missing device is refused before any file is made
    if args.per_image:
        make_parent(args.per_image)
    model = load_model(args.checkpoint, device)
    if model.classes or args.classify:
        return evaluate_classes(args, args.classify, model)
    images, levels = dataset_images(args)
    check_compatible(model, images, levels, f"{args.dataset} {args.split}")
    terms = per_image_nll(model, images, batch_size=args.batch_size, progress=not args.json)
    report = report_of_terms(terms, images)
    if args.per_image:
        save_array(terms.sum(1).numpy(), args.per_image)
    if args.json:
        print(json.dumps({**report.to_dict(), "dataset": args.dataset, "split": args.split,
                          "binarized_on_the_fly": args.binarize, "checkpoint": str(args.checkpoint),
                          "per_image": args.per_image}))
    else:
        label = " (binarized on the fly, not the static benchmark)" if args.binarize else ""
        print(f"{args.dataset} {args.split}{label}: {report.images} images, NLL "
              f"{report.nll_nats:.3f} ± {report.nll_nats_stderr:.3f} nats per image, "
              f"{report.bits_per_dim:.4f} ± {report.bits_per_dim_stderr:.4f} bits/dim")
        if report.stage_nll_nats:
            print(f"  = {report.stage_nll_nats['small_image']:.3f} nats for the small image (pixels "
                  f"(f i, f j), f = {model.factor}) + {report.stage_nll_nats['rest_given_small']:.3f} for "
                  f"the rest given it; exact, since the small image is a part of the image")
        if args.per_image:
            print(f"  each image's NLL (nats): {args.per_image}")


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    figures = run_demo(args.out, args.checkpoint, args.seed, pick_device(args.device))
    print(f"exact NLL of the {figures['images']} embedded test digits: "
          f"{figures['digits_test_nll_nats']:.2f} ± {figures['digits_test_nll_nats_stderr']:.2f} nats "
          f"({figures['digits_test_bits_per_dim']:.4f} bits/dim), {figures['architecture']} "
          f"from {figures['checkpoint']}")
    for name in ("samples.png", "completions.png", "report.md", "report.html"):
        print(f"  {args.out}/{name}")
    print(f"done in {figures['seconds']} s")


def _card(args: argparse.Namespace) -> None:
    from .cards import write_card

    print(write_card(args.run_dir, args.hardware, args.note, args.samples, args.completions, args.data_dir))


def _data_options(for_training: bool) -> argparse.ArgumentParser:
    """The dataset options shared by train, evaluate and complete. They default to None, so that a
    resumed run can tell the options given (which must match the run) from defaults, and the folder
    dataset's options given for another dataset are refused rather than ignored."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--dataset", required=not for_training,
                      help="see `pixelrnn datasets`" + (" (required for a new run)" if for_training else ""))
    data.add_argument("--data-dir", help="folder with the dataset's files (no download)")
    data.add_argument("--binarize", action="store_true",
                      help="grey datasets: Bernoulli binarization (dynamic for training, a fixed "
                           "draw for evaluation; not the static binarized-MNIST benchmark)")
    data.add_argument("--image-size", type=count(1),
                      help="folder dataset: images are cropped to their central square and resized to this (default 32)")
    data.add_argument("--channels", type=int, choices=(1, 3),
                      help="folder dataset: 1 (grey) or 3 (RGB) (default 3)")
    data.add_argument("--limit", type=count(1), help="use only the first N images" + (
        " of the training split (the validation split stays whole)" if for_training else ""))
    return data


def _add_device(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--device", default=default,
                        help=f"auto (CUDA if there is one, else the CPU), cpu, cuda, cuda:N or mps (default {default})")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the CLI's one-line form (and status 2, as argparse's)."""

    def error(self, message: str):
        self.exit(2, f"pixelrnn: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pixelrnn", description="PixelCNN, Row LSTM and Diagonal BiLSTM (PixelRNN, ICML 2016)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("architectures", help="the architectures that --model takes").set_defaults(
        run=_architectures)
    commands.add_parser("configs", help="the paper's models and their sizes").set_defaults(run=_configs)
    commands.add_parser("datasets", help="the known datasets, sources, licences").set_defaults(run=_datasets)
    demo = commands.add_parser("demo", help="the shipped Diagonal BiLSTM: NLL, samples, completions")
    demo.add_argument("--out", default="pixelrnn-demo", help="output folder")
    demo.add_argument("--checkpoint", help="another model (default: the shipped one)")
    demo.add_argument("--seed", type=int, default=0)
    _add_device(demo, "cpu")
    demo.set_defaults(run=_demo)
    card = commands.add_parser("card", help="write a run folder's model card (README.md)")
    card.add_argument("run_dir", metavar="RUN_DIR", help="run folder")
    card.add_argument("--hardware", help="where it was trained (default: this machine)")
    card.add_argument("--note", help="a status paragraph at the end (how far the run is, what is next)")
    card.add_argument("--samples", type=count(0), default=64, metavar="N",
                      help="draw N samples of the best model into samples.png (default 64; 0: none)")
    card.add_argument("--completions", type=count(0), default=0, metavar="N",
                      help="draw the paper's Figure 1 into completions.png: N validation images, the lower half "
                      "hidden, 4 completions each (default 0: none; needs the run's data)")
    card.add_argument("--data-dir", help="the run's data folder, if not where it was trained from")
    card.set_defaults(run=_card)

    data = _data_options(for_training=False)
    train = commands.add_parser("train", parents=[_data_options(for_training=True)], help="train a model",
                                description="Train a model, or with --resume continue a run: a resumed run "
                                "keeps its own model, data and options (those given must match it).")
    train.add_argument("--model", help=f"{', '.join(ARCHITECTURES)} (required for a new run)")
    train.add_argument("--out", required=True, help="run folder")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int,
                        help="train to this many epochs in all (a new run: default 1; with --resume: a new total)")
    budget.add_argument("--steps", type=int, help="train to this many steps in all (instead of --epochs)")
    train.add_argument("--batch-size", type=int,
                       help="images per step (default 16); with --resume: continue with this size")
    train.add_argument("--batch-at", type=batch_change, action="append", metavar="STEP:SIZE",
                       help="from STEP on, batch size SIZE (repeatable; with --resume: added to the run's)")
    train.add_argument("--optimizer", choices=["rmsprop", "adam"], help="default rmsprop")
    train.add_argument("--lr", type=float,
                       help="learning rate (default 1e-3); with --resume: continue at this rate")
    train.add_argument("--lr-at", type=lr_change, action="append", metavar="STEP:LR",
                       help="from STEP on, learning rate LR (repeatable; with --resume: added to the run's)")
    train.add_argument("--lr-decay", type=float, help="learning-rate factor per epoch (default 1)")
    train.add_argument("--warmup", type=count(0), metavar="STEPS",
                       help="raise the learning rate linearly over the first STEPS steps (default 0: none); "
                       "keeps RMSProp's first updates small in wide models")
    train.add_argument("--clip", type=float, help="gradient-norm clipping, 0 for none (default 1)")
    train.add_argument("--hidden", type=int, help="h (default: the paper's for the dataset)")
    train.add_argument("--layers", type=int)
    train.add_argument("--head", type=int, metavar="F",
                       help="features of the output head's hidden 1x1 layer (default: the paper's, "
                       "32 for binary data, 1024 for 256 levels)")
    train.add_argument("--precision", choices=["fp32", "bf16"],
                       help="fp32 (default), or bf16: training steps under bf16 autocast on the CPU or CUDA "
                       "(likelihoods, their sums and evaluation in float32)")
    train.add_argument("--kernel-size", type=int, metavar="K",
                       help="the PixelCNN's K x K and the Row LSTM's 1 x K kernels (odd; default 3, "
                       "the paper's); wider ones widen both models' triangular receptive field")
    train.add_argument("--connections", choices=list(CONNECTIONS),
                       help="around the blocks: residual and skip connections (both, the default), one of "
                       "them, or none: the paper's ablation (3.3)")
    train.add_argument("--dropout", type=float, metavar="P",
                       help="zero each output of a residual branch with probability P in training "
                       "(a regulariser, not in the paper; default 0)")
    train.add_argument("--init-from", metavar="CHECKPOINT",
                       help="start from this model's weights (a run folder or model file of the same "
                       "configuration; dropout may differ): fine-tuning")
    train.add_argument("--conditional", action="store_true",
                       help="class-conditional p(x | y) on the dataset's labels (mnist, fashion-mnist, cifar10, a "
                       "folder of class folders): a learned class bias in every block")
    train.add_argument("--scale-factor", type=int, metavar="F",
                       help="F > 1: a Multi-Scale PixelRNN, the image subsampled by F first (paper 3.6)")
    train.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                       help="evaluate and keep an exponential moving average of the weights with this "
                       "decay per step, e.g. 0.9995 (with --resume: starts at the resumed step)")
    train.add_argument("--ema-from", type=int, default=0, metavar="STEP",
                       help="the first step whose weights enter the average")
    train.add_argument("--seed", type=int, help="default 0")
    train.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="default 500")
    train.add_argument("--eval-every", type=int, metavar="STEPS",
                       help="default: every epoch; with --resume: from now on")
    train.add_argument("--patience", type=int, help="stop after N evaluations without improvement")
    once = train.add_mutually_exclusive_group()
    once.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    once.add_argument("--auto-resume", action="store_true",
                      help="continue the run in --out if it has a checkpoint, with these options as its own (each "
                      "must equal the run's), else start it: one command for the first start and every restart "
                      "(torchrun --max-restarts, a requeued job)")
    once.add_argument("--force", action="store_true", help="start afresh in a non-empty --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar (a line per evaluation still)")
    _add_device(train, "auto")
    train.set_defaults(run=_train)

    scoring = argparse.ArgumentParser(add_help=False, parents=[data])  # evaluate and classify
    scoring.add_argument("--checkpoint", required=True, help="run folder or model file")
    scoring.add_argument("--split", required=True, choices=["train", "valid", "test"])
    scoring.add_argument("--batch-size", type=count(1),
                         help="images per batch (default: 256 on a GPU; on the CPU as many as keep a batch's "
                              "logits near 96 MiB: 32 for CIFAR-10)")
    scoring.add_argument("--json", action="store_true", help="one JSON object on stdout")
    _add_device(scoring, "auto")

    evaluate = commands.add_parser("evaluate", parents=[scoring], help="exact NLL of a dataset split")
    evaluate.add_argument("--per-image", type=npy_path, metavar="FILE.npy",
                          help="also write each image's NLL in nats, (N,) float64, in the split's order "
                          "(a class-conditional model's: given the image's label)")
    evaluate.add_argument("--classify", action="store_true",
                          help="class-conditional models: also the likelihood classifier's accuracy")
    evaluate.add_argument("--confusion", type=png_path, metavar="FILE.png",
                          help="with --classify: the confusion matrix as a picture")
    evaluate.set_defaults(run=_evaluate)

    classify = commands.add_parser(
        "classify", parents=[scoring], help="classify a split by Bayes' rule with a class-conditional model",
        description="Predict argmax_y p(y | x) = argmax_y p(y) p(x | y) for every image of a labelled split "
        "(one pass of the model per class; the model trained with --conditional) and report the accuracy, the "
        "conditional and unconditional NLL.")
    classify.add_argument("--confusion", type=png_path, metavar="FILE.png", help="the confusion matrix as a picture")
    classify.add_argument("--predictions", type=npy_path, metavar="FILE.npy",
                          help="each image's predicted class, (N,) int64, in the split's order")
    classify.add_argument("--per-image", type=npy_path, metavar="FILE.npy",
                          help="each image's -ln p(x | y) in nats given its label, (N,) float64")
    classify.set_defaults(run=classify_command)

    generation = argparse.ArgumentParser(add_help=False)
    generation.add_argument("--checkpoint", required=True, help="run folder or model file")
    generation.add_argument("--seed", type=int, help="the same seed draws the same images (default: random)")
    generation.add_argument("--method", default="cached", choices=["cached", "naive"],
                            help="cached: one pixel's worth of work per value (default); naive: the whole "
                            "network per value (same distribution, slower)")
    generation.add_argument("--scale", type=count(1), default=3, help="PNG pixels per image pixel")
    _add_device(generation, "auto")

    sample = commands.add_parser("sample", parents=[generation], help="draw images from a model")
    sample.add_argument("--out", type=png_or_npy_path, required=True,
                        help="FILE.png: a grid, the values beside it as .npy; FILE.npy: the values only, "
                        "(N, C, H, W) uint8, streamed to disk batch by batch (any --n)")
    sample.add_argument("--batch-size", type=count(1), default=256,
                        help="images drawn at once (default 256); the images depend on seed and batch size")
    sample.add_argument("--n", type=count(1), default=64, help="images (default 64)")
    sample.add_argument("--height", type=count(1),
                        help="default: the size of the images the model was trained on (28 if unknown)")
    sample.add_argument("--width", type=count(1), help="default: the height if given, else as --height")
    sample.add_argument("--temperature", type=positive, default=1.0,
                        help="divides the logits; 1 (default) samples the model's own distribution")
    sample.add_argument("--columns", type=count(1), help="images per row of the grid (default: a square)")
    sample.add_argument("--label", type=count(0), metavar="K",
                        help="class-conditional models: draw from p(x | y = K) (default: y from the class prior)")
    sample.add_argument("--per-class", type=count(1), metavar="N",
                        help="class-conditional models: N images of each class, one row per class")
    sample.set_defaults(run=sample_command)

    complete = commands.add_parser("complete", parents=[generation, data],
                                   help="complete the bottom of dataset images (Figure 1)")
    complete.add_argument("--out", type=png_path, required=True,
                          help="PNG grid (original, occluded, completions); the values go beside it as .npy")
    complete.add_argument("--split", default="test", choices=["train", "valid", "test"])
    complete.add_argument("--known-rows", type=count(0), required=True)
    complete.add_argument("--n", type=count(1), default=8, help="images")
    complete.add_argument("--samples", type=count(1), default=4, help="completions per image")
    complete.add_argument("--label", type=count(0), metavar="K",
                          help="class-conditional models: complete every image as class K (default: its own label)")
    complete.set_defaults(run=complete_command)
    add_receptive_field_parser(commands)
    add_serve_parser(commands)
    return parser


def _describe(error: Exception) -> str:
    """One line for the user: an OS error as ``PATH: reason`` (no ``[Errno N]``)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


# Commands that compute: they take the CPU cores that other processes leave free.
_COMPUTING = {"train", "evaluate", "classify", "sample", "complete", "demo", "card"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.threads = None
        if args.command in _COMPUTING:
            from ..runtime import LoadAwareThreads, keep_freed_memory

            keep_freed_memory()  # large activations reused, not mapped and zeroed afresh each batch
            args.threads = LoadAwareThreads()
            args.threads.start()
        args.run(args)
    except BrokenPipeError:  # `pixelrnn datasets | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # 128 + SIGPIPE
    except (PixelRNNError, ValueError, OSError) as error:
        print(f"pixelrnn: error: {_describe(error)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:  # SIGINT or SIGTERM during training: a checkpoint was saved
        print(f"pixelrnn: {stop}", file=sys.stderr)
        return 128 + stop.signal_number
    except KeyboardInterrupt:
        print("pixelrnn: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
