"""Stopping a training run cleanly: SIGINT (Ctrl-C) or SIGTERM (``kill``, a job scheduler) asks
the run to stop after the step in progress and to save a checkpoint there, so that ``--resume``
loses nothing; without this a run loses the steps since its last periodic checkpoint."""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    SIGKILL anyway. Outside the main thread, where Python cannot set handlers, it does nothing."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._request) for number in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _request(self, number: int, frame) -> None:
        self.requested = self.requested or number
        if number == signal.SIGINT:
            self._restore(signal.SIGINT)

    def _restore(self, *numbers: int) -> None:
        for number in numbers or list(self._previous):
            signal.signal(number, self._previous.pop(number))
