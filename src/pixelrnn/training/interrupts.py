"""Stopping a training run cleanly: SIGINT (Ctrl-C) or SIGTERM (``kill``, a job scheduler) asks
the run to stop after the step in progress and to save a checkpoint there, so that ``--resume``
loses nothing; without this a run loses the steps since its last periodic checkpoint.

Under torchrun a lost launcher counts as SIGTERM. torchrun starts each process in a session of its
own, so a launcher killed outright (SIGKILL, the out-of-memory killer) would leave its processes
training on, unsupervised, holding the run folder; each notices within a second instead, stops
with the others at the same step and saves it."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# This process's parent when the package was imported: under torchrun, the launcher.
PARENT_AT_START = os.getppid()
LAUNCHER_POLL_S = 1.0  # how often a process under torchrun looks for its launcher


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``Trainer.run`` once it has saved a checkpoint after SIGINT or SIGTERM (a
    KeyboardInterrupt, so code that handles Ctrl-C handles it). ``signal_number``: which one."""

    def __init__(self, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class StopRequests:
    """While active (a context manager), SIGINT and SIGTERM set ``requested`` to the signal's
    number instead of stopping the process; the loop checks it between steps. A second Ctrl-C
    acts as usual (KeyboardInterrupt: the SIGINT handler is restored at the first), so a stuck run
    can still be stopped by hand; repeated SIGTERMs are ignored, since a wrapper such as
    ``timeout`` or ``pkill -f`` may deliver one twice, and a scheduler follows its SIGTERM with
    SIGKILL anyway. Under torchrun it also watches the launcher (see the module's docstring).
    Outside the main thread, where Python cannot set handlers, it does nothing."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}
        self._done = threading.Event()

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._request) for number in STOP_SIGNALS}
            if "TORCHELASTIC_RUN_ID" in os.environ:  # launched by torchrun
                threading.Thread(target=self._watch_launcher, name="pixelrnn-launcher-watch", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._restore()

    def _watch_launcher(self) -> None:
        """Send this process SIGTERM once its parent is no longer the one it started with."""
        while not self._done.wait(LAUNCHER_POLL_S):
            if os.getppid() != PARENT_AT_START:
                print(f"pixelrnn: the launcher (process {PARENT_AT_START}) is gone: stopping after the step in "
                      "progress", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def _request(self, number: int, frame) -> None:
        self.requested = self.requested or number
        if number == signal.SIGINT:
            self._restore(signal.SIGINT)

    def _restore(self, *numbers: int) -> None:
        for number in numbers or list(self._previous):
            signal.signal(number, self._previous.pop(number))


def signal_for_tests(rank: int) -> Callable[[int], None]:
    """Tests: with ``_PIXELRNN_TEST_SIGNAL_AT=STEP:NAME`` (and ``_PIXELRNN_TEST_SIGNAL_RANKS=R,...``,
    default 0), the returned ``after(step)`` sends process R that signal after step STEP: a crash
    (SIGKILL), a stop request (SIGTERM) or a freeze (SIGSTOP) at a known step, once (not again in
    the processes that torchrun restarts). Otherwise it does nothing."""
    at, name = os.environ.get("_PIXELRNN_TEST_SIGNAL_AT", "0:SIGKILL").split(":")
    armed = (str(rank) in os.environ.get("_PIXELRNN_TEST_SIGNAL_RANKS", "0").split(",")
             and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0")

    def after(step: int) -> None:
        if armed and step == int(at):
            os.kill(os.getpid(), signal.Signals[name])

    return after
