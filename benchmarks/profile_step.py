"""Where a training step's time goes: torch.profiler over a few steps, grouped by kind of work.

Same model, data and step as ``benchmarks/training.py`` (forward, backward, RMSProp update),
one configuration at a time; prints the step's share per group (recurrent scan, convolutions,
matrix products, the softmax and loss, the optimiser, elementwise work, the rest) and the top
operators by their own time. Threads as the command line takes them (``PIXELRNN_THREADS``).

    python benchmarks/profile_step.py --arch row_lstm --batch 64
    python benchmarks/profile_step.py --arch diagonal_bilstm --batch 64 --scan torch
    PIXELRNN_NATIVE_MARCH=x86-64-v3 python benchmarks/profile_step.py --arch row_lstm   # the AVX2 build
    python benchmarks/profile_step.py --arch row_lstm --cifar --hidden 32 --layers 6 --batch 16
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile

import pixelrnn
from pixelrnn.layers import scan_kernel
from pixelrnn.runtime import LoadAwareThreads

from training import MNIST, cifar_options, training_step

# Operator name fragments -> group, first match wins (names as torch.profiler reports them).
GROUPS = [
    ("recurrent scan", ("LSTMScan",)),  # the autograd Function, forward and backward
    ("convolutions", ("conv", "mkldnn")),
    ("matrix products", ("mm", "matmul", "linear", "bmm", "einsum")),
    ("softmax and loss", ("softmax", "nll", "gather", "logsumexp", "cross_entropy")),
    ("optimiser", ("Optimizer", "rmsprop", "_foreach", "addcdiv", "sqrt")),
    ("copies and layout", ("copy_", "contiguous", "permute", "clone", "cat", "stack", "pad", "to_")),
    ("elementwise", ("add", "mul", "sigmoid", "tanh", "relu", "div", "sub", "fill", "zero", "where", "exp")),
]


def group_of(name: str) -> str:
    lowered = name.lower()
    return next((group for group, keys in GROUPS if any(k.lower() in lowered for k in keys)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="row_lstm", choices=pixelrnn.ARCHITECTURES)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cifar", action="store_true", help="32x32x3, 256 levels (default: MNIST 28x28 binary)")
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--layers", type=int, default=4, help="CIFAR layers (default 4)")
    parser.add_argument("--scan", choices=["native", "torch"], default="native")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    scan_kernel.set_enabled(args.scan == "native")
    if args.scan == "native":
        scan_kernel.load()  # build before timing
    LoadAwareThreads().start(window=0.5)
    if args.cifar:
        options, size = cifar_options(args.hidden or 32, args.layers, 256), 32
    else:
        options, size = dict(MNIST[args.arch], **({"hidden": args.hidden} if args.hidden else {})), 28
    _, step = training_step(args.arch, options, size, args.batch)
    step()
    step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    wall_ms = (time.perf_counter() - start) / args.steps * 1e3
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events) / args.steps
    grouped: dict[str, float] = {}
    for event in events:
        group = group_of(event.key)
        grouped[group] = grouped.get(group, 0.0) + event.self_cpu_time_total / args.steps

    march = os.environ.get("PIXELRNN_NATIVE_MARCH", "native") if args.scan == "native" else "-"
    print(f"{args.arch} {'cifar 32x32x3' if args.cifar else 'mnist 28x28x1'} {options} batch {args.batch}, "
          f"scan {args.scan} (march {march}), {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"step {wall_ms:.1f} ms wall under the profiler; {total_us / 1e3:.1f} ms in recorded operators' own time")
    print(f"{'group':20} {'ms/step':>8} {'share':>6}")
    for group, us in sorted(grouped.items(), key=lambda kv: -kv[1]):
        print(f"{group:20} {us / 1e3:8.1f} {us / total_us:6.1%}")
    print(f"\n{'operator (own time)':44} {'ms/step':>8} {'calls/step':>10} {'group':>18}")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"{event.key[:44]:44} {event.self_cpu_time_total / args.steps / 1e3:8.1f} "
              f"{event.count / args.steps:10.0f} {group_of(event.key):>18}")


if __name__ == "__main__":
    main()
