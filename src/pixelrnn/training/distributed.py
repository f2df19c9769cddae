"""Data-parallel training across processes (torch.distributed), launched the standard way:

    torchrun --nproc_per_node N -m pixelrnn train ...                  (one machine)
    torchrun --nnodes M --nproc_per_node N --rdzv-endpoint HOST:PORT -m pixelrnn train ...

One process per device: gloo on CPUs, NCCL on CUDA (process k on cuda:LOCAL_RANK). Every step
takes a global batch of ``--batch-size`` x world-size images from the epoch's order, the same
order on every process, and process r trains on the r-th of its ``world`` disjoint, contiguous
shards; DistributedDataParallel averages the gradients. The loss of each shard is weighted by its
share of the global batch, so a step equals a one-process step on the whole global batch (up to
float rounding). Evaluation is split the same way and its per-image NLLs gathered, so the
reported figure is the one-process figure. Process 0 alone writes the run folder.
"""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import PixelRNNError

# How long a collective may wait for a process that is gone before it fails (seconds).
TIMEOUT_S = float(os.environ.get("PIXELRNN_DIST_TIMEOUT", "120"))


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` training processes (world 1: a single process)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The process that writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> tuple[Ranks, torch.device]:
        """The ranks torchrun gives (WORLD_SIZE, RANK, LOCAL_RANK), the process group joined, and
        the device of this process (cuda:LOCAL_RANK on CUDA); a single process without them."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(), device
        if device.type == "cuda":
            local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
            if local >= count:
                raise PixelRNNError(f"process {local} of this machine trains on cuda:{local}, but the machine has "
                                    f"{count} CUDA device(s): give torchrun --nproc_per_node {count} at most")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            timeout = timedelta(seconds=TIMEOUT_S)
            store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout, rank=rank,
                                    world_size=world, store=_keys_of_this_attempt(store, rank))
        return cls(dist.get_rank(), dist.get_world_size()), device

    def close(self) -> None:
        """Leave the process group and free it while the interpreter is whole: a gloo group whose
        threads are still running at exit aborts the process ("terminate called without an active
        exception"). Drop every DistributedDataParallel wrapper of it first."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
            gc.collect()  # the group's last references (a DDP reducer in a cycle) go now, not at exit

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global batch (shares differ by one at most)."""
        return batch if self.world == 1 else torch.tensor_split(batch, self.world)[self.rank]

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over processes of a tensor (the tensor itself in one process)."""
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def largest(self, value: int) -> int:
        """The largest of every process's ``value``, on every process (e.g. a stop request's
        signal number, 0 for none: every process learns of a request that reached any of them)."""
        if self.world == 1:
            return value
        value = torch.tensor([value], device=self._device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return int(value.item())

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Every process's (n_r, ...) rows, concatenated in rank order, on every process."""
        if self.world == 1:
            return rows
        device = self._device()
        counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(self.world)]
        dist.all_gather(counts, torch.tensor([len(rows)], device=device))
        longest = max(int(c) for c in counts)
        padded = torch.zeros(longest, *rows.shape[1:], dtype=rows.dtype, device=device)
        padded[: len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, counts)]).to(rows.device)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _keys_of_this_attempt(store: dist.Store, rank: int) -> dist.Store:
    """The process group's store, its keys apart from those of earlier attempts. torchrun keeps
    one store for all its restarts (``--max-restarts``), where restarted processes would read the
    addresses their predecessors left (a hang, or "connection refused"). With one launcher its
    restart count names the attempt; launchers on several machines count their restarts apart,
    so there torchrun's own store has to be left (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``)."""
    if os.environ.get("GROUP_WORLD_SIZE", "1") == "1":
        return dist.PrefixStore(f"pixelrnn/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)
    if (rank == 0 and os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") != "0"
            and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"):
        print("pixelrnn: warning: torchrun --max-restarts on several machines: launch with "
              "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, or restarted processes may meet their predecessors' "
              "addresses and hang", file=sys.stderr)
    return store


def data_parallel(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped for a training step: its forward is the summed NLL in nats of a batch,
    under DistributedDataParallel across processes."""
    loss = _SummedNLL(model)
    if ranks.world == 1:
        return loss
    return torch.nn.parallel.DistributedDataParallel(loss, device_ids=[device] if device.type == "cuda" else None)


class _SummedNLL(torch.nn.Module):
    """-sum of ln p(x) (or ln p(x | y)) over a batch, in nats: DistributedDataParallel hooks into ``forward``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return -self.model.log_prob(x, labels).sum()
