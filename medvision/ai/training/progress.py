"""Typed progress records of a training job: which run (of a cross-validation) and which epoch a
record belongs to travel as fields, so that nobody parses the message text to find out."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.jobs import Progress
from .config import Run

__all__ = ["TrainProgress", "Reporter"]


@dataclass(frozen=True, slots=True)
class TrainProgress(Progress):
    """A :class:`Progress` record of a training run. ``run``: the cross-validation's run it belongs to
    ("fold 2 of 3", :data:`medvision.ai.training.FINAL_RUN`; "" for a hold-out run), ``fold`` its number
    (None for a hold-out run or the final model), ``epoch`` the epoch going on or just finished (0 before
    the first). Stage ``"epoch"`` records carry the epoch's figures as ``preview`` (see :mod:`.loop`)."""

    run: str = ""
    fold: int | None = None
    epoch: int = 0


class Reporter:
    """Makes the records of one run: the message prefixed with the run's name, the fields set."""

    def __init__(self, run: Run | None) -> None:
        self.run = run.label if run else ""
        self.fold = run.fold if run else None
        self.epoch = 0

    def __call__(self, stage: str, done: int, total: int, message: str, preview=None) -> TrainProgress:
        tag = f"{self.run}: " if self.run else ""
        return TrainProgress(stage, done, total, tag + message, preview=preview, run=self.run, fold=self.fold,
                             epoch=self.epoch)
