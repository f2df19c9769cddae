"""A training run's configuration: what is trained, on what, and its schedules.

Schedules are lists of ``[step, value]`` changes: ``lr_changes`` (``--lr-at``, ``--resume --lr``)
and ``batch_changes`` (``--batch-at``, ``--resume --batch-size``). Each takes effect from its step
on, so a resumed run with a new rate or batch size is still reproduced by one command.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..data.datasets import FOLDER_DEFAULTS, check_folder_options
from ..errors import PixelRNNError
from ..models.configs import PAPER_CONFIGS
from ..models.pixelrnn import CONNECTIONS
from ..models.registry import ARCHITECTURES

# The binarized-MNIST paper configurations also serve the other 28x28 binary datasets.
_PAPER_DATASET = {"digits": "binarized-mnist", "binarized-mnist": "binarized-mnist",
                  "mnist": "binarized-mnist", "fashion-mnist": "binarized-mnist"}


PRECISIONS = ("fp32", "bf16")
_SCHEDULE_FLAGS = {"learning-rate": "--lr-at", "batch-size": "--batch-at"}


def merge_changes(schedule: list, changes, from_step: int = 0, what: str = "learning-rate",
                  cast: type = float) -> list:
    """``schedule`` ([[step, value], ...]) with ``changes`` (at ``from_step`` or later) merged in,
    sorted, without the entries that repeat the value before them; values must be finite and > 0."""
    merged = {int(at): cast(value) for at, value in schedule}
    for at, value in changes:
        change = f"{_SCHEDULE_FLAGS[what]} {at}:{value}: a {what} change"
        if not (value > 0 and math.isfinite(value)) or cast(value) != value:
            raise PixelRNNError(f"{change} needs a finite value > 0" + (" (a whole number)" if cast is int else ""))
        if at < from_step:
            raise PixelRNNError(f"{change} must come from step {from_step} on (the run's steps before it are done)")
        merged[int(at)] = cast(value)
    steps = sorted(merged)
    return [[at, merged[at]] for k, at in enumerate(steps) if k == 0 or merged[at] != merged[steps[k - 1]]]


def _value_at(changes: list, step: int, initial):
    """The value of a schedule at ``step``: the last change made by then, else ``initial``."""
    return next((value for at, value in reversed(changes) if at <= step), initial)


def option_flag(name: str) -> str:
    """The ``pixelrnn train`` option of a TrainConfig field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved to run.json and in every checkpoint)."""

    model: str
    dataset: str
    out: str
    data_dir: str | None = None
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 16
    optimizer: str = "rmsprop"
    lr: float = 1e-3
    lr_decay: float = 1.0  # multiplied into the learning rate after every epoch
    clip: float = 1.0  # gradient norm clipping (0: off)
    hidden: int | None = None
    layers: int | None = None
    seed: int = 0
    checkpoint_every: int = 500
    eval_every: int | None = None  # steps; None: once per epoch
    patience: int | None = None  # evaluations without improvement before stopping
    binarize: bool = False
    image_size: int = FOLDER_DEFAULTS["image_size"]  # the folder dataset's (the others' are fixed)
    channels: int = FOLDER_DEFAULTS["channels"]
    limit: int | None = None  # use only the first N training images
    lr_changes: list = dataclasses.field(default_factory=list)  # [[step, lr], ...]: --lr-at, --resume --lr
    scale_factor: int = 1  # > 1: a Multi-Scale PixelRNN (section 3.6) with this subsampling factor
    ema: float = 0.0  # > 0: evaluate and keep an exponential moving average of the weights, this decay per step
    ema_from: int = 0  # the first step whose weights enter the average
    batch_changes: list = dataclasses.field(default_factory=list)  # [[step, size], ...]: --batch-at
    dropout: float | None = None  # the model's residual-branch dropout (None: the model's default, 0)
    init_from: str | None = None  # a new run starts from this model's weights (same configuration)
    warmup: int = 0  # the learning rate rises linearly over the first N steps (0: no warm-up)
    kernel_size: int | None = None  # k of the PixelCNN's k x k and the Row LSTM's 1 x k kernels (None: 3)
    head: int | None = None  # features of the output head (None: the paper's, 32 or 1024)
    precision: str = "fp32"  # "bf16": training steps under bf16 autocast (evaluation stays float32)
    conditional: bool = False  # p(x | y) on the dataset's class labels (a ClassEmbedding in every block)
    connections: str | None = None  # residual and skip connections, a key of CONNECTIONS (None: "both")

    def check(self) -> None:
        """PixelRNNError, naming the ``pixelrnn train`` option, for a value out of its range (an
        option left at None is not checked: the run's own or the default applies)."""
        at_least_one = ("epochs", "steps", "batch_size", "checkpoint_every", "eval_every", "patience",
                        "limit", "image_size", "scale_factor", "hidden", "layers", "head")
        for name in at_least_one:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PixelRNNError(f"{option_flag(name)} {value}: needs a whole number >= 1")
        if self.precision not in PRECISIONS:
            raise PixelRNNError(f"--precision {self.precision}: known: {', '.join(PRECISIONS)}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise PixelRNNError(f"unknown optimizer {self.optimizer!r}; known: rmsprop, adam")
        if not all(value > 0 and math.isfinite(value) for value in (self.lr, self.lr_decay)):
            raise PixelRNNError(f"--lr {self.lr}, --lr-decay {self.lr_decay}: both need to be finite and > 0")
        if not self.clip >= 0:
            raise PixelRNNError(f"--clip {self.clip}: needs a gradient norm > 0, or 0 for no clipping")
        if not 0 <= self.ema < 1:
            raise PixelRNNError(f"--ema {self.ema}: the decay must be in [0, 1), e.g. 0.9995")
        if self.warmup < 0:
            raise PixelRNNError(f"--warmup {self.warmup}: needs a number of steps >= 0")
        if self.ema_from < 0:
            raise PixelRNNError(f"--ema-from {self.ema_from}: needs a step >= 0")
        if self.ema_from and not self.ema:
            raise PixelRNNError("--ema-from STEP needs --ema DECAY")
        if self.dataset:  # "" on --resume until the run's own is read
            check_folder_options(self.dataset, **{name: value for name, value in (
                ("image_size", self.image_size), ("channels", self.channels)) if value != FOLDER_DEFAULTS[name]})
        if self.kernel_size is not None and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise PixelRNNError(f"--kernel-size {self.kernel_size}: needs an odd whole number >= 1")
        block = ARCHITECTURES.get(self.model)
        if self.kernel_size is not None and block is not None and not block.uses_kernel_size:
            raise PixelRNNError(f"--kernel-size: the {block.title}'s kernels are fixed ({block.paper})")
        if self.connections is not None and self.connections not in CONNECTIONS:
            raise PixelRNNError(f"--connections {self.connections}: known: {', '.join(CONNECTIONS)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise PixelRNNError(f"--dropout {self.dropout}: must be in [0, 1)")
        merge_changes([], self.lr_changes)  # their values, before any work (steps: when merged)
        merge_changes([], self.batch_changes, 0, "batch-size", int)

    def definition(self) -> dict:
        """The fields that say what run this is (not where or for how long it trains), those set
        (not None), its schedules merged as a run stores them: what the run in a folder must equal
        for this configuration to continue it (``--auto-resume``)."""
        merged = dataclasses.replace(self, lr_changes=[], batch_changes=[])
        merged.add_changes(self.lr_changes, self.batch_changes)
        return {name: value for name, value in dataclasses.asdict(merged).items()
                if name not in ("out", "data_dir", "epochs", "steps") and value is not None}

    def refuse_other_options(self, built, given: dict, out) -> None:
        """On resume: PixelRNNError unless each ``given`` option equals this run's; ``built``: the
        model's configuration (h, the layer count, dropout, kernel size, head and connections as
        built, for runs that took the defaults)."""
        stage = getattr(built, "large", built)  # a multi-scale model's full size
        actual = {**dataclasses.asdict(self), **{name: getattr(stage, name) for name in
                                                 ("hidden", "layers", "dropout", "kernel_size", "head", "connections")}}
        for name, value in given.items():
            if actual[name] != value:
                flag = {"lr_changes": "--lr-at", "batch_changes": "--batch-at"}.get(name, option_flag(name))
                raise PixelRNNError(f"{out} is a run with {flag} {actual[name]}, not {value}: "
                                    "--resume continues a run with its own configuration (start a new run to change it)")

    def schedule_events(self) -> list[tuple[int, str]]:
        """[(step, label)]: the learning-rate and batch-size changes, the end of the warm-up and
        the start of weight averaging, for plots."""
        events = [(at, f"lr {lr:g}") for at, lr in self.lr_changes]
        if self.warmup:
            events.append((self.warmup, "warm-up done"))
        events += [(at, f"batch {size}") for at, size in self.batch_changes]
        if self.ema:
            events.append((self.ema_from, f"EMA {self.ema:g}"))
        return sorted(events)

    def add_changes(self, lr_changes, batch_changes, from_step: int = 0) -> None:
        """Merge requested ``[[step, value], ...]`` changes (at ``from_step`` or later) into the
        learning-rate and batch-size schedules; PixelRNNError for a past step or a bad value."""
        self.lr_changes = merge_changes(self.lr_changes, lr_changes, from_step)
        self.batch_changes = merge_changes(self.batch_changes, batch_changes, from_step, "batch-size", int)

    def base_lr(self, step: int) -> float:
        """The learning rate before the per-epoch decay: ``lr``, or the last change made by ``step``."""
        return _value_at(self.lr_changes, step, self.lr)

    def lr_at(self, step: int, epoch: int) -> float:
        """The learning rate of step ``step`` (counted from 0), in epoch ``epoch``: the schedule's
        (:meth:`base_lr`) times ``lr_decay ** epoch``, times ``(step + 1) / warmup`` during the
        warm-up. PyTorch's RMSProp starts its mean square at 0, so its first update moves every
        weight by about 10x the rate; the warm-up keeps that step small in wide models."""
        ramp = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        return self.base_lr(step) * self.lr_decay ** epoch * ramp

    def batch_size_at(self, step: int) -> int:
        """Images per step at ``step``: ``batch_size``, or the last change made by then."""
        return _value_at(self.batch_changes, step, self.batch_size)

    def total_steps(self, state: dict, n: int, world: int = 1) -> int:
        """The step at which the budget is spent, from a run's ``state`` (step, epoch, position)
        on ``n`` training images with ``world`` processes (with an epoch budget: at the current
        batch size)."""
        if self.steps is not None:
            return self.steps
        size = self.batch_size_at(state["step"]) * world
        epochs_left = self.epochs - state["epoch"] - 1
        return state["step"] + -(-(n - state["position"]) // size) + max(0, epochs_left) * -(-n // size)

    def budget_spent(self, state: dict, n: int) -> bool:
        """Whether a run at ``state`` on ``n`` training images has trained its steps or epochs."""
        if self.steps is not None:
            return state["step"] >= self.steps
        return state["epoch"] + state["position"] / n >= self.epochs

    def model_options(self, channels: int, levels: int, classes: int = 0) -> dict:
        """The paper's configuration for this data where there is one, with overrides (and
        ``classes`` for a class-conditional run)."""
        if self.model not in ARCHITECTURES:
            raise PixelRNNError(f"unknown model {self.model!r}; known models: {', '.join(ARCHITECTURES)}")
        paper = next((c for c in PAPER_CONFIGS.values()
                      if c.architecture == self.model and c.dataset == _PAPER_DATASET.get(self.dataset, self.dataset)
                      and c.model["layers"] > 1), None)
        options = dict(paper.model) if paper else dict(hidden=16, layers=7 if channels == 1 else 4)
        options.update(channels=channels, levels=levels, **({"classes": classes} if classes else {}))
        overrides = (("hidden", self.hidden), ("layers", self.layers), ("dropout", self.dropout),
                     ("kernel_size", self.kernel_size), ("head", self.head))
        options.update({k: v for k, v in overrides if v is not None})
        if self.connections is not None:
            options.update(zip(("residual", "skip"), CONNECTIONS[self.connections]))
        return options
