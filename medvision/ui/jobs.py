"""Run job generators (:mod:`medvision.core.jobs`) on a worker thread with Qt signals.

The GUI thread never waits on a job: it starts a :class:`JobRunner` and reacts to its signals.
Progress records are throttled (at most one every ``interval`` seconds, plus every stage change
and every record carrying a preview) so a fast job cannot flood the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import GeneratorWorker

from ..core.jobs import Cancelled, Job, Progress

log = logging.getLogger(__name__)


def _drive(job: Job, cancel: threading.Event, interval: float):
    """Generator run by the worker thread: forwards throttled progress, closes the job on cancel."""
    last_stage = None
    last_emit = 0.0
    try:
        while True:
            if cancel.is_set():
                raise Cancelled("cancelled")
            try:
                record = next(job)
            except StopIteration as stop:
                return stop.value
            now = time.monotonic()
            if record.stage != last_stage or record.preview is not None or now - last_emit >= interval:
                last_stage, last_emit = record.stage, now
                yield record
    finally:
        job.close()  # runs the job's own clean-up (worker pools, temp files) in this thread


class JobRunner(QObject):
    """One job on the global thread pool.

    Signals: ``progress(Progress)``, ``finished(result)``, ``failed(exception)``, ``cancelled()``;
    exactly one of the last three is emitted, then ``done()``.
    """

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    done = Signal()

    def __init__(self, job: Job, *, name: str = "", interval: float = 0.05, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._cancel = threading.Event()
        self._worker = GeneratorWorker(_drive, job, self._cancel, interval)
        self._worker.yielded.connect(self.progress)
        self._worker.returned.connect(self._on_returned)
        self._worker.errored.connect(self._on_errored)
        self._worker.finished.connect(self.done)
        self.running = False

    def start(self) -> JobRunner:
        self.running = True
        # superqt keeps the worker referenced until it has finished, whatever happens to this runner
        self._worker.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next progress record (the GUI does not wait)."""
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _on_returned(self, result: Any) -> None:
        self.running = False
        self.finished.emit(result)

    def _on_errored(self, exc: BaseException) -> None:
        self.running = False
        if isinstance(exc, Cancelled):
            self.cancelled.emit()
        else:
            if not isinstance(exc, (OSError, ValueError)) and not type(exc).__module__.startswith("medvision"):
                log.error("%s failed", self.name or "job", exc_info=exc)
            self.failed.emit(exc)


def run_in_thread(job: Job, *, on_finished: Callable[[Any], Any] | None = None,
                  on_failed: Callable[[BaseException], Any] | None = None,
                  on_progress: Callable[[Progress], Any] | None = None,
                  parent: QObject | None = None, name: str = "") -> JobRunner:
    """Start ``job`` and connect the given callbacks; returns the runner (keep a reference)."""
    runner = JobRunner(job, name=name, parent=parent)
    if on_finished:
        runner.finished.connect(on_finished)
    if on_failed:
        runner.failed.connect(on_failed)
    if on_progress:
        runner.progress.connect(on_progress)
    return runner.start()
