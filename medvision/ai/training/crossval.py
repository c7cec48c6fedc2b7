"""k-fold cross-validation (``TrainConfig.folds``): for a handful of cases, where one held-out case
says little about how good a model is.

The cases are dealt into K folds (:meth:`.data.TrainingData.folds`). One run per fold trains on
the other folds and validates on its own, exactly as a hold-out run does (early stopping, the best
epoch kept), and writes no package: its figures are what the cross-validation reports. Then the
model itself is trained on every case, for the median of the folds' best epochs (its warm-up and
cosine decay fitted to those epochs), with no validation to choose an epoch by (its last is
kept), from the head the folds started from most often (the probe, or the class frequencies when
the folds' check rejected it). Its card records each fold's validation cases, Dice (per label)
and best epoch, and as its metrics the folds' mean and standard deviation: the estimate of how the
model does on a case it has not seen.

Each run has its own checkpoint (``fold-1`` ... ``final`` under ``config.workdir``, or its own
folder in the cache), so a stopped cross-validation resumes in the fold it stopped in, and the
folds that had finished (with the same budget) are not trained again. A time budget (``minutes``)
is shared: each fold gets ``minutes / (K + 1)``, and the final run, besides its epochs, what the
folds left of it (at least a fold's share). Once the model is written the fold checkpoints are
deleted (the card holds their figures), so the same command again is a new cross-validation.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...core.jobs import Job
from ..package import Registry
from . import checkpoint as ckpt
from .config import Run, TrainConfig, TrainResult
from .data import TrainingData
from .runs import FINAL_RUN
from .trainer import train_run

__all__ = ["cross_validation_job", "summarise"]


def cross_validation_job(config: TrainConfig, data: TrainingData,
                         registry: Registry | None = None) -> Job[TrainResult]:
    """Job: K fold runs, then the model on every case (see the module docstring)."""
    started = time.perf_counter()  # (the folds' runs count from their starts: loading and probes too)
    k = int(config.folds)
    splits = data.folds(k, config.seed)  # (too few cases: TrainingDataError, before any training)
    share = replace(config, minutes=config.minutes / (k + 1) if config.minutes else None)
    results: list[TrainResult] = []
    for f, split in enumerate(splits):
        run = Run(split, {"folds": k, "fold": f + 1, "split_seed": config.seed}, f"fold-{f + 1}",
                  f"fold {f + 1} of {k}", export=False, runs_after=k - f, fold=f + 1)
        results.append((yield from train_run(share, data, registry, run)))
    summary = summarise(results, splits, data.names, config.seed)
    summary["fold_budget"] = {"epochs": config.epochs, "minutes": share.minutes, "patience": config.patience}
    head = summary["head_init_used"] if config.head_init == "auto" else config.head_init
    left = None  # minutes: what the folds left of the budget (at least a fold's share), besides the epochs
    if config.minutes:
        left = max(share.minutes, config.minutes - (time.perf_counter() - started) / 60)
    final = replace(config, epochs=summary["final_epochs"], minutes=left, patience=0, head_init=head)
    run = Run(data.all_cases(), {"folds": k, "fold": "all", "split_seed": config.seed,
                                 "epochs": summary["final_epochs"]}, "final", FINAL_RUN, export=True,
              cross_validation=summary)
    result = yield from train_run(final, data, registry, run)
    seen, extra = set(result.notes), []
    for f, r in enumerate(results):  # what the folds noted (the probe's fit, a fold reused ...), once each
        for note in r.notes:
            if note not in seen:
                seen.add(note)
                extra.append(note if note.startswith(f"fold {f + 1} ") else f"fold {f + 1} of {k}: {note}")
    result.notes = extra + result.notes
    for r in results:  # done (the card holds their figures): the same command again is a new cross-validation
        (Path(r.workdir) / ckpt.FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # (its folder too, when nothing else is in it)
            Path(r.workdir).rmdir()
    return result


def summarise(results: list[TrainResult], splits, names: list[str], seed: int) -> dict:
    """What the card records of the folds, and what the final run takes from them."""
    dice = [r.best_val_dice for r in results if r.best_val_dice is not None]
    per_label = {}
    for n in names:
        values = [r.per_label.get(n) for r in results if r.per_label.get(n) is not None]
        per_label[n] = float(np.mean(values)) if values else None
    # the epochs the model gets: the median of the folds' best epochs, over the folds that had a Dice to choose
    # by (a fold whose validation cases hold none of the labels chose by its training loss)
    best_epochs = [max(1, r.best_epoch) for r in results if r.best_val_dice is not None] or \
        [max(1, r.best_epoch) for r in results]
    heads = [r.head_init_used for r in results if r.head_init_used]
    head = max(sorted(set(heads)), key=heads.count) if heads else "auto"
    mean = float(np.mean(dice)) if dice else None
    sd = float(np.std(dice, ddof=1)) if len(dice) > 1 else None
    final_epochs = max(1, math.floor(float(np.median(best_epochs)) + 0.5))
    k = len(results)
    over = f"the {k} folds" if len(dice) == k else \
        f"{len(dice)} of the {k} folds (the others' cases hold none of the labels)"
    text = (f"{k}-fold cross-validation (seed {seed}): validation Dice "
            f"{'n/a' if mean is None else f'{mean:.3f}'}{'' if sd is None else f' ± {sd:.3f}'} over {over} "
            f"(each case validated once, by a model that did not see it); the model itself trained on all the "
            f"cases for {final_epochs} epoch{'s' if final_epochs != 1 else ''} (the folds' median best epoch, its "
            "learning rate decayed over those epochs)")
    return {
        "folds": k, "seed": seed, "val_dice_mean": mean, "val_dice_sd": sd, "per_label_mean": per_label,
        "final_epochs": final_epochs, "head_init_used": head, "description": text,
        "seconds": round(sum(sum(h.get("seconds", 0.0) for h in r.history) for r in results), 1),
        "per_fold": [{"fold": f + 1, "validation_cases": [p.case for p in s.val], "val_dice": r.best_val_dice,
                      "per_label": r.per_label, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                      "stopped_because": r.stopped_because, "head_init_used": r.head_init_used, "run_id": r.run_id}
                     for f, (r, s) in enumerate(zip(results, splits, strict=True))],
    }

