"""Sampling jobs run in worker threads: each publishes its images row by row as they are drawn,
can be cancelled between rows, and keeps its own canvas, cache and random stream (so that
concurrent jobs never mix: a job's result is what ``model.sample`` / ``model.complete`` return
for the same arguments)."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..errors import PixelRNNError

KEEP_FINISHED_S = 600  # a finished job's result is kept this long for its client


class Cancelled(Exception):
    """Raised inside a job's row hook once the job is cancelled."""


@dataclass
class Job:
    """One request's work. ``events``: dicts for its client, ending with one whose ``type`` is
    ``done``, ``cancelled`` or ``error``."""

    id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue = field(default_factory=queue.Queue)
    result: dict | None = None
    outcome: str | None = None  # the last event's type once the job has ended
    finished_at: float | None = None

    def publish(self, event: dict) -> None:
        if event["type"] in ("done", "cancelled", "error"):
            self.outcome = event["type"]
        self.events.put(event)

    def check(self) -> None:
        """Raise :class:`Cancelled` once the job is cancelled (called between rows)."""
        if self.cancel.is_set():
            raise Cancelled


class JobRunner:
    """Runs jobs ``work(job) -> result dict`` on ``workers`` threads; more wait in line."""

    def __init__(self, workers: int = 2) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixelrnn-job")
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.running = 0

    def submit(self, work: Callable[[Job], dict]) -> Job:
        with self.lock:
            self._forget_old()
            job = Job(id=f"{next(self.ids)}-{time.monotonic_ns() % 100_000}")
            self.jobs[job.id] = job
        self.pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], dict]) -> None:
        with self.lock:
            self.running += 1
        try:
            job.check()
            job.result = work(job)
            job.publish({"type": "done", **job.result})
        except Cancelled:
            job.publish({"type": "cancelled"})
        except PixelRNNError as error:
            job.publish({"type": "error", "error": str(error)})
        except Exception as error:  # noqa: BLE001 - the page gets one line; the server keeps serving
            job.publish({"type": "error", "error": f"internal error: {type(error).__name__}: {error}"})
        finally:
            job.finished_at = time.monotonic()
            with self.lock:
                self.running -= 1

    def get(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise PixelRNNError(f"no job {job_id!r} (finished jobs are kept {KEEP_FINISHED_S} s)")
        return job

    def cancel(self, job_id: str) -> None:
        self.get(job_id).cancel.set()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, j in self.jobs.items() if j.finished_at and now - j.finished_at > KEEP_FINISHED_S]:
            del self.jobs[key]

    def shutdown(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
