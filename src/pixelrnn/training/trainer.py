"""Training with exact validation NLL, best-model selection and exactly resumable checkpoints.

A run folder holds:

* ``run.json``: the training configuration (human-readable);
* ``last.safetensors``: the latest training checkpoint (weights, optimizer, random
  generator states, progress), written every ``checkpoint_every`` steps, after every
  evaluation and on SIGINT / SIGTERM, which stop the run after its current step;
* ``best.safetensors``: the model with the lowest validation NLL so far (with ``ema``: the
  averaged weights, which are what is evaluated);
* ``metrics.jsonl``: one JSON object per evaluation; ``curves.png``: its plot.

A Trainer locks its folder (``run_lock.RunLock``) from construction until ``run()`` returns, so
a second process never writes into a run in progress.

Resuming reloads ``last.safetensors``; the data order of epoch e is a
permutation drawn from a generator seeded with (seed, e), and the dynamic
binarization generator's state is saved, so on CPU a resumed run ends with
bit-identical weights to a run that was never interrupted. A resumed run may
change its learning rate and batch size from the resumed step on; the changes join
the run's schedules (``train_config``), so one command still reproduces it.

With ``ema`` > 0 the trainer also keeps an exponential moving average of the
weights (Polyak averaging, decay ``ema`` per step from step ``ema_from`` on), via
``torch.optim.swa_utils.AveragedModel``; it is checkpointed with the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import checkpoints as ckpt
from .. import denormals
from ..errors import PixelRNNError
from ..files import atomic_write, writable_folder
from ..models import build_model, build_multiscale
from ..models.distribution import bits_per_dim
from ..models.multiscale import AnyModel, weight_layout
from ..runtime import pick_device
from .config import TrainConfig
from .distributed import Ranks, data_parallel
from .evaluation import check_compatible, per_image_nll, report_of_terms
from .interrupts import StopRequests, TrainingInterrupted, signal_for_tests
from .run_data import RunData
from .run_folder import append_metrics, never_saved_a_step, truncate_metrics
from .run_lock import NoLock, RunLock


class Trainer:
    """Runs one training run; ``Trainer(config).run()``."""

    def __init__(self, config: TrainConfig, resume: bool | str = False, force: bool = False,
                 progress: bool = True, new_lr: float | None = None, new_batch_size: int | None = None,
                 new_eval_every: int | None = None, expect: dict | None = None,
                 device: str | torch.device | None = None, log: bool | None = None, threads=None) -> None:
        """``resume``: continue the run in ``config.out`` with its own configuration, except the step
        or epoch budget, the data folder, and ``config.lr_changes`` and ``config.batch_changes``, which
        are added to its schedules. With ``resume``: ``new_lr`` and ``new_batch_size`` continue with
        this learning rate or batch size from the resumed step (recorded as schedule changes);
        ``new_eval_every`` evaluates every N steps from now (evaluations do not change the weights);
        ``config.ema`` (for a run without an average) starts averaging the weights from the resumed
        step (or ``config.ema_from`` if later). ``expect``: with ``resume``, configuration fields the
        caller gave (the CLI's options); each must equal the run's, else PixelRNNError. ``device``:
        see ``runtime.pick_device`` (default: CUDA if there is one); a run may resume on another.
        ``log``: a line on stderr per evaluation (default: with ``progress``, the progress bar).
        ``threads``: a ``runtime.LoadAwareThreads`` that the loop polls (the CLI's), or None.
        ``resume="auto"``: continue the run if the folder holds its checkpoint, with ``config`` as the
        run's own (each field set must equal the run's), else start it (in a folder that holds no
        more than a run writes before its first checkpoint, or with ``force``)."""
        self.threads = threads
        self.out, self.progress, self.log = Path(config.out), progress, progress if log is None else log
        self.ranks, self.device = Ranks.from_environment(pick_device(device))
        # Subnormal floats made a step on trained weights 1.7-2.5x slower on a 2-core Xeon (docs/speed.md)
        self.flush_denormals = self.device.type == "cpu" and denormals.wanted()
        self.progress = self.progress and self.ranks.main
        self.log = self.log and self.ranks.main
        config.check()
        if resume == "auto":  # one call starts the run or continues it (torchrun --max-restarts, a requeued job)
            resume = (self.out / ckpt.LAST).is_file()
            if resume:  # the configuration is the run's own: compared with it, not applied as changes
                expect = config.definition()
                config = dataclasses.replace(config, lr_changes=[], batch_changes=[], ema=0.0, ema_from=0)
            force = force or not resume and never_saved_a_step(self.out)
        if resume and not (self.out / ckpt.LAST).is_file():
            raise PixelRNNError(f"{self.out}: nothing to resume (no {ckpt.LAST})")
        if self.out.exists() and not self.out.is_dir():
            raise PixelRNNError(f"--out {self.out}: a file, not a run folder")
        created = not self.out.exists()
        writable_folder(self.out)
        # Held until run() ends: one process writes into a run folder (process 0 of a distributed run).
        self._lock = RunLock(self.out) if self.ranks.main else NoLock()
        try:
            self._setup(config, resume, force, new_lr, new_batch_size, new_eval_every, expect)
        except BaseException:
            self._lock.release()
            if created and not any(self.out.iterdir()):
                self.out.rmdir()
            raise

    def _setup(self, config: TrainConfig, resume: bool, force: bool, new_lr: float | None,
               new_batch_size: int | None, new_eval_every: int | None, expect: dict | None) -> None:
        last = self.out / ckpt.LAST
        if resume:  # the run's own configuration, with a new step or epoch budget if given
            saved = TrainConfig(**ckpt.read_checkpoint(last)[1]["trainer"]["config"])
            if config.epochs is not None or config.steps is not None:
                saved = dataclasses.replace(saved, epochs=config.epochs, steps=config.steps)
            if new_eval_every is not None:
                saved = dataclasses.replace(saved, eval_every=new_eval_every)
            requested = config.lr_changes, config.batch_changes, (config.ema, config.ema_from)
            config = dataclasses.replace(saved, out=str(self.out), data_dir=config.data_dir or saved.data_dir)
        elif (new_lr, new_batch_size, new_eval_every) != (None, None, None):
            raise PixelRNNError("a new learning rate, batch size or evaluation interval applies to a "
                                "resumed run only (--resume)")
        self.config = config
        if resume:
            config.check()  # the run's own options, with the new budget and evaluation interval
        if (config.epochs is None) == (config.steps is None):
            raise PixelRNNError("give exactly one of --epochs and --steps")
        self.data = RunData.load(config)
        if resume:
            self._restore(last)
            self.config.refuse_other_options(self.model.config, expect or {}, self.out)
            self._extend_schedules(*requested, new_lr, new_batch_size)
            if self.config.budget_spent(self.state, len(self.data.train_images)):  # resuming would silently do nothing
                count, unit = (config.steps, "step") if config.steps is not None else (config.epochs, "epoch")
                budget = f"{count} {unit}{'s' if count != 1 else ''}"
                raise PixelRNNError(f"{self.out} has trained its {budget} (step {self.state['step']}); "
                                    "give a larger --epochs or --steps to go on")
        else:
            given = config.lr_changes, config.batch_changes
            config.lr_changes, config.batch_changes = [], []
            config.add_changes(*given)  # checked, sorted, repeats dropped
            if any(self.out.iterdir()) and not force:  # the folder exists: made above
                raise PixelRNNError(f"{self.out} exists and is not empty; pass --resume or --force")
            self.ranks.barrier()  # every process has looked before process 0 writes
            for stale in (ckpt.LAST, ckpt.BEST, "metrics.jsonl", "curves.png"):
                if self.ranks.main:
                    (self.out / stale).unlink(missing_ok=True)
            torch.manual_seed(config.seed)
            self.model = self._build_model()
            self.model.to(self.device)
            self.optimizer = self._make_optimizer()
            self.average = self._make_average()
            self.data_rng = torch.Generator().manual_seed(config.seed + 1)
            self.state = {"step": 0, "epoch": 0, "position": 0, "best_valid": None,
                          "evals_without_gain": 0, "train_sum": 0.0, "train_count": 0,
                          "world_size": self.ranks.world}
            self._write_run_json()
        check_compatible(self.model, self.data.train_images, self.data.levels, f"dataset {config.dataset}")
        self.parallel = data_parallel(self.model, self.ranks, self.device)

    # --- setup -----------------------------------------------------------------------------

    def _write_run_json(self) -> None:
        """The configuration and the number of processes that train it (--batch-size each)."""
        if self.ranks.main:
            record = {**dataclasses.asdict(self.config), "processes": self.ranks.world}
            atomic_write(self.out / "run.json", json.dumps(record, indent=2).encode())

    def _build_model(self) -> AnyModel:
        cfg = self.config
        options = cfg.model_options(self.data.channels, self.data.levels, len(self.data.class_names or ()))
        model = (build_model(cfg.model, **options) if cfg.scale_factor == 1
                 else build_multiscale(cfg.model, cfg.scale_factor, **options))
        if cfg.init_from:
            start = ckpt.load_model(cfg.init_from)
            if weight_layout(start.config) != weight_layout(model.config):
                raise PixelRNNError(f"--init-from {cfg.init_from}: a {start.config.summary()} model, "
                                    f"not the {model.config.summary()} this run trains")
            model.load_state_dict(start.state_dict())
        if cfg.conditional:
            model.set_class_prior(self.data.train_labels)  # p(y): this run's training labels
        return model

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        if self.config.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.config.lr)
        return torch.optim.RMSprop(params, lr=self.config.lr)

    def _make_average(self) -> AveragedModel | None:
        if not self.config.ema:
            return None
        return AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.config.ema))

    def _start_average(self, decay: float, from_step: int, step: int) -> None:
        """On resume: begin averaging the weights (``--ema``) if the run does not yet."""
        if not decay or decay == self.config.ema:
            return
        if self.config.ema:
            raise PixelRNNError(f"{self.out}: this run already averages its weights with decay "
                                f"{self.config.ema}; it cannot change")
        self.config.ema, self.config.ema_from = decay, max(from_step, step)
        self.average = self._make_average()

    @property
    def train_images(self) -> torch.Tensor:
        return self.data.train_images

    @property
    def valid_images(self) -> torch.Tensor:
        return self.data.valid_images

    @property
    def evaluated_model(self) -> AnyModel:
        """The weights that are evaluated and saved as the best model: the average once it has begun."""
        if self.average is not None and self.average.n_averaged > 0:
            return self.average.module
        return self.model

    def _extend_schedules(self, lr_changes: list, batch_changes: list, ema: tuple[float, int],
                          new_lr: float | None, new_batch_size: int | None) -> None:
        """On resume: add the requested changes (from the resumed step on) to the run's schedules."""
        config, step = self.config, self.state["step"]
        if new_lr is not None and new_lr != config.base_lr(step):
            lr_changes = [*lr_changes, [step, new_lr]]
        if new_batch_size is not None and new_batch_size != config.batch_size_at(step):
            batch_changes = [*batch_changes, [step, new_batch_size]]
        config.add_changes(lr_changes, batch_changes, from_step=step)
        self._start_average(*ema, step)
        self._write_run_json()  # with the budget, schedules and intervals it continues with

    def _restore(self, path: Path) -> None:
        tensors, meta = ckpt.read_checkpoint(path)
        if meta.get("kind") != "training":
            raise PixelRNNError(f"{path}: a model file, not a training checkpoint")
        self.model = ckpt.model_from_checkpoint(path, tensors, meta).to(self.device)
        self.optimizer = self._make_optimizer()
        ckpt.load_optimizer_state(self.optimizer, tensors, meta)
        self.average = self._make_average()
        if self.average is not None:
            ckpt.load_prefixed(self.average, tensors, "average.", f"{path}: the run averages its weights but "
                               "the checkpoint's average is missing or does not match the model")
        self.data_rng = torch.Generator()
        self.data_rng.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors.get(f"rng.torch.rank{self.ranks.rank}", tensors["rng.torch"]))
        self.state = meta["trainer"]
        world = self.state.setdefault("world_size", 1)
        if world != self.ranks.world:
            raise PixelRNNError(
                f"{self.out} was trained by {world} process(es) (a global batch of --batch-size x {world}), "
                f"not {self.ranks.world}: resume it with as many (each process's share of the data "
                "order and of the random draws is part of the run)")
        if self.ranks.main:
            truncate_metrics(self.out, self.state["step"])

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> dict:
        """Train until the step or epoch budget (or early stopping); returns the last evaluation.
        The run folder stays locked against other training processes until it returns."""
        self._lock.acquire()
        try:
            flushing = denormals.flushed() if self.flush_denormals else contextlib.nullcontext()
            with StopRequests() as stop, flushing:
                result = self._run(stop)
            self.ranks.barrier()  # no process leaves the group while another is still in a collective
            return result
        finally:
            self._lock.release()
            if self.ranks.world > 1:
                self.parallel = None  # DistributedDataParallel holds the process group: free it first
                self.ranks.close()

    def _run(self, stop: StopRequests) -> dict:
        cfg, state, n = self.config, self.state, len(self.data.train_images)
        bar = tqdm(total=cfg.total_steps(state, n, self.ranks.world), initial=state["step"], disable=not self.progress, unit="step",
                   dynamic_ncols=True)
        last_eval: dict = {}
        started, images_seen = time.perf_counter(), 0
        self._clock = (started, state.get("elapsed_s", 0.0))
        signal_after = signal_for_tests(self.ranks.rank)
        while not self.config.budget_spent(self.state, len(self.data.train_images)) and not self._stopped():
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + state["epoch"]))
            while state["position"] < n and not self.config.budget_spent(self.state, len(self.data.train_images)):
                size = cfg.batch_size_at(state["step"]) * self.ranks.world  # the global batch
                batch, labels = self.data.batch(order[state["position"] : state["position"] + size],
                                               self.data_rng if cfg.binarize else None, self.device)
                loss = self._step(batch, labels, state["epoch"])
                if self.threads is not None:
                    self.threads.poll()  # follow the machine's load (every 30 s at most)
                state["position"] += len(batch)
                state["step"] += 1
                state["train_sum"] += loss * len(batch)
                state["train_count"] += len(batch)
                images_seen += len(batch)
                rate = images_seen / (time.perf_counter() - started)
                bar.update(1)
                bar.set_postfix(epoch=state["epoch"], nats=f"{loss:.2f}",
                                bpd=f"{bits_per_dim(loss, self.data.dims):.4f}", img_s=f"{rate:.0f}")
                signal_after(state["step"])  # tests: a crash or a stop request at a known step
                stopping = self.ranks.largest(stop.requested or 0)  # every process stops at the same step
                epoch_done = state["position"] >= n
                if (cfg.eval_every and state["step"] % cfg.eval_every == 0) or (
                    not cfg.eval_every and epoch_done) or self.config.budget_spent(self.state, len(self.data.train_images)):
                    last_eval = self._evaluate()
                    self._checkpoint()
                    if self._stopped():
                        break
                elif state["step"] % cfg.checkpoint_every == 0 or stopping:
                    self._checkpoint()
                if stopping:
                    bar.close()
                    raise TrainingInterrupted(stopping, (
                        f"stopped by {signal.Signals(stopping).name} at step {state['step']}, "
                        f"saved in {self.out / ckpt.LAST}; `pixelrnn train --out {self.out} --resume` continues"))
            if state["position"] >= n:
                state["epoch"] += 1
                state["position"] = 0
        bar.close()
        self._checkpoint()
        return last_eval

    def _elapsed(self) -> float:
        """Seconds spent training this run, over all its sessions."""
        started, before = self._clock
        return before + time.perf_counter() - started

    def _stopped(self) -> bool:
        patience = self.config.patience
        return patience is not None and self.state["evals_without_gain"] >= patience

    def _step(self, batch: torch.Tensor, labels: torch.Tensor | None, epoch: int) -> float:
        lr = self.config.lr_at(self.state["step"], epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            if self.ranks.world == 1:
                loss = -self.model.log_prob(batch, labels).mean()
            else:  # this shard's share of the global batch's mean; DDP averages over processes
                shard_labels = None if labels is None else self.ranks.shard(labels)
                loss = self.parallel(self.ranks.shard(batch), shard_labels) * (self.ranks.world / len(batch))
        loss.backward()
        if self.config.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        self.optimizer.step()
        if self.average is not None and self.state["step"] >= self.config.ema_from:
            self.average.update_parameters(self.model)
        value = (self.ranks.sum(loss.detach()) / self.ranks.world).item()
        if not math.isfinite(value):
            raise PixelRNNError(f"the training loss became {value} at step {self.state['step']}; "
                                "lower --lr or keep --clip on")
        return value

    def _evaluate(self) -> dict:
        state = self.state
        labels = None if self.data.valid_labels is None else self.ranks.shard(self.data.valid_labels)
        terms = per_image_nll(self.evaluated_model, self.ranks.shard(self.data.valid_images),  # given y if conditional
                              labels=labels)
        report = report_of_terms(self.ranks.gather(terms), self.data.valid_images)  # every process's
        train_nats = state["train_sum"] / max(1, state["train_count"])
        record = {
            "step": state["step"], "epoch": state["epoch"] + state["position"] / len(self.data.train_images),
            "train_nll_nats": train_nats, "train_bits_per_dim": bits_per_dim(train_nats, self.data.dims),
            "valid_nll_nats": report.nll_nats, "valid_nll_nats_stderr": report.nll_nats_stderr,
            "valid_bits_per_dim": report.bits_per_dim, "time": time.time(),
            "elapsed_s": self._elapsed(),
        }
        state["train_sum"], state["train_count"] = 0.0, 0
        improved = state["best_valid"] is None or report.nll_nats < state["best_valid"]
        state["best_valid"] = report.nll_nats if improved else state["best_valid"]
        state["evals_without_gain"] = 0 if improved else state["evals_without_gain"] + 1
        if self.ranks.main:
            if improved:
                ckpt.save_model(self.out / ckpt.BEST, self.evaluated_model, info={
                    "dataset": self.config.dataset, "binarize": self.config.binarize, "step": record["step"],
                    "image_size_hw": list(self.data.train_images.shape[2:]), "class_names": self.data.class_names,
                    "valid_nll_nats": report.nll_nats, "valid_bits_per_dim": report.bits_per_dim})
            append_metrics(self.out, record, self.data.levels, self.config.schedule_events())
            if self.log:
                tqdm.write(f"step {record['step']} (epoch {record['epoch']:.2f}): validation NLL "
                           f"{report.nll_nats:.3f} ± {report.nll_nats_stderr:.3f} nats ({report.bits_per_dim:.4f}"
                           f" bits/dim), training {record['train_nll_nats']:.3f}; best {state['best_valid']:.3f}",
                           file=sys.stderr)
        return record

    def _checkpoint(self) -> None:
        """The training state, written by process 0 with every process's random state."""
        rng = {"torch": torch.get_rng_state(), "data": self.data_rng.get_state()}
        states = self.ranks.gather(torch.get_rng_state().unsqueeze(0))
        rng.update({f"torch.rank{r}": states[r] for r in range(1, self.ranks.world)})
        if not self.ranks.main:
            return
        trainer = dict(self.state, elapsed_s=self._elapsed(), config=dataclasses.asdict(self.config))
        averaged = {} if self.average is None else {
            f"average.{k}": v for k, v in self.average.state_dict().items()}
        ckpt.save_training_state(self.out / ckpt.LAST, self.model, self.optimizer, rng, trainer, averaged)


def train(config: TrainConfig, resume: bool | str = False, force: bool = False, progress: bool = True,
          device: str | torch.device | None = None) -> AnyModel:
    """Run (or resume) a training run; returns the final model (its averaged weights with ``ema``)."""
    trainer = Trainer(config, resume=resume, force=force, progress=progress, device=device)
    trainer.run()
    return trainer.evaluated_model

