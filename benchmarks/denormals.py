"""What subnormal floats cost a CPU training step on trained weights (pixelrnn.denormals).

Loads trained models (default: the shipped CIFAR-10 runs' last checkpoints) and times the
gradient of a training step (forward and backward, where the time goes; the update is left
out so that every batch meets the same weights) on real CIFAR-10 images, each batch with
subnormals kept (IEEE) and flushed to zero in every thread, in turn in this one process, so
that the machine's drift falls on both alike. Fresh models (benchmarks/training.py) make no
subnormals and show no difference: the slow-down comes with training.

    python benchmarks/denormals.py --data-dir ../shared/data/cifar10
    python benchmarks/denormals.py --data-dir ../shared/data/cifar10 --threads 1 2 --batches 16
    python benchmarks/denormals.py --checkpoint RUN/last.safetensors --data-dir DIR
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from pixelrnn import denormals
from pixelrnn.data.datasets import load_dataset
from pixelrnn.runtime import cpu_name
from pixelrnn.training import checkpoints as ckpt

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "checkpoints" / name / "last.safetensors"
           for name in ("cifar10-pixelcnn-h32-k5", "cifar10-row-lstm-h32")]


def gradient_timer(path: Path, images: torch.Tensor, batch: int):
    """A function that computes the training loss's gradient on batch ``k`` at the checkpoint's
    weights (forward and backward, no update, so every call sees the same model) in seconds."""
    model = ckpt.load_model(path)

    def gradient(k: int) -> float:
        x = images[k * batch : (k + 1) * batch].long()
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        (-model.log_prob(x).mean()).backward()
        return time.perf_counter() - start

    return gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, nargs="+", default=SHIPPED, help="training checkpoints")
    parser.add_argument("--data-dir", required=True, help="the CIFAR-10 folder (cifar-10-batches-py)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, default=8, help="batches, each timed kept and flushed")
    args = parser.parse_args()

    images = load_dataset("cifar10", "train", args.data_dir)[: args.batch * (args.batches + 1)]
    print(f"{cpu_name()}; batch {args.batch}; median seconds of a training step's forward and backward "
          f"over {args.batches} batches")
    print(f"{'checkpoint':<28} {'threads':>7} {'kept (IEEE)':>12} {'flushed':>9} {'kept / flushed':>15}")
    for path in args.checkpoint:
        gradient = gradient_timer(path, images, args.batch)
        for threads in args.threads:
            torch.set_num_threads(threads)
            gradient(args.batches)  # warm-up, on a batch not timed
            times = {True: [], False: []}
            for k in range(args.batches):
                for flush in (k % 2 == 0, k % 2 == 1):  # each batch both ways, first one then the other
                    denormals.flush_denormals(flush)
                    times[flush].append(gradient(k))
            denormals.flush_denormals(False)
            kept, flushed = statistics.median(times[False]), statistics.median(times[True])
            print(f"{path.parent.name:<28} {threads:>7} {kept:>12.3f} {flushed:>9.3f} {kept / flushed:>15.2f}")


if __name__ == "__main__":
    main()
