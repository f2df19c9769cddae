"""Sampling speed: the cached sampler against the naive one (issue: generation).

For each architecture at its MNIST paper configuration (28x28, binary, 7 layers
h=16; PixelCNN 15 blocks) and at a CIFAR-sized one (32x32x3, 256 levels, small h),
prints seconds per image for both methods at batch 1, 16 and 64, and the ratio.

The naive sampler reruns the whole network for each of the H*W*C values, so its
cost per value is constant; to keep the run short it is timed on the first
``--naive-values`` values and scaled to the whole image (``--naive-values 0``
times the whole image). The cached sampler always generates whole images.

    python benchmarks/sampling.py
    python benchmarks/sampling.py --only diagonal_bilstm --batch-sizes 64
"""

from __future__ import annotations

import argparse
import time

import torch

import pixelrnn
from pixelrnn.runtime import cpu_name, keep_freed_memory

MNIST = {
    "pixelcnn": dict(channels=1, levels=2, hidden=16, layers=15, head=32),
    "row_lstm": dict(channels=1, levels=2, hidden=16, layers=7, head=32),
    "diagonal_bilstm": dict(channels=1, levels=2, hidden=16, layers=7, head=32),
    "gated_pixelcnn": dict(channels=1, levels=2, hidden=16, layers=7, head=32),
}


def seconds_per_image(model, batch, size, method, values=0) -> float:
    """Wall time per image of sampling a batch (the first `values` values only, scaled up)."""
    c = model.channels
    total = size * size * c
    known = 0
    if values and values < total:
        # Pretend all but the last `values` values are known: rows are the unit of completion.
        rows = -(-values // (size * c))
        known = size - rows
    images = torch.zeros(batch, c, size, size, dtype=torch.long)
    cuda = next(model.parameters()).is_cuda
    start = time.perf_counter()
    model.complete(images, known, seed=0, method=method)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    done = (size - known) * size * c
    return elapsed * total / done / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--only", nargs="+", choices=pixelrnn.ARCHITECTURES)
    parser.add_argument("--naive-values", type=int, default=56, help="0: time whole images")
    parser.add_argument("--cifar-hidden", type=int, default=16)
    parser.add_argument("--cifar-layers", type=int, default=4)
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--cifar-head", type=int, default=256)
    parser.add_argument("--cifar-side", type=int, default=32,
                        help="image side of the CIFAR-sized setting (smaller: a quick check of the script)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    keep_freed_memory()
    torch.manual_seed(0)
    archs = args.only or list(pixelrnn.ARCHITECTURES)
    settings = [] if args.skip_mnist else [("mnist 28x28x1 L=2", 28, MNIST)]
    if not args.skip_cifar:
        cifar = dict(channels=3, levels=256, hidden=args.cifar_hidden, layers=args.cifar_layers, head=args.cifar_head)
        side = args.cifar_side
        settings.append((f"cifar {side}x{side}x3 L=256 h={args.cifar_hidden} layers={args.cifar_layers}", side,
                         {a: cifar for a in archs}))
    print(f"{cpu_name()}; torch={torch.__version__} threads={torch.get_num_threads()} device={args.device}; "
          f"naive timed on {args.naive_values or 'all'} values per image and scaled")
    print(f"{'setting':40} {'model':16} {'batch':>5} {'naive s/img':>12} {'cached s/img':>13} {'speed-up':>9}")
    for label, size, table in settings:
        for arch in archs:
            model = pixelrnn.build_model(arch, **table[arch]).to(args.device).eval()
            # Warm-up, untimed: one-time costs (loading the compiled kernel, first allocations)
            # would otherwise be scaled up with the naive sampler's partial timing.
            seconds_per_image(model, 1, size, "naive", size * model.channels)
            for batch in args.batch_sizes:
                naive = seconds_per_image(model, batch, size, "naive", args.naive_values)
                cached = seconds_per_image(model, batch, size, "cached")
                print(f"{label:40} {arch:16} {batch:>5} {naive:>12.4f} {cached:>13.4f} "
                      f"{naive / cached:>8.0f}x", flush=True)


if __name__ == "__main__":
    main()
