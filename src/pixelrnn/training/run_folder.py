"""The evaluation record of a run folder: ``metrics.jsonl`` (one JSON object per evaluation)
and ``curves.png``, its plot (the folder also holds ``run.json``, ``last.safetensors`` and
``best.safetensors``; see :mod:`pixelrnn.training.trainer`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write
from ..visualize import plot_curves

# What a run writes before its first checkpoint: a folder holding only these is a run that never
# saved a step (``--auto-resume`` starts it again).
BEFORE_FIRST_CHECKPOINT = {"run.json", "metrics.jsonl", "curves.png"}


def never_saved_a_step(out: Path) -> bool:
    """Whether ``out`` is absent or holds nothing but what a run writes before its first checkpoint."""
    return not out.is_dir() or all(entry.name in BEFORE_FIRST_CHECKPOINT for entry in out.iterdir())


def append_metrics(out: Path, record: dict, levels: int, events: list) -> None:
    """Add one evaluation to ``out/metrics.jsonl`` and redraw ``out/curves.png`` (with the
    schedule's ``events`` marked)."""
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    plot_curves(records, out / "curves.png", levels, events)


def truncate_metrics(out: Path, step: int) -> None:
    """Drop the evaluations logged after ``step`` (those of steps a resumed run will redo)."""
    path = out / "metrics.jsonl"
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write(path, "".join(line + "\n" for line in kept).encode())
