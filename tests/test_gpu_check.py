"""benchmarks/gpu_check.sh, the one prepared GPU run, works end to end: a session lent a GPU has
minutes of it, too few to debug the script there. ``--smoke`` runs every step on the CPU at tiny
sizes, the CPU standing in for the GPU in tests/test_devices.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import load_benchmark
from torch.utils._python_dispatch import TorchDispatchMode

import pixelrnn
from pixelrnn.layers import scan_kernel

ROOT = Path(__file__).resolve().parents[1]
# tests/test_devices.py's tests that need CUDA itself (graph capture), which the CPU cannot stand in for.
CUDA_GRAPH_TESTS = ["pixelcnn", "row_lstm", "diagonal_bilstm"]
STEPS = ["tests", "train-fp32", "train-bf16", "train-graph", "scan-triton", "train-triton", "train-torchrun",
         "sampling"]


def test_every_step_of_the_gpu_check_runs_on_the_cpu(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    report = (out / "gpu_check.md").read_text()
    for step in STEPS:
        assert re.search(rf"^\| {step} \| 0 \| \d+ \|$", report, re.M), f"step {step} failed:\n{report}"
        assert (out / f"{step}.log").is_file()
    # None skipped but the CUDA graph tests: the CPU stood in for the GPU everywhere else.
    summary = re.search(r"^\d+ passed(?:, (\d+) skipped)? in ", (out / "tests.log").read_text(), re.M)
    assert summary and int(summary[1] or 0) == len(CUDA_GRAPH_TESTS), (out / "tests.log").read_text()
    for precision in ("fp32", "bf16"):
        table = (out / f"train-{precision}.log").read_text()
        operators = {}
        for arch in pixelrnn.ARCHITECTURES:  # every architecture, with its FLOP count, rate and operators
            row = re.search(rf"cifar .* {arch} +2 .* min +\d+\.\d+ +\d+\.\d+ +([\d,]+) ", table)
            assert row, table
            operators[arch] = int(row[1].replace(",", ""))
        # the GPU's path: the recurrences on the PyTorch scan, operators for every step, so more of them
        # where there are more steps (the Diagonal BiLSTM's 2n - 1 diagonals, the Row LSTM's n rows)
        assert operators["diagonal_bilstm"] > operators["row_lstm"] > 2 * operators["pixelcnn"], table
    graph = (out / "train-graph.log").read_text()  # on a GPU its steps are CUDA graph replays
    assert all(re.search(rf"cifar .* {arch} +2 ", graph) for arch in ("pixelcnn", "row_lstm", "diagonal_bilstm")), graph
    scan = (out / "scan-triton.log").read_text()  # the Triton scan alone against the PyTorch one, both plans
    assert len(re.findall(r"^  triton +forward and backward: [\d.]+ ms$", scan, re.M)) == 2, scan
    triton = (out / "train-triton.log").read_text()  # the recurrences on the Triton kernels, interpreted here
    assert "scan Triton" in triton, triton
    for arch in ("row_lstm", "diagonal_bilstm"):
        row = re.search(rf"cifar .* {arch} +1 .* ([\d,]+) +\d+ thread", triton)
        assert row and int(row[1].replace(",", "")) < 1000, triton  # a few kernels a layer, not one a cell
    assert '"valid_bits_per_dim"' in report  # the torchrun run evaluated
    sampling = (out / "sampling.log").read_text()
    assert all(re.search(rf"cifar .* {arch} .*x$", sampling, re.M) for arch in pixelrnn.ARCHITECTURES), sampling
    assert sorted(p.name for p in out.iterdir()) == sorted(["gpu_check.md", *(f"{s}.log" for s in STEPS)])


def test_the_gpu_check_refuses_an_unknown_option(tmp_path):
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--fast"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OUT": str(tmp_path)})
    assert result.returncode == 2 and result.stderr.strip() == "usage: bash benchmarks/gpu_check.sh [--smoke]"


def test_the_checkout_stays_small_enough_to_copy_to_a_gpu_machine():
    """The GPU machine gets a copy of the working tree, at most 64 MiB: the files git would copy
    (tracked, and untracked but not ignored) stay under 60 MiB. Training states of finished runs
    belong in releases, not in the tree."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    paths = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    sizes = sorted(((p.stat().st_size, p) for p in paths if p.is_file()), reverse=True)
    total = sum(size for size, _ in sizes)
    largest = ", ".join(f"{p.relative_to(ROOT)} ({size / 2**20:.1f} MiB)" for size, p in sizes[:3])
    assert total < 60 * 2**20, f"the checkout holds {total / 2**20:.1f} MiB; largest: {largest}"


class _HostReads(TorchDispatchMode):
    """Records the operators that read a tensor's values back to the host (``.item()``, ``bool``,
    ``torch.equal``, data-dependent shapes): a CUDA graph cannot capture them."""

    READS = ("_local_scalar_dense", "equal", "is_nonzero", "nonzero", "unique", "masked_select")

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.READS:
            self.found.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("arch", pixelrnn.ARCHITECTURES)
def test_a_training_step_reads_nothing_back_so_a_cuda_graph_can_capture_it(arch):
    """What `gpu_check.sh`'s train-graph step captures (forward and backward on the PyTorch scan, the
    range check done once before) never reads a value back to the host: checked here on the CPU, so
    that the one GPU run does not find it out. The optimiser is PyTorch's, `capturable=True`."""
    training = load_benchmark("training")
    model = pixelrnn.build_model(arch, channels=3, levels=16, hidden=8, layers=2, head=16)
    x = torch.randint(0, 16, (4, 3, 8, 8))
    was_enabled = scan_kernel.is_enabled()
    scan_kernel.set_enabled(False)  # the GPU's scan
    try:
        (-model.log_prob(x).mean()).backward()  # warm-up: the scans' index tensors are built once
        training.without_host_checks(model, x)
        with _HostReads() as reads:
            (-model.log_prob(x).mean()).backward()
    finally:
        scan_kernel.set_enabled(was_enabled)
    assert reads.found == []
    with _HostReads() as reads:  # and the mode sees a host read where there is one: the range check
        pixelrnn.build_model(arch, channels=3, levels=16, hidden=8, layers=2, head=16).log_prob(x)
    assert reads.found
