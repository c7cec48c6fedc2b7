"""Long work as generators: they yield :class:`Progress` records and return their result.

The same generator drives a terminal progress bar (CLI) and a worker thread (GUI); cancellation
happens at a yield (the consumer simply stops iterating, or calls ``close()``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Progress", "Job", "run_job", "Cancelled"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress record: ``done`` of ``total`` units of ``stage`` (total 0 = unknown)."""

    stage: str
    done: int = 0
    total: int = 0
    message: str = ""
    #: optional partial result a viewer may show while the job goes on (e.g. a Volume being filled)
    preview: Any = field(default=None, compare=False, repr=False)

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


Job = Generator[Progress, None, T]


class Cancelled(Exception):
    """Raised by :func:`run_job` when the callback asked to stop."""


def run_job(job: Job[T], on_progress: Callable[[Progress], Any] | None = None) -> T:
    """Run a job generator to completion and return its result.

    ``on_progress`` receives every record; if it returns ``False`` the job is closed at that
    yield and :class:`Cancelled` is raised.
    """
    while True:
        try:
            record = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None and on_progress(record) is False:
            job.close()
            raise Cancelled(f"cancelled during {record.stage}")
