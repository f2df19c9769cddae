"""Subnormal floats are flushed to zero in every thread PyTorch computes in while a CPU run trains
(pixelrnn.denormals), the setting before is restored afterwards, and flushing changes no
likelihood and no gradient of a trained model beyond 1e-30."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pixelrnn import denormals
from pixelrnn.training import checkpoints as ckpt
from pixelrnn.training.trainer import Trainer
from test_training import TRAIN, pixelrnn_cli_here

ROOT = Path(__file__).resolve().parents[1]
SUBNORMALS = torch.full((1 << 20,), 1e-39)  # split between the threads by any product


def kept() -> int:
    """How many subnormals a product across PyTorch's threads keeps (0 where every thread flushes)."""
    return int(((SUBNORMALS * 1.0) != 0).sum())


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    kept()  # the OpenMP team exists before anything is set
    yield
    denormals.flush_denormals(False)
    torch.set_num_threads(before)


needs_openmp = pytest.mark.skipif(denormals._openmp_parallel() is None,
                                  reason="PyTorch's parallel backend here is not OpenMP")


@needs_openmp
def test_every_thread_flushes_not_just_the_calling_one(two_threads):
    assert kept() == SUBNORMALS.numel()
    torch.set_flush_denormal(True)  # PyTorch's own call sets the calling thread only
    assert 0 < kept() < SUBNORMALS.numel()
    assert denormals.flush_denormals(True)
    assert kept() == 0 and denormals.is_flushed()
    torch.set_num_threads(3)  # threads started later take the flag from the thread that starts them
    assert kept() == 0
    assert denormals.flush_denormals(False)
    assert kept() == SUBNORMALS.numel() and not denormals.is_flushed()


@needs_openmp
def test_threads_beyond_todays_count_are_set_too(two_threads):
    torch.set_num_threads(1)  # the second thread waits in the OpenMP pool, unused
    denormals.flush_denormals(True)
    torch.set_num_threads(2)  # ... and is used again
    assert kept() == 0


def test_flushed_restores_the_setting_it_found(two_threads):
    with denormals.flushed():
        assert kept() == 0
    assert kept() == SUBNORMALS.numel()
    denormals.flush_denormals(True)
    with pytest.raises(ZeroDivisionError):
        with denormals.flushed(False):
            assert kept() == SUBNORMALS.numel()
            1 / 0
    assert kept() == 0


def record_flushing(monkeypatch) -> list[bool]:
    """Whether each training step of the next run ran with every thread flushing."""
    seen, step = [], Trainer._step
    monkeypatch.setattr(Trainer, "_step", lambda self, *args: (seen.append(kept() == 0), step(self, *args))[1])
    return seen


def test_a_cpu_run_trains_flushed_and_restores_the_process(two_threads, tmp_path, monkeypatch):
    seen = record_flushing(monkeypatch)
    short = [*TRAIN, "--steps", "3", "--eval-every", "3"]  # the later --steps wins
    result = pixelrnn_cli_here(*short, "--out", tmp_path / "flushed")
    assert result.returncode == 0, result.stderr
    assert seen == [True] * 3 and kept() == SUBNORMALS.numel()
    monkeypatch.setenv("PIXELRNN_FLUSH_DENORMALS", "0")  # IEEE subnormals kept, as asked
    seen.clear()
    assert pixelrnn_cli_here(*short, "--out", tmp_path / "kept").returncode == 0
    assert seen == [False] * 3
    monkeypatch.setenv("PIXELRNN_FLUSH_DENORMALS", "yes")
    result = pixelrnn_cli_here(*short, "--out", tmp_path / "refused")
    assert result.returncode != 0 and result.stderr.count("\n") == 1
    assert "PIXELRNN_FLUSH_DENORMALS=yes" in result.stderr


def test_flushing_changes_no_likelihood_or_gradient_of_a_trained_model():
    model = ckpt.load_model(ROOT / "checkpoints" / "cifar10-pixelcnn-h32-k5" / "last.safetensors")
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0))

    def likelihood_and_gradient():
        model.zero_grad()
        log_prob = model.log_prob(images)
        log_prob.sum().backward()
        return log_prob.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])

    kept_ll, kept_grad = likelihood_and_gradient()
    with denormals.flushed():
        flushed_ll, flushed_grad = likelihood_and_gradient()
    assert torch.equal(flushed_ll, kept_ll)
    torch.testing.assert_close(flushed_grad, kept_grad, rtol=0, atol=1e-30)


def test_the_benchmark_prints_a_row_per_model_and_thread_count(monkeypatch, capsys):
    """benchmarks/denormals.py runs end to end (its figures are for docs/speed.md, not for tests):
    a heading that names the CPU, then each row's ratio is its two times' quotient."""
    from helpers import load_benchmark

    benchmark = load_benchmark("denormals")
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(benchmark, "load_dataset", lambda name, split, folder: images)
    monkeypatch.setattr("sys.argv", ["denormals.py", "--data-dir", "unused", "--checkpoint", str(benchmark.SHIPPED[0]),
                                     "--batch", "2", "--batches", "2", "--threads", "1", "2"])
    before = torch.get_num_threads()
    try:
        benchmark.main()
    finally:
        torch.set_num_threads(before)
    heading, _, *rows = capsys.readouterr().out.splitlines()
    assert heading.startswith(benchmark.cpu_name()) and len(rows) == 2
    for row, threads in zip(rows, (1, 2)):
        name, count, *figures = row.split()
        assert (name, int(count)) == ("cifar10-pixelcnn-h32-k5", threads)
        kept, flushed, ratio = map(float, figures)  # printed to 0.001 s, 0.001 s and 0.01
        assert flushed > 0.0005
        lowest, highest = (kept - 0.0005) / (flushed + 0.0005), (kept + 0.0005) / (flushed - 0.0005)
        assert lowest - 0.005 <= ratio <= highest + 0.005, row  # the quotient of the times before rounding
    assert not denormals.is_flushed()  # the benchmark leaves the process as it found it
