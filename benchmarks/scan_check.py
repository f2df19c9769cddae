"""The Triton scan against the PyTorch scan at a chosen size: largest differences, and times.

Runs one LSTM scan (paper sections 3.1, 3.2) forward and backward with both step-loop
implementations on the same random gates, weights, initial state and output gradient, and
prints, for the output and each gradient, the largest absolute difference beside the largest
value. On CUDA the Triton kernels are compiled (float32 by default); on a machine without CUDA
they run in Triton's interpreter (set ``TRITON_INTERPRET=1``; minutes at the paper's size),
which is how they were checked at that size before a GPU was at hand.

    TRITON_INTERPRET=1 python benchmarks/scan_check.py --dtype float64 --modes rows   # the paper's Row LSTM size
    TRITON_INTERPRET=1 python benchmarks/scan_check.py --dtype float64 --modes diagonals --batch 1
    python benchmarks/scan_check.py --device cuda --batch 16 --repeats 3               # compiled, float32

It exits 1 if a difference is beyond float rounding (1e-4 of the largest value in float32, 1e-10
in float64).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from pixelrnn.layers import scan_triton
from pixelrnn.layers.lstm_scan import ScanPlan, TorchSteps, _LSTMScan

PLANS = {"rows": dict(offsets=(-1, 0, 1), mirrored=(False,)),  # the Row LSTM's 1 x 3 state-to-state
         "diagonals": dict(offsets=(0, -1), mirrored=(False, True))}  # the Diagonal BiLSTM, both ways


def scan(plan: ScanPlan, inputs: list[torch.Tensor], grad_out: torch.Tensor, steps) -> tuple[list, float]:
    """(output and the four input gradients, seconds) with ``steps`` as the step loops."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    if grad_out.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = _LSTMScan.apply(*leaves, plan, steps)
    results = [out.detach(), *torch.autograd.grad(out, leaves, grad_out)]
    if grad_out.is_cuda:
        torch.cuda.synchronize()
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=list(PLANS), default=list(PLANS),
                        help="the scans to check (default: rows, the Row LSTM's, and diagonals)")
    parser.add_argument("--size", type=int, default=32, help="maps size x size (default 32: CIFAR-10)")
    parser.add_argument("--hidden", type=int, default=128, help="h (default 128: the paper's CIFAR-10 models)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1, help="time each this many times (the first compiles)")
    args = parser.parse_args()
    if not scan_triton.available():
        sys.exit("scan_check.py: Triton is not installed (pip install triton)")
    if args.device == "cpu" and not scan_triton.interpreter_asked():
        sys.exit("scan_check.py: on a CPU the Triton kernels run only in Triton's interpreter: TRITON_INTERPRET=1")

    failed = False
    for mode in args.modes:
        failed |= not check(ScanPlan(mode, args.size, args.size, **PLANS[mode]), args)
    sys.exit(1 if failed else 0)


def check(plan: ScanPlan, args) -> bool:
    """Prints one scan's times and differences; whether they are within float rounding (1e-4 of
    the largest value in float32, 1e-10 in float64)."""
    d, k, h = len(plan.mirrored), len(plan.offsets), args.hidden
    torch.manual_seed(0)
    options = dict(dtype=getattr(torch, args.dtype), device=args.device)
    inputs = [torch.randn(args.size, args.size, args.batch, d, 4 * h, **options),
              torch.randn(d, k * h, 4 * h, **options) / h**0.5,
              torch.randn(d, h, **options), torch.randn(d, h, **options)]
    grad_out = torch.randn(args.size, args.size, args.batch, d, h, **options)
    print(f"{plan.mode} scan, {args.size}x{args.size} maps, h={h}, batch {args.batch}, {args.dtype} on {args.device}")
    for name, steps in (("pytorch", TorchSteps), ("triton", scan_triton.TritonSteps)):
        times = []
        for _ in range(args.repeats):
            results, seconds = scan(plan, inputs, grad_out, steps)
            times.append(seconds)
        print(f"  {name:8} forward and backward: {' '.join(f'{t * 1e3:.1f}' for t in times)} ms")
        if name == "pytorch":
            expected = results
    tolerance = 1e-4 if args.dtype == "float32" else 1e-10
    within = True
    for name, got, want in zip(["output", "gates' grad", "weight grad", "h0 grad", "c0 grad"], results, expected):
        difference, largest = (got - want).abs().max().item(), want.abs().max().item()
        within &= difference <= tolerance * max(largest, 1.0)
        print(f"  {name:12} largest difference {difference:.2e}   largest value {largest:.2e}")
    return within

if __name__ == "__main__":
    main()
