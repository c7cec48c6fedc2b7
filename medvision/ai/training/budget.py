"""A training run's time budget (``--minutes``): one deadline for everything the run does.

The clock starts when the run starts: loading the base, preparing the regions, the linear probe and
its check, every epoch's iterations, validation and checkpoint, and writing the package all count.
The probe gets at most :data:`PROBE_SHARE` of what is left when it starts and stops early at its
deadline. An epoch stops between iterations once one more iteration, the epoch's validation, its
checkpoint and the end of the run (the package, the checkpoint marked finished) would not fit before
the deadline; each of those is estimated from what the run measured (the validation before the first
one from a timed forward pass and the number of sliding windows it needs), with :data:`SLACK` of
the budget kept free. Every session does at least one iteration, so that a run always advances.
"""

from __future__ import annotations

import math
import time

__all__ = ["Budget", "PROBE_SHARE", "window_count"]

#: the share of the budget left at its start that the linear probe (with its check) may use
PROBE_SHARE = 0.2
#: the share of the budget kept free at its end: what the run measured varies (a shared machine's
#: load), and an iteration, a validation or the package may take longer than the last one did
SLACK = 0.05
#: estimates of validation from a timed forward pass are multiplied by this (gaussian blending,
#: resampling back, the Dice: a validation costs more than its windows' forward passes)
VALIDATION_MARGIN = 1.5


def window_count(shape, patch, overlap: float = 0.5) -> int:
    """The windows of MONAI's ``sliding_window_inference`` over ``shape`` (padded to ``patch``)."""
    n = 1
    for size, p in zip(shape, patch, strict=True):
        step = max(1, int(p * (1 - overlap)))
        n *= 1 if size <= p else math.ceil((size - p) / step) + 1
    return n


class Budget:
    """The deadline of a run with a time budget (``minutes`` None: no budget, every check passes)
    and what the run measured of its parts (seconds)."""

    def __init__(self, minutes: float | None, start: float | None = None) -> None:
        self.seconds = float(minutes) * 60 if minutes else None
        self.start = time.perf_counter() if start is None else start
        self.deadline = self.start + self.seconds if self.seconds is not None else None
        self.iteration_s: float | None = None  # running mean of one training iteration
        self.validation_s: float | None = None  # the longest validation seen (or estimated)
        self.checkpoint_s = 0.0  # the last checkpoint's writing

    @property
    def limited(self) -> bool:
        return self.deadline is not None

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def part(self, share: float) -> float | None:
        """The deadline of a part that may use ``share`` of what is left (None without a budget)."""
        if self.deadline is None:
            return None
        return time.perf_counter() + share * max(0.0, self.left())

    def end_s(self) -> float:
        """The end of the run: the package's weights and the checkpoint read and marked finished."""
        return 3 * self.checkpoint_s

    def room_for_iteration(self, validate: bool) -> bool:
        """Whether one more iteration, then the epoch's validation (when ``validate``), its checkpoint
        and the end of the run fit before the deadline."""
        if self.deadline is None:
            return True
        need = (self.iteration_s or 0.0) + (self.validation_s or 0.0 if validate else 0.0)
        return self.left() - SLACK * self.seconds > need + self.checkpoint_s + self.end_s()

    def room_for_validation(self) -> bool:
        if self.deadline is None:
            return True
        return self.left() - SLACK * self.seconds > (self.validation_s or 0.0) + self.checkpoint_s + self.end_s()

    def saw_iteration(self, seconds: float, n: int) -> None:
        """The ``n``-th iteration of the session took ``seconds``."""
        self.iteration_s = seconds if self.iteration_s is None else self.iteration_s + (seconds - self.iteration_s) / n

    def saw_validation(self, seconds: float) -> None:
        self.validation_s = max(self.validation_s or 0.0, seconds)

    def saw_checkpoint(self, seconds: float) -> None:
        self.checkpoint_s = seconds
