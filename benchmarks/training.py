"""Training speed and memory of each architecture (issue: recurrent layers near the machine's limit).

Prints, for each architecture at its binarized-MNIST configuration (28x28, binary,
7 layers h=16; the PixelCNN at the common public configuration of 15 blocks,
h=16, no skip connections) and at a CIFAR-sized one (32x32x3, 256 levels), the
images per second of a full training step (forward, backward, RMSProp update),
the peak memory, the time of one epoch of 50,000 images, and the work done:
GFLOP per image of a step (the matrix products and convolutions, forward and
backward, counted by torch.utils.flop_counter) and the TFLOP/s it runs at, so that
architectures compare per FLOP, and the operators a step dispatches (on a GPU, a
step of many small operators is bound by them rather than by its FLOPs).

On the CPU each measurement runs in its own process so that the peak resident
memory belongs to that configuration alone; on CUDA they share this process and
the peak allocated memory is reset for each.

    python benchmarks/training.py                   # everything, on CUDA if present
    python benchmarks/training.py --device cpu --batch-sizes 64 --only diagonal_bilstm
    python benchmarks/training.py --device cpu --skip-cifar --mnist-hidden 64 --batch-sizes 16
    python benchmarks/training.py --device cpu --skip-cifar --only pixelcnn --kernel-size 5
    python benchmarks/training.py --reference       # the plain autograd recurrences
    python benchmarks/training.py --scan torch      # the PyTorch scan instead of the CPU kernel
    python benchmarks/training.py --device cuda --paper-cifar --cuda-graph   # steps replayed as CUDA graphs
    python benchmarks/training.py --device cuda --paper-cifar --scan triton  # the recurrences as Triton kernels
    python benchmarks/training.py --device cpu --beside 1          # beside one process spinning on a core
    python benchmarks/training.py --device cpu --beside 1 --beside-threads 2   # beside 2-thread matrix products

``--beside N`` starts N competing processes for the whole measurement, each spinning in pure
Python (one core each), or with ``--beside-threads T`` each running T-thread matrix products,
so that the speed under load is a figure anyone can reproduce against the idle one. Each
measurement takes its threads as the command line does (``runtime.LoadAwareThreads``: the cores
that other processes leave free); ``PIXELRNN_THREADS=N`` fixes them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pixelrnn
from pixelrnn.layers import scan_kernel, scan_triton
from pixelrnn.runtime import LoadAwareThreads, cpu_name, keep_freed_memory

MNIST = {
    "pixelcnn": dict(channels=1, levels=2, hidden=16, layers=15, head=32, skip=False),
    "row_lstm": dict(channels=1, levels=2, hidden=16, layers=7, head=32),
    "diagonal_bilstm": dict(channels=1, levels=2, hidden=16, layers=7, head=32),
    "gated_pixelcnn": dict(channels=1, levels=2, hidden=16, layers=7, head=32),
}


# The paper's CIFAR-10 models (Table 3): h = 128, 1024 output features; 15 PixelCNN layers, 12
# recurrent ones (the Gated PixelCNN, not in the paper, as deep as its PixelCNN).
PAPER_CIFAR_LAYERS = {"pixelcnn": 15, "gated_pixelcnn": 15, "row_lstm": 12, "diagonal_bilstm": 12}


def cifar_options(hidden: int, layers: int, head: int) -> dict:
    return dict(channels=3, levels=256, hidden=hidden, layers=layers, head=head)


def training_step(arch: str, options: dict, size: int, batch: int, device: str = "cpu",
                  bf16: bool = False, reference: bool = False, cuda_graph: bool = False):
    """(model, step): a seeded model and one full training step (forward, backward, RMSProp) on a
    fixed random batch of ``batch`` images ``size`` x ``size``. ``cuda_graph``: the step is captured
    once as a CUDA graph and ``step`` replays it (no operator dispatched, no kernel launched from
    Python), to measure what the recurrent layers' many small operators cost on a GPU."""
    torch.manual_seed(0)
    model = pixelrnn.build_model(arch, **options).to(device).set_fused(not reference)
    optimiser = torch.optim.RMSprop(model.parameters(), lr=1e-4, capturable=cuda_graph)
    x = torch.randint(0, options["levels"], (batch, options["channels"], size, size), device=device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        # Autocast's weight cache must be off while a graph is captured.
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16, cache_enabled=not cuda_graph):
            loss = -model.log_prob(x).mean()
        loss.backward()
        optimiser.step()

    if not cuda_graph:
        return model, step
    without_host_checks(model, x)
    side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graph asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimiser.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    return model, graph.replay


def without_host_checks(model, x: torch.Tensor) -> None:
    """log_prob checks the values' range on the host, a read back from the device that a CUDA graph
    cannot capture: check ``x`` once here and let the model's later steps skip it."""
    model.check_images(x)
    model.check_images = lambda images: None


@functools.lru_cache(maxsize=None)
def _flops_per_image(arch: str, options_json: str, size: int, device: str) -> float:
    return flops_per_image(arch, json.loads(options_json), size, device)


def flops_per_image(arch: str, options: dict, size: int, device: str) -> float:
    """Floating-point operations of one training step per image: the matrix products and
    convolutions of the forward and backward passes (torch.utils.flop_counter), counted on the plain
    recurrences at batch 1 (the fused scans do the same products; the CPU kernel hides them)."""
    from torch.utils.flop_counter import FlopCounterMode

    _, step = training_step(arch, options, size, 1, device, reference=True)
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


class OperatorCount(TorchDispatchMode):
    """Counts the operators PyTorch dispatches (views included): on a GPU each costs host time and
    most launch a kernel, so a step of many small operators is bound by them, not by its FLOPs."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.kernels = 0  # the operators that are not views: on a GPU, each one a launch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        self.kernels += not func.is_view
        return func(*args, **(kwargs or {}))


def measure(arch: str, options: dict, size: int, batch: int, steps: int, device: str,
            bf16: bool, reference: bool, cuda_graph: bool = False) -> dict:
    model, step = training_step(arch, options, size, batch, device, bf16, reference, cuda_graph)
    step()  # warm-up: first-touch allocations
    with OperatorCount() as operators:  # the second warm-up step, on the path measured
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB -> MiB
    flops = _flops_per_image(arch, json.dumps(options, sort_keys=True), size, device)  # once per model
    return {"images_per_s": batch / seconds, "peak_mib": peak, "gflop_per_image": flops / 1e9,
            "operators": operators.count,
            "tflop_per_s": flops * batch / seconds / 1e12,
            "params": pixelrnn.parameter_count(model), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--only", nargs="+", choices=pixelrnn.ARCHITECTURES)
    parser.add_argument("--mnist-hidden", type=int, help="h of the MNIST models (default: 16)")
    parser.add_argument("--cifar-hidden", type=int, default=32)
    parser.add_argument("--cifar-layers", type=int, default=4)
    parser.add_argument("--cifar-head", type=int, default=256)
    parser.add_argument("--cifar-side", type=int, default=32,
                        help="image side of the CIFAR-sized setting (smaller: a quick check of the script)")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--paper-cifar", action="store_true",
                        help="the paper's CIFAR-10 sizes: h = 128, head 1024, 15 PixelCNN or 12 recurrent layers "
                             "(instead of --cifar-hidden, --cifar-layers, --cifar-head)")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--kernel-size", type=int, default=3,
                        help="the PixelCNN's K x K and the Row LSTM's 1 x K kernels (default 3)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CPU or CUDA)")
    parser.add_argument("--reference", action="store_true", help="plain autograd recurrences")
    parser.add_argument("--scan", choices=["native", "torch", "triton"], default="native",
                        help="fused scan: the compiled CPU kernel (default), PyTorch operators, or the Triton "
                             "kernels (CUDA; interpreted on a machine without CUDA, to check them)")
    parser.add_argument("--beside", type=int, default=0, metavar="N",
                        help="measure beside N competing processes (default 0: the machine as it is)")
    parser.add_argument("--beside-threads", type=int, default=0, metavar="T",
                        help="each competing process runs T-thread matrix products (default: spins on one core)")
    parser.add_argument("--in-process", action="store_true",
                        help="every measurement in this process (always on CUDA, whose peak memory is reset "
                             "for each; on the CPU the peak is then the process's so far)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="capture each training step once as a CUDA graph and time its replays (CUDA "
                             "only): what the step costs without dispatching and launching its operators")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cuda_graph and args.device != "cuda":
        parser.error("--cuda-graph needs --device cuda")

    if args.worker:  # one measurement, in this process
        keep_freed_memory()
        LoadAwareThreads().start(window=0.5)  # as the CLI: PIXELRNN_THREADS=N fixes the count
        job = json.loads(args.worker)
        print(json.dumps(measure(**job)))
        return

    archs = args.only or list(pixelrnn.ARCHITECTURES)
    fixed = [a for a in archs if not pixelrnn.ARCHITECTURES[a].uses_kernel_size]
    if args.kernel_size != 3 and fixed:
        parser.error(f"--kernel-size: the kernels of {', '.join(fixed)} are fixed; leave them out with --only")
    kernel = {"kernel_size": args.kernel_size} if args.kernel_size != 3 else {}
    mnist = {a: {**o, "hidden": args.mnist_hidden or o["hidden"], **kernel} for a, o in MNIST.items()}
    settings = [] if args.skip_mnist else [
        (f"mnist 28x28x1 L=2 h={args.mnist_hidden or 16} k={args.kernel_size}", 28, mnist)]
    if args.paper_cifar and not args.skip_cifar:
        paper = {a: {**cifar_options(128, PAPER_CIFAR_LAYERS[a], 1024), **kernel} for a in archs}
        settings.append(("cifar 32x32x3 L=256 h=128 paper's layers", 32, paper))
    elif not args.skip_cifar:
        cifar = cifar_options(args.cifar_hidden, args.cifar_layers, args.cifar_head)
        side = args.cifar_side
        settings.append((f"cifar {side}x{side}x3 L=256 h={args.cifar_hidden} layers={args.cifar_layers}",
                         side, {a: {**cifar, **kernel} for a in archs}))
    if args.scan == "triton" and not scan_triton.available():
        parser.error("--scan triton: Triton is not installed (pip install triton)")
    if args.scan == "triton" and args.device == "cpu" and not scan_triton.interpreter_asked():
        parser.error("--scan triton runs on CUDA; on a CPU only in Triton's interpreter, to check it: "
                     "TRITON_INTERPRET=1")
    os.environ["PIXELRNN_NATIVE"] = "1" if args.scan == "native" else "0"  # the worker processes
    os.environ["PIXELRNN_SCAN"] = args.scan
    scan_kernel.set_enabled(args.scan == "native")  # this one (--in-process; CUDA)
    scan_triton.set_enabled(args.scan == "triton")
    path = "reference" if args.reference else "fused"
    if not args.reference and args.device == "cpu":
        native = args.scan == "native" and scan_kernel.load() is not None  # build it before timing
        path += ", CPU scan " + (f"compiled kernel for h <= {scan_kernel.NATIVE_MAX_HIDDEN}, else PyTorch"
                                 if native else "Triton, interpreted" if args.scan == "triton" else "PyTorch")
    elif not args.reference:
        path += ", scan " + ("Triton kernels" if args.scan == "triton" else "PyTorch")
    path += ", one CUDA graph per step" if args.cuda_graph else ""
    print(f"{cpu_name()}; device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"bf16={args.bf16} path={path}")
    print(f"{'setting':42} {'model':16} {'batch':>5} {'params':>9} {'img/s':>8} "
          f"{'peak MiB':>9} {'epoch (50k)':>12} {'GFLOP/img':>10} {'TFLOP/s':>8} {'ops/step':>9}")
    competitors = [competitor(args.beside_threads) for _ in range(args.beside)]
    try:
        run_settings(args, archs, settings)
    finally:
        for process in competitors:
            process.kill()


def competitor(threads: int) -> subprocess.Popen:
    """A process that keeps the CPU busy: pure-Python spinning (one core), or T-thread matrix
    products (as a second training or evaluation job would)."""
    if threads:
        code = ("import torch; torch.set_num_threads(%d); a = torch.randn(1024, 1024)\n"
                "while True: a @ a" % threads)
    else:
        code = "while True: pass"
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads))}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def run_settings(args, archs, settings) -> None:
    if args.beside:
        print(f"beside {args.beside} competing process(es), "
              + (f"{args.beside_threads}-thread matrix products each" if args.beside_threads else "spinning"))
    for label, size, table in settings:
        for arch in archs:
            for batch in args.batch_sizes:
                job = dict(arch=arch, options=table[arch], size=size, batch=batch,
                           steps=args.steps, device=args.device, bf16=args.bf16,
                           reference=args.reference, cuda_graph=args.cuda_graph)
                if args.in_process or args.device == "cuda":
                    result = measure(**job)
                else:
                    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                                         capture_output=True, text=True, check=True)
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                epoch_min = 50_000 / result["images_per_s"] / 60
                print(f"{label:42} {arch:16} {batch:>5} {result['params']:>9,} "
                      f"{result['images_per_s']:>8.1f} {result['peak_mib']:>9.0f} "
                      f"{epoch_min:>9.1f} min {result['gflop_per_image']:>10.2f} "
                      f"{result['tflop_per_s']:>8.3f} {result['operators']:>9,}  {result['threads']} thread(s)",
                      flush=True)


if __name__ == "__main__":
    main()
