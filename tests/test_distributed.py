"""Data-parallel training with torchrun (gloo, 2 CPU processes): the same steps as one process on
the global batch, disjoint shards, exact resume with the same world size, a different one refused,
a killed process that ends the run instead of hanging, and SIGTERM to the launcher."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_training import pixelrnn_cli_here

import pixelrnn
from pixelrnn.training.distributed import Ranks

SHARED = Path(os.environ.get("PIXELRNN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
COMMON = ["train", "--model", "row_lstm", "--dataset", "digits", "--limit", "96", "--hidden", "4", "--layers", "1",
          "--checkpoint-every", "3", "--eval-every", "3", "--seed", "3", "--quiet"]


def torchrun(*args, processes=2, env=None, restarts=0, **popen):
    """``torchrun --standalone --nproc_per_node N --max-restarts R -m pixelrnn ARGS`` (a subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               f"--max-restarts={restarts}", "-m", "pixelrnn", *args]
    if popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_machines(out, *args, env=None):
    """Two torchrun launchers of one process each, ``--nnodes 2`` with a c10d rendezvous on
    127.0.0.1, each in a session of its own (as on two machines): ``train COMMON ARGS --out OUT``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    endpoint = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                              "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "pixelrnn-test",
                              "-m", "pixelrnn", *COMMON, *args, "--out", str(out)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
            for _ in range(2)]


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their states ("T": stopped), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid:
            found[int(entry.name)] = state
    return found


def kill_all(processes) -> None:
    for process in processes:
        try:
            os.killpg(process if isinstance(process, int) else process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def endless_run(run):
    """A 2-process launcher (a session of its own) training for 100,000 steps into ``run``,
    returned once training is under way (its first checkpoint, every 7 steps, is written)."""
    launcher = torchrun(*COMMON, "--batch-size", "4", "--steps", "100000", "--checkpoint-every", "7",
                        "--eval-every", "100000", "--out", str(run), start_new_session=True)
    deadline = time.monotonic() + 120
    while not (run / "last.safetensors").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    return launcher


def weights(path):
    return [p.detach() for p in pixelrnn.load_model(path).parameters()]


def assert_resumes_to_the_uninterrupted_run(run, uninterrupted, *args):
    """``torchrun ... train --out RUN --resume ARGS`` ends with the uninterrupted run's weights, bit for bit."""
    resumed = torchrun("train", "--out", str(run), "--resume", *args, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    for a, b in zip(weights(run / "last.safetensors"), weights(uninterrupted / "last.safetensors"), strict=True):
        assert torch.equal(a, b)


def test_shards_are_disjoint_and_cover_the_global_batch():
    batch = torch.arange(11)
    shards = [Ranks(rank, 3).shard(batch) for rank in range(3)]
    assert torch.equal(torch.cat(shards), batch) and [len(s) for s in shards] == [4, 4, 3]


def test_more_processes_than_cuda_devices_is_one_clear_error(monkeypatch):
    """Process k trains on cuda:k: on a machine with fewer devices it says so before it touches any."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("set a device it does not have"))
    with pytest.raises(pixelrnn.PixelRNNError, match=r"cuda:1, but the machine has 1 CUDA device\(s\): give "
                                                     r"torchrun --nproc_per_node 1 at most"):
        Ranks.from_environment(torch.device("cuda"))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """A 2-process run of 6 steps (batch 4 each) and the 1-process run of batch 8."""
    root = tmp_path_factory.mktemp("distributed")
    two = torchrun(*COMMON, "--batch-size", "4", "--steps", "6", "--out", str(root / "two"))
    assert two.returncode == 0, two.stderr
    one = pixelrnn_cli_here(*COMMON, "--batch-size", "8", "--steps", "6", "--out", root / "one")
    assert one.returncode == 0, one.stderr
    return root


def test_two_processes_train_as_one_on_the_global_batch(two_process_run):
    for a, b in zip(weights(two_process_run / "two" / "last.safetensors"),
                    weights(two_process_run / "one" / "last.safetensors"), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    records = [[json.loads(line) for line in (two_process_run / run / "metrics.jsonl").read_text().splitlines()]
               for run in ("two", "one")]
    assert [r["step"] for r in records[0]] == [3, 6]  # process 0 alone wrote them
    for two, one in zip(*records, strict=True):  # evaluation split across processes, the same figure
        assert two["valid_nll_nats"] == pytest.approx(one["valid_nll_nats"], rel=1e-6)
        assert two["train_nll_nats"] == pytest.approx(one["train_nll_nats"], rel=1e-5)
    state = pixelrnn.training.checkpoints.read_checkpoint(two_process_run / "two" / "last.safetensors")[1]
    assert state["trainer"]["world_size"] == 2


def test_the_card_of_a_distributed_run_gives_its_processes_and_a_command_that_trains_it_again(two_process_run,
                                                                                                tmp_path):
    run, again = tmp_path / "two", tmp_path / "again"
    shutil.copytree(two_process_run / "two", run)
    assert json.loads((run / "run.json").read_text())["processes"] == 2
    assert pixelrnn_cli_here("card", run, "--samples", "4").returncode == 0
    card = (run / "README.md").read_text()
    assert "batch 4 in each of 2 processes (a global batch of 2 x that)" in card
    command = card.split("```\n")[1].split("\n")[0].split()
    assert command[:7] == ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "pixelrnn", "train"]
    command[command.index("--out") + 1] = str(again)
    assert torchrun(*command[6:], "--quiet").returncode == 0
    for a, b in zip(weights(again / "last.safetensors"), weights(run / "last.safetensors"), strict=True):
        assert torch.equal(a, b)


def test_two_machines_train_as_one_machine_with_two_processes(two_process_run, tmp_path):
    """The documented multi-node launch (``--nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT``),
    two "machines" of one process each on 127.0.0.1 sharing the run folder, ends with the
    weights of the one-machine 2-process run, bit for bit: ranks come from the rendezvous, not
    from LOCAL_RANK (0 on both machines), and only global rank 0 writes."""
    nodes = two_machines(tmp_path / "run", "--batch-size", "4", "--steps", "6")
    for node in nodes:
        try:
            _, stderr = node.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            kill_all(nodes)
            pytest.fail("the two-machine run did not finish")
        assert node.returncode == 0, stderr
    for a, b in zip(weights(tmp_path / "run" / "last.safetensors"),
                    weights(two_process_run / "two" / "last.safetensors"), strict=True):
        assert torch.equal(a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6]  # one writer, not one per machine


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="shared data folder absent")
def test_a_class_conditional_run_shards_its_labels_with_its_images(tmp_path):
    """Each process's labels are those of its own images: two processes train a class-conditional
    model as one process does on the global batch (its class biases included)."""
    args = ["train", "--model", "row_lstm", "--dataset", "mnist", "--data-dir", str(SHARED / "mnist"), "--binarize",
            "--conditional", "--limit", "96", "--hidden", "4", "--layers", "1", "--steps", "4", "--eval-every", "4",
            "--seed", "5", "--quiet"]
    two = torchrun(*args, "--batch-size", "4", "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    one = pixelrnn_cli_here(*args, "--batch-size", "8", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    model = pixelrnn.load_model(tmp_path / "two" / "last.safetensors")
    assert model.classes == 10
    for a, b in zip(weights(tmp_path / "two" / "last.safetensors"), weights(tmp_path / "one" / "last.safetensors"),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_killed_process_ends_the_run_and_resume_loses_nothing(two_process_run, tmp_path):
    """Process 1 killed at step 4: the run ends (no hang); it resumes with its own world size only,
    from the step-3 checkpoint, to the uninterrupted run's weights bit for bit."""
    run = tmp_path / "run"
    started = time.monotonic()
    killed = torchrun(*COMMON, "--batch-size", "4", "--steps", "6", "--out", str(run),
                      env={"_PIXELRNN_TEST_SIGNAL_AT": "4:SIGKILL", "_PIXELRNN_TEST_SIGNAL_RANKS": "1"})
    assert killed.returncode != 0 and time.monotonic() - started < 120  # no hang
    saved = pixelrnn.training.checkpoints.read_checkpoint(run / "last.safetensors")[1]["trainer"]["step"]
    assert saved == 3  # the last checkpoint before the kill
    one_process = pixelrnn_cli_here("train", "--out", run, "--resume")
    assert one_process.returncode == 2 and "was trained by 2 process(es)" in one_process.stderr
    assert_resumes_to_the_uninterrupted_run(run, two_process_run / "two")


def test_torchrun_restarts_a_run_after_a_crash_with_auto_resume(two_process_run, tmp_path):
    """``torchrun --max-restarts 1 ... --auto-resume``: process 1 is killed at step 4; torchrun
    starts both again with the same command, which continues from the step-3 checkpoint, and the
    run ends, on its own, with the uninterrupted run's weights, bit for bit."""
    run = tmp_path / "run"
    restarted = torchrun(*COMMON, "--batch-size", "4", "--steps", "6", "--out", str(run), "--auto-resume", restarts=1,
                         env={"_PIXELRNN_TEST_SIGNAL_AT": "4:SIGKILL", "_PIXELRNN_TEST_SIGNAL_RANKS": "1"})
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stderr.count("training row_lstm on digits") == 2, restarted.stderr  # started, then restarted
    for a, b in zip(weights(run / "last.safetensors"), weights(two_process_run / "two" / "last.safetensors"), strict=True):
        assert torch.equal(a, b)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6]


def test_sigterm_to_the_launcher_checkpoints_the_step_in_progress(two_process_run, tmp_path):
    run = tmp_path / "run"
    launcher = endless_run(run)
    launcher.send_signal(signal.SIGTERM)
    try:
        launcher.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        pytest.fail("the run did not stop after SIGTERM")
    stderr = launcher.stderr.read()
    assert "stopped by SIGTERM at step" in stderr, stderr
    step = int(stderr.split("stopped by SIGTERM at step ")[1].split(",")[0])
    saved = pixelrnn.training.checkpoints.read_checkpoint(run / "last.safetensors")[1]["trainer"]["step"]
    assert saved == step > 0  # the step in progress, not the last periodic checkpoint's


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the processes in /proc")
@pytest.mark.parametrize("lost_rank", [0, 1])
def test_a_lost_machine_ends_the_run_and_resume_loses_nothing(two_process_run, tmp_path, lost_rank):
    """One of two "machines" (a launcher and its process, as in the test above) is lost at step
    4 (frozen there, then SIGKILLed whole): the other ends with an error within seconds instead of
    waiting, whether the lost one held process 0 (the writer) or not, and whether or not it held
    the rendezvous; --resume then loses nothing beyond the step-3 checkpoint."""
    run = tmp_path / "run"
    nodes = two_machines(run, "--batch-size", "4", "--steps", "6", env={
        "_PIXELRNN_TEST_SIGNAL_AT": "4:SIGSTOP", "_PIXELRNN_TEST_SIGNAL_RANKS": str(lost_rank),
        "PIXELRNN_DIST_TIMEOUT": "30"})
    try:
        deadline, frozen = time.monotonic() + 180, None
        while frozen is None and time.monotonic() < deadline:
            frozen = next((node for node in nodes if "T" in children(node.pid).values()), None)
            time.sleep(0.2)
        assert frozen is not None, "process %d never reached step 4" % lost_rank
        lost = children(frozen.pid)
        kill_all([frozen, *lost])  # the machine: its launcher and its process
        survivor = nodes[1 - nodes.index(frozen)]
        started = time.monotonic()
        survivor.communicate(timeout=90)
        assert survivor.returncode != 0 and time.monotonic() - started < 60
    finally:
        kill_all([*nodes, *[pid for node in nodes for pid in children(node.pid)]])
    assert pixelrnn.training.checkpoints.read_checkpoint(run / "last.safetensors")[1]["trainer"]["step"] == 3
    assert_resumes_to_the_uninterrupted_run(run, two_process_run / "two")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the processes in /proc")
def test_a_lost_launcher_stops_its_processes_at_one_step_with_a_checkpoint(tmp_path):
    """torchrun starts its processes in sessions of their own, so a launcher killed outright
    (SIGKILL) does not take them with it: they notice within seconds and stop as on SIGTERM, all
    at one step, which is saved; none trains on unsupervised."""
    run = tmp_path / "run"
    launcher = endless_run(run)
    workers = children(launcher.pid)
    assert len(workers) == 2
    launcher.kill()
    try:
        _, stderr = launcher.communicate(timeout=60)  # its stderr ends when the last process has
    except subprocess.TimeoutExpired:
        kill_all(workers)
        pytest.fail("the processes of a lost launcher trained on")
    assert stderr.count(f"the launcher (process {launcher.pid}) is gone") == 2, stderr
    steps = {int(line.split(" at step ")[1].split(",")[0]) for line in stderr.splitlines() if "stopped by SIGTERM" in line}
    saved = pixelrnn.training.checkpoints.read_checkpoint(run / "last.safetensors")[1]["trainer"]["step"]
    assert len(steps) == 1 and steps == {saved} and saved > 0, stderr


def test_a_stop_request_that_reaches_one_process_stops_them_all_at_one_step(tmp_path):
    """SIGTERM to process 1 alone (not through the launcher): both stop at step 4 with one saved
    checkpoint and name the signal (process 0, which never received it, once failed to)."""
    run = tmp_path / "run"
    stopped = torchrun(*COMMON, "--batch-size", "4", "--steps", "6", "--out", str(run),
                       env={"_PIXELRNN_TEST_SIGNAL_AT": "4:SIGTERM", "_PIXELRNN_TEST_SIGNAL_RANKS": "1"})
    assert stopped.returncode != 0
    assert stopped.stderr.count("stopped by SIGTERM at step 4,") == 2 and "pixelrnn: error" not in stopped.stderr, \
        stopped.stderr
    assert pixelrnn.training.checkpoints.read_checkpoint(run / "last.safetensors")[1]["trainer"]["step"] == 4
