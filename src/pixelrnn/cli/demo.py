"""``pixelrnn demo``: the shipped Diagonal BiLSTM on the embedded digits, offline, in seconds.

Writes into the output folder: ``samples.png`` (64 samples), ``completions.png``
(test digits with the top half kept: original, occluded, 4 completions),
``report.md`` and ``report.html`` with the exact NLL and the pictures.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import PixelRNNError
from ..files import atomic_write, writable_folder
from ..generation import completion_rows
from ..training.checkpoints import load_model_with_meta, resolve_model_path
from ..training.evaluation import check_compatible, evaluate
from ..visualize import image_grid, save_completion_grid, save_png

# The shipped checkpoints/binarized-mnist-diagonal-bilstm/best.safetensors: in a checkout this is a
# link to it, and a wheel holds a copy (package data), so the demo runs without the repository too.
SHIPPED_MODEL = Path(__file__).parent.parent / "shipped" / "binarized-mnist-diagonal-bilstm.safetensors"


def run_demo(out: str | Path, checkpoint: str | Path | None = None, seed: int = 0,
             device: str | torch.device = "cpu") -> dict:
    """Evaluate, sample and complete; returns the figures and the files written."""
    started = time.perf_counter()
    path = Path(checkpoint) if checkpoint is not None else SHIPPED_MODEL.resolve()
    if not path.exists():
        raise PixelRNNError(f"no model at {path}; pass --checkpoint (a run folder or model file)")
    path = resolve_model_path(path)
    model, meta = load_model_with_meta(path, device)
    info = meta.get("info", {})
    out = writable_folder(out)

    digits = load_dataset("digits", "test").long()
    check_compatible(model, digits, 2, "the embedded digits")
    report = evaluate(model, digits, batch_size=250)

    samples = model.sample(64, 28, 28, seed=seed)
    save_png(image_grid(samples, model.levels, columns=8), out / "samples.png", scale=3)

    rows = completion_rows(model, digits[:8], 14, 4, seed=seed)
    save_completion_grid(rows, model.levels, out / "completions.png", scale=3)

    figures = {
        "checkpoint": str(path), "architecture": model.config.architecture,
        "model": model.config.summary(),
        "digits_test_nll_nats": report.nll_nats, "digits_test_nll_nats_stderr": report.nll_nats_stderr,
        "digits_test_bits_per_dim": report.bits_per_dim, "images": report.images,
        "training_valid_nll_nats": info.get("valid_nll_nats"), "training_step": info.get("step"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    _write_reports(out, figures)
    return figures


def _write_reports(out: Path, f: dict) -> None:
    valid = (f"{f['training_valid_nll_nats']:.2f} nats on the binarized-MNIST validation split "
             f"(step {f['training_step']})" if f["training_valid_nll_nats"] is not None else "not recorded")
    lines = [
        "# pixelrnn demo",
        "",
        f"Model: {f['model']} (`{f['checkpoint']}`).",
        f"Its selection score during training: {valid}.",
        "",
        f"Exact NLL on the {f['images']} embedded test digits: **{f['digits_test_nll_nats']:.2f} "
        f"± {f['digits_test_nll_nats_stderr']:.2f} nats per image** "
        f"({f['digits_test_bits_per_dim']:.4f} bits/dim). These digits are MNIST test images "
        "binarized by one fixed random draw, not the Salakhutdinov & Murray test file, so the "
        "figure is close to, but not the same as, the paper's benchmark.",
        "",
        "## 64 samples", "", "![samples](samples.png)", "",
        "## Completions", "",
        "Each row: the original digit, the top half it is given, four completions.", "",
        "![completions](completions.png)", "",
        f"Made in {f['seconds']} s.", "",
    ]
    atomic_write(out / "report.md", "\n".join(lines).encode())
    atomic_write(out / "report.html", _markdown_to_html(lines).encode())
    atomic_write(out / "figures.json", json.dumps(f, indent=2).encode())


def _markdown_to_html(lines: list[str]) -> str:
    """The few Markdown forms the report uses: headings, images, paragraphs, bold."""
    body = []
    for line in lines:
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:-1].split("](")
            body.append(f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">')
        elif line:
            text = html.escape(line).replace("`", "")
            while text.count("**") >= 2:
                text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
            body.append(f"<p>{text}</p>")
    return "<!doctype html>\n<meta charset=utf-8>\n<title>pixelrnn demo</title>\n" + "\n".join(body) + "\n"
