"""argparse value types of the CLI: each turns a bad value into argparse's one-line error and exit
status 2 before any work (``--n 0``, ``--temperature nan``, ``--out grid.jpg``)."""

from __future__ import annotations

import argparse
import math


def lr_change(text: str) -> list:
    """``STEP:LR`` -> [STEP, LR] (argparse type of --lr-at; the trainer checks the values)."""
    return _change(text, float, "STEP:LR (for example 10000:3e-4)")


def batch_change(text: str) -> list:
    """``STEP:SIZE`` -> [STEP, SIZE] (argparse type of --batch-at)."""
    return _change(text, int, "STEP:SIZE (for example 50000:16)")


def count(minimum: int):
    """argparse type: a whole number >= ``minimum`` (so 0 or -3 is refused before any work)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: needs a whole number >= {minimum}")
        return value
    return parse


def _change(text: str, cast: type, form: str) -> list:
    try:
        step, value = text.split(":")
        return [int(step), cast(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {form}") from None


def positive(text: str) -> float:
    """argparse type: a finite number > 0 (so nan, inf, 0 and -1 are refused before any work)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text}: needs a finite number > 0")
    return value


def _file_name(*suffixes: str):
    """argparse type: a file name ending in one of ``suffixes`` (x.jpg or x.txt would mislabel a PNG)."""
    def parse(text: str) -> str:
        if not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"{text}: needs a file name ending in {' or '.join(suffixes)}")
        return text
    return parse


png_path = _file_name(".png")
npy_path = _file_name(".npy")
png_or_npy_path = _file_name(".png", ".npy")
