"""The CLI's CPU threads follow the machine's load: the cores other processes keep busy are left
to them (runtime.LoadAwareThreads), unless PIXELRNN_THREADS or OMP_NUM_THREADS fixes the count."""

from __future__ import annotations

import pytest
import torch

from pixelrnn import runtime
from pixelrnn.errors import PixelRNNError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def governor(monkeypatch, cpus=4, max_threads=4):
    monkeypatch.setenv("PIXELRNN_THREADS", "auto")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = runtime.LoadAwareThreads(interval=10.0, max_threads=max_threads)
    threads.cpus = cpus
    return threads


@pytest.mark.parametrize("others,expected", [(0.0, 4), (0.3, 4), (1.0, 3), (1.6, 2), (2.9, 1), (3.9, 1), (8.0, 1)])
def test_threads_are_the_cores_that_others_leave_free(monkeypatch, restore_threads, others, expected):
    threads = governor(monkeypatch)
    # 10 s of wall time, in which this process used 2.5 CPU-seconds and the machine 2.5 + 10 * others.
    samples = iter([(100.0, 50.0, 1.0), (110.0, 50.0 + 2.5 + 10 * others, 3.5)])
    monkeypatch.setattr(threads, "_sample", lambda: next(samples))
    monkeypatch.setattr(runtime.time, "sleep", lambda seconds: None)
    assert threads.start() == expected == torch.get_num_threads()


def test_poll_measures_again_only_after_its_interval(monkeypatch, restore_threads):
    threads = governor(monkeypatch, cpus=2, max_threads=2)
    clock = [(0.0, 0.0, 0.0), (1.0, 1.0, 0.0)]  # start: one core busy elsewhere -> 1 thread
    monkeypatch.setattr(threads, "_sample", lambda: clock.pop(0))
    monkeypatch.setattr(runtime.time, "sleep", lambda seconds: None)
    assert threads.start() == 1
    monkeypatch.setattr(runtime.time, "monotonic", lambda: 5.0)  # before the interval: nothing measured
    assert threads.poll() == 1 and len(clock) == 0
    monkeypatch.setattr(runtime.time, "monotonic", lambda: 12.0)
    clock.append((12.0, 1.0 + 11.0 * 1.9, 11.0 * 1.9))  # the other process left: only this one's time
    assert threads.poll() == 2 == torch.get_num_threads()


def test_a_fixed_count_is_kept(monkeypatch, restore_threads):
    monkeypatch.setenv("PIXELRNN_THREADS", "1")
    threads = runtime.LoadAwareThreads()
    assert not threads.adaptive and threads.start() == 1 == torch.get_num_threads()
    monkeypatch.setenv("PIXELRNN_THREADS", "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runtime.LoadAwareThreads().fixed == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("PIXELRNN_THREADS", bad)
        with pytest.raises(PixelRNNError, match="PIXELRNN_THREADS"):
            runtime.LoadAwareThreads()


def test_the_machine_is_measured_where_proc_stat_exists():
    busy = runtime._busy_cpu_seconds()
    assert busy is None or busy > 0


def test_torchrun_processes_keep_the_threads_torchrun_gave_them(monkeypatch, restore_threads):
    monkeypatch.setenv("PIXELRNN_THREADS", "auto")
    monkeypatch.setenv("LOCAL_RANK", "0")
    torch.set_num_threads(1)
    threads = runtime.LoadAwareThreads()
    assert threads.fixed == 1 and not threads.adaptive and threads.start() == 1
