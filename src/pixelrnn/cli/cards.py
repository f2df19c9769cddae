"""Model cards for trained runs: configuration, size, command, time, hardware, NLL, curve, samples."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from ..errors import PixelRNNError
from ..files import atomic_write
from ..generation import completion_rows
from ..models.configs import parameter_count
from ..training.checkpoints import BEST, LAST, model_from_checkpoint, read_checkpoint, trained_image_size
from ..training.config import TrainConfig, option_flag
from ..training.evaluation import check_compatible
from ..visualize import image_grid, plot_curves, save_completion_grid, save_png

SAMPLES_SEED = 0
COMPLETIONS = 4  # completions per image in the card's Figure 1


# The options of a card's command, in its order (the schedules and switches follow them).
_COMMAND_OPTIONS = ("model", "dataset", "data_dir", "out", "epochs", "steps", "batch_size", "optimizer", "lr",
                    "lr_decay", "clip", "hidden", "layers", "seed", "checkpoint_every", "eval_every", "patience",
                    "limit", "scale_factor", "ema", "ema_from", "dropout", "init_from", "warmup", "kernel_size",
                    "head", "precision", "connections")


def _command(config: dict) -> str:
    defaults = {"scale_factor": 1, "ema": 0.0, "ema_from": 0, "warmup": 0, "precision": "fp32"}  # left out of the command
    processes = config.get("processes", 1)  # a distributed run: as many processes on one machine train it again
    launch = f"torchrun --standalone --nproc_per_node {processes} -m " if processes > 1 else ""
    parts = [f"{launch}pixelrnn train"]
    for key in _COMMAND_OPTIONS:
        value = config.get(key)
        if value is not None and not (key in defaults and value == defaults[key]):
            parts.append(f"{option_flag(key)} {value}")
    parts += [flag for key, flag in (("binarize", "--binarize"), ("conditional", "--conditional")) if config.get(key)]
    parts += [f"--lr-at {at}:{lr}" for at, lr in config.get("lr_changes", [])]
    parts += [f"--batch-at {at}:{size}" for at, size in config.get("batch_changes", [])]
    return " ".join(parts)


def _completions(run: Path, model, config: dict, n: int, data_dir: str | None) -> list[str]:
    """Draw the paper's Figure 1 into RUN/completions.png: the first ``n`` validation images of the
    run's dataset, the lower half hidden, 4 completions each (seed 0); the card's lines for it."""
    from .io import dataset_split

    folder = config["dataset"] == "folder"
    data = argparse.Namespace(dataset=config["dataset"], split="valid", data_dir=data_dir or config.get("data_dir"),
                              binarize=config.get("binarize", False), limit=n,
                              image_size=config.get("image_size") if folder else None,
                              channels=config.get("channels") if folder else None)
    images, levels, split = dataset_split(data, labelled=bool(model.classes))
    check_compatible(model, images, levels, f"{data.dataset} valid")
    known = images.shape[2] // 2
    rows = completion_rows(model, images.long(), known, COMPLETIONS, labels=split.labels, seed=SAMPLES_SEED)
    save_completion_grid(rows, model.levels, run / "completions.png", scale=3)
    options = (f" --data-dir {data.data_dir}" if data.data_dir else "") + (" --binarize" if data.binarize else "") + (
        f" --image-size {data.image_size} --channels {data.channels}" if folder else "")
    return [f"The paper's Figure 1 on {len(images)} validation images: each row is the original, the top "
            f"{known} rows the model is given, and {COMPLETIONS} completions of the rest"
            + (" (each given its own label)" if model.classes else "")
            + f" (`pixelrnn complete --checkpoint {run} --dataset {data.dataset}{options} --split valid "
            f"--known-rows {known} --n {n} --samples {COMPLETIONS} --seed {SAMPLES_SEED} --scale 3 --device cpu "
            f"--out {run / 'completions.png'}` draws the same ones):", "", "![completions](completions.png)", ""]


def write_card(run_dir: str | Path, hardware: str | None = None, note: str | None = None,
               samples: int = 64, completions: int = 0, data_dir: str | None = None) -> Path:
    """Write RUN_DIR/README.md from run.json, metrics.jsonl and best.safetensors (+ a status note),
    redraw RUN_DIR/curves.png with the learning-rate schedule marked, and draw ``samples`` images
    from the best model into RUN_DIR/samples.png (seed 0, the model's own distribution; 0: none)
    and, given ``completions`` > 0, that many validation images completed from their top half into
    RUN_DIR/completions.png (the data from ``data_dir``, else the run's own).
    The card's training command writes into RUN_DIR, wherever the run was first trained (a moved
    or shipped run)."""
    run = Path(run_dir)
    metrics_path = run / "metrics.jsonl"
    if not (run / BEST).is_file() or not metrics_path.is_file():
        raise PixelRNNError(f"{run}: needs {BEST} and metrics.jsonl (a run with an evaluation)")
    config = json.loads((run / "run.json").read_text())
    processes = config.get("processes", 1)  # absent from runs made before it was recorded: 1
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    # the schedule the card's history saw: changes set for steps after its last evaluation (step S
    # ran steps 0 .. S-1) are a plan, not yet part of how the run was trained
    trained = records[-1]["step"]
    config.update({key: [c for c in config.get(key, []) if c[0] < trained] for key in ("lr_changes", "batch_changes")})
    tensors, meta = read_checkpoint(run / BEST)
    model = model_from_checkpoint(run / BEST, tensors, meta)
    # redrawn with the schedule as it is now (a run's own plots show only the changes made by then)
    schedule = TrainConfig(**{key: value for key, value in config.items() if key != "processes"}).schedule_events()
    plot_curves(records, run / "curves.png", model.config.levels, schedule)
    per_class = max(1, samples // model.classes) if model.classes else 0  # one row per class
    if samples:
        height, width = trained_image_size(meta) or (config["image_size"],) * 2
        labels = torch.arange(model.classes).repeat_interleave(per_class) if per_class else None
        samples = len(labels) if per_class else samples
        drawn = model.sample(samples, height, width, labels=labels, seed=SAMPLES_SEED)
        columns = per_class or max(1, round(samples**0.5))
        # scale 3 as `pixelrnn sample`, whose command in the card then writes the same file
        save_png(image_grid(drawn, model.levels, columns), run / "samples.png", scale=3)
    best = min(records, key=lambda r: r["valid_nll_nats"])
    last = records[-1]
    if "elapsed_s" in last:
        hours = last["elapsed_s"] / 3600
    else:  # runs made before elapsed time was recorded: from the start of the run
        hours = (last["time"] - (run / "run.json").stat().st_mtime) / 3600
    hardware = hardware or f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    cfg = model.config
    given_label = " -ln p(x \\| y), given the label" if model.classes else ""  # a | escaped for the table
    resumable = ("`--resume` continues the shipped run exactly" if (run / LAST).is_file()
                 else f"its training state, {LAST}, is not shipped, so `--resume` cannot continue it")
    lines = [
        f"# {run.name}",
        "",
        f"A {cfg.architecture} (PixelRNN family) trained with `pixelrnn train` on {config['dataset']}.",
        "",
        "| | |", "| --- | --- |",
        f"| configuration | {cfg.summary()} |",
        f"| parameters | {parameter_count(model):,} stored, {parameter_count(model, effective=True):,} effective |",
        f"| training | {config['optimizer']} lr {config['lr']}"
        + (f" (linear warm-up over the first {config['warmup']} steps)" if config.get("warmup") else "")
        + "".join(f", {lr} from step {at}" for at, lr in config.get("lr_changes", []))
        + (f", weights averaged (EMA, decay {config['ema']} per step) from step {config.get('ema_from', 0)}"
           if config.get("ema") else "")
        + f", batch {config['batch_size']}"
        + "".join(f", {size} from step {at}" for at, size in config.get("batch_changes", []))
        + (f" in each of {processes} processes (a global batch of {processes} x that)" if processes > 1 else "")
        + ", "
        f"clip {config['clip']}, seed {config['seed']} |",
        f"| progress | {last['epoch']:.2f} epochs ({last['step']} steps) |",
        f"| wall time | {hours:.2f} h on {hardware} |",
        f"| best validation NLL{given_label} | **{best['valid_nll_nats']:.2f} ± {best['valid_nll_nats_stderr']:.2f} nats** "
        f"({best['valid_bits_per_dim']:.4f} bits/dim) at step {best['step']} (epoch {best['epoch']:.2f})"
        + (" of the averaged weights" if config.get("ema") and best["step"] > config.get("ema_from", 0) else "")
        + " |",
        "",
        f"Command that trains this run to its last evaluation, step {last['step']} (run from the "
        "repository root; " + resumable + "):",
        "", "```", _command({**config, "out": str(run), "epochs": None, "steps": last["step"]}), "```", "",
        "Evaluate: `pixelrnn evaluate --checkpoint " + str(run) + " --dataset " + config["dataset"]
        + (" --data-dir DIR" if config.get("data_dir") else "") + (" --binarize" if config.get("binarize") else "")
        + " --split test" + (" --classify" if model.classes else "") + "`"
        + (" (the conditional NLL -ln p(x | y), the unconditional -ln p(x) = -ln sum_y p(y) p(x | y), and the "
           "likelihood classifier's accuracy)" if model.classes else ""),
        "",
        "![training curve](curves.png)",
        "",
    ]
    if samples:
        what = (f"--per-class {per_class}" if per_class else f"--n {samples}")
        lines += [f"{samples} samples from the best model" + (", one row per class" if per_class else "")
                  + f" (`pixelrnn sample --checkpoint {run} {what} --height {height} --width {width} "
                  f"--seed {SAMPLES_SEED} --device cpu` draws the same ones):", "", "![samples](samples.png)", ""]
    if completions:
        lines += _completions(run, model, config, completions, data_dir)
    bits = model.levels > 2  # natural images: bits/dim, the field's unit, beside the nats
    lines += ["| step | epoch | train NLL (nats) | valid NLL (nats) |" + (" train bits/dim | valid bits/dim |" if bits else ""),
              "| ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if bits else "")]
    lines += [f"| {r['step']} | {r['epoch']:.2f} | {r['train_nll_nats']:.2f} | {r['valid_nll_nats']:.2f} |"
              + (f" {r['train_bits_per_dim']:.4f} | {r['valid_bits_per_dim']:.4f} |" if bits else "") for r in records]
    if note:
        lines += ["", "Status: " + note]
    target = run / "README.md"
    atomic_write(target, ("\n".join(lines) + "\n").encode())
    return target
