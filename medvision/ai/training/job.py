"""The training job: one hold-out run (:mod:`.trainer`), or with ``config.folds`` a k-fold
cross-validation and then the model (:mod:`.crossval`)."""

from __future__ import annotations

from ...core.jobs import Job
from ..package import Registry
from .config import TrainConfig, TrainResult
from .crossval import cross_validation_job
from .data import TrainingData
from .trainer import train_run

__all__ = ["train_job"]


def train_job(config: TrainConfig, data: TrainingData, registry: Registry | None = None) -> Job[TrainResult]:
    """Job: fine-tune ``config.base`` on ``data``; returns a :class:`TrainResult` (see :mod:`.trainer`).
    With ``config.folds``: a k-fold cross-validation, then the model (:mod:`.crossval`)."""
    if config.folds:
        return (yield from cross_validation_job(config, data, registry))
    return (yield from train_run(config, data, registry))
