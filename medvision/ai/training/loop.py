"""The epochs of a run: random patches (:class:`.sampling.PatchSampler`), the task's loss, the
optimiser's step (:mod:`.optim`); then validation (:mod:`.validation`, process 0 alone), the best
weights kept, the checkpoint written before the epoch's record is yielded (closing the job at any
yield keeps every finished epoch). The run stops after ``epochs``, when the time budget
(:mod:`.budget`) has no room for another epoch (the last one is cut short to leave room for its
validation, its checkpoint and the package), or when the validation score has not improved for
``patience`` epochs.

Stage ``"training"`` records (done = iteration in the epoch) come about every 20 iterations;
stage ``"epoch"`` records (done = epoch, total = epochs or 0) carry as ``preview`` ``{epoch,
train_loss, val_dice, per_label, lr, seconds, frozen, eta_s, best_val_dice, best_epoch, validated}``
and, in a cross-validation, ``run``."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator

import numpy as np
import torch

from ...core.jobs import Progress
from ..memory import is_out_of_memory
from . import checkpoint as ckpt
from .budget import Budget
from .config import DEFAULT_EPOCHS, Run, clean
from .model import logits_function
from .optim import Optimisation
from .prepare import Setup
from .resume import RunState

__all__ = ["train_epochs", "kept", "out_of_memory"]

log = logging.getLogger(__name__)


def kept(epochs_kept: int) -> str:
    return (f"epoch {epochs_kept}'s checkpoint is kept: a run with the same model id, base and cases resumes from "
            "it" if epochs_kept else "no epoch had finished yet")


def out_of_memory(what: str, epochs_kept: int) -> str:
    """What to tell the user when the GPU has no room for ``what`` (training or validation)."""
    return (f"out of GPU memory while {what}; {kept(epochs_kept)}. Run it on the CPU (device cpu) or with smaller "
            "patches (medvision train --patch 32 --batch-size 1)")


def train_epochs(setup: Setup, opt: Optimisation, state: RunState, budget: Budget, run: Run | None,
                 progress) -> Generator[Progress, None, None]:
    """Job stage: epochs until the run stops (``state.stopped`` says why); ``state`` holds the result."""
    config, group = setup.config, setup.group
    max_epochs = int(config.epochs) if config.epochs else (None if config.minutes else DEFAULT_EPOCHS)
    n_iter = len(setup.sampler)
    resumed = f"resuming run {state.run_id} after epoch {state.epoch}; " if len(state.lineage) > 1 else ""
    yield progress("training", 0, n_iter, f"{resumed}{'fine-tuning' if setup.fine_tune else 'training from scratch'}"
                   f" on {setup.device}, {n_iter} iterations per epoch; {setup.split.description}; checkpoints in "
                   f"{state.workdir}")
    loss_fn = setup.task.loss(config)
    while True:
        state.stopped = group.broadcast(_stop_reason(setup, state, budget, max_epochs))  # (process 0 decides)
        if state.stopped:
            break
        state.epoch += 1
        progress.epoch = state.epoch
        t0 = time.perf_counter()
        frozen = opt.frozen_at(state.epoch - 1)  # at the epoch's start (a fraction unfreezes within it)
        opt.freeze(frozen)
        opt.schedule.horizon = group.broadcast(_horizon(state, budget, max_epochs))
        losses = yield from _train_epoch(setup, opt, state, budget, loss_fn, frozen, progress)
        train_seconds = time.perf_counter() - t0
        group.broadcast_module(setup.net, buffers_only=True)  # process 0's norm statistics
        val_dice, per_label, val_seconds = yield from _validate_epoch(setup, opt, state, budget, progress)
        train_loss = group.mean(float(np.mean(losses))) if losses else None
        _keep_best(setup, state, val_dice, per_label, train_loss)
        state.session_epochs += 1
        record = {"epoch": state.epoch, "train_loss": clean(train_loss), "val_dice": clean(val_dice),
                  "per_label": setup.task.per_label(per_label), "lr": opt.learning_rates()["decoder+head"],
                  "encoder_lr": opt.learning_rates().get("encoder"), "frozen": frozen,
                  "seconds": time.perf_counter() - t0, "train_seconds": train_seconds, "val_seconds": val_seconds,
                  "iterations": len(losses), "session": len(state.lineage)}
        state.history.append(record)
        _save_checkpoint(setup, opt, state, budget, record)
        dice = "n/a" if val_dice is None else f"{val_dice:.3f}"
        yield progress("epoch", state.epoch, max_epochs or 0,
                       f"epoch {state.epoch}: loss {train_loss:.4f}, validation Dice {dice}",
                       preview=_preview(setup, state, budget, run, record, max_epochs))
    _note_budget(setup, state, budget, n_iter)


def _stop_reason(setup: Setup, state: RunState, budget: Budget, max_epochs: int | None) -> str:
    config = setup.config
    if max_epochs is not None and state.epoch >= max_epochs:
        return f"{max_epochs} epochs done"
    if budget.limited and state.session_epochs and \
            (state.cut_short or not budget.room_for_iteration(bool(setup.val_regions))):
        return f"time budget of {config.minutes:g} min used"
    if config.patience and state.bad_epochs >= config.patience:
        return f"early stopping: no better validation Dice for {config.patience} epochs"
    return ""


def _horizon(state: RunState, budget: Budget, max_epochs: int | None) -> float | None:
    """Where the cosine decay ends: the planned epochs, or where the time budget is expected to end."""
    horizons = [max_epochs] if max_epochs else []
    if budget.limited and state.session_epochs:
        horizons.append(state.epoch - 1 + max(0.0, budget.left()) / (state.elapsed() / state.session_epochs))
    return min(horizons) if horizons else None


def _train_epoch(setup: Setup, opt: Optimisation, state: RunState, budget: Budget, loss_fn, frozen: bool,
                 progress) -> Generator[Progress, None, list[float]]:
    """One epoch's iterations (an epoch started does at least one: the loop's start checked for room)."""
    group, device, epoch = setup.group, setup.device, state.epoch
    fn = logits_function(setup.net)
    n_iter = len(setup.sampler)
    validate_after = bool(setup.val_regions) and group.main
    losses: list[float] = []
    for it, (x, y) in enumerate(setup.sampler.epoch(epoch)):
        if it:
            state.cut_short = budget.limited and not budget.room_for_iteration(validate_after)
            if group.several and budget.limited:
                state.cut_short = group.broadcast(state.cut_short)  # (process 0's clock decides)
            if state.cut_short:
                break
        t_it = time.perf_counter()
        if frozen and not opt.frozen_at(epoch - 1 + it / n_iter):
            frozen = False
            opt.freeze(False)
        opt.set_lr(epoch - 1 + (it + 1) / n_iter)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        try:
            with torch.autocast("cuda", dtype=torch.float16, enabled=opt.use_amp):
                loss = loss_fn(fn(x), y)
            opt.step(loss, group.average_gradients)
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise RuntimeError(out_of_memory("training", epoch - 1)) from exc
            raise
        losses.append(float(loss.detach()))
        state.session_iterations += 1
        budget.saw_iteration(time.perf_counter() - t_it, state.session_iterations)
        if (it + 1) % 20 == 0:
            yield progress("training", it + 1, n_iter, f"epoch {epoch}: loss {np.mean(losses):.4f}")
    return losses


def _validate_epoch(setup: Setup, opt: Optimisation, state: RunState, budget: Budget, progress):
    """(validation score, per label, seconds) after an epoch: process 0 alone validates, when the budget
    leaves room (none for a cross-validation's final model, which has no validation data)."""
    validating = bool(setup.val_regions) and setup.group.main
    if validating and not budget.room_for_validation():
        validating = False
        state.skipped_validation.append(state.epoch)
    if not validating:
        return None, setup.task.no_scores(), 0.0
    yield progress("validation", 0, len(setup.val_regions), f"epoch {state.epoch}")
    t1 = time.perf_counter()
    try:
        val_dice, per_label = setup.task.validate(setup.net, setup.val_regions, setup.val_patch,
                                                  setup.config.batch_size, setup.device, opt.use_amp)
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            raise RuntimeError(out_of_memory("validating", state.epoch - 1)) from exc
        raise
    seconds = time.perf_counter() - t1
    budget.saw_validation(seconds)
    return val_dice, per_label, seconds


def _keep_best(setup: Setup, state: RunState, val_dice, per_label, train_loss) -> None:
    """The epoch's weights kept when its score beats the best (process 0's: the others' is not used)."""
    # no validation data (a cross-validation's final model): the last epoch is kept
    score = val_dice if val_dice is not None else float(state.epoch) if not setup.val_regions else -(train_loss or 0.0)
    if state.skipped_validation and state.skipped_validation[-1] == state.epoch and setup.group.main:
        score = -math.inf  # not validated: not the best (the last weights are kept when no epoch was)
    best = state.best
    if score > best.score + 1e-4:
        best.score, best.val_dice, best.per_label, best.epoch = score, val_dice, per_label, state.epoch
        best.weights = ({k: v.detach().to("cpu", copy=True) for k, v in setup.net.state_dict().items()}
                        if setup.group.main else None)
        state.bad_epochs = 0
    else:
        state.bad_epochs += 1


def _save_checkpoint(setup: Setup, opt: Optimisation, state: RunState, budget: Budget, record: dict) -> None:
    t2 = time.perf_counter()
    try:
        if setup.group.main:
            ckpt.save_checkpoint(state.workdir, state.checkpoint(setup.config, setup, opt))
    except ckpt.CheckpointError as exc:
        raise RuntimeError(f"{exc}; " + (f"{kept(state.epoch - 1)} once there is room" if state.epoch > 1 else
                                         "no epoch is kept: free some space and start again")) from exc
    record["checkpoint_seconds"] = time.perf_counter() - t2
    budget.saw_checkpoint(record["checkpoint_seconds"])


def _preview(setup: Setup, state: RunState, budget: Budget, run: Run | None, record: dict,
             max_epochs: int | None) -> dict:
    """The epoch's record as the progress shows it, with the time left (of the runs after it too)."""
    elapsed = state.elapsed()
    per_epoch = elapsed / state.session_epochs
    etas = [max(0.0, budget.left())] if budget.limited else []
    if max_epochs is not None:
        etas.append((max_epochs - state.epoch) * per_epoch)
    preview = {k: record[k] for k in ("epoch", "train_loss", "val_dice", "per_label", "lr", "seconds", "frozen")}
    eta = min(etas) if etas else None
    if eta is not None and run is not None and run.runs_after:  # the runs after this one, about as long
        eta += run.runs_after * (state.seconds_before + elapsed + eta)
    preview.update(eta_s=eta, best_val_dice=state.best.val_dice, best_epoch=state.best.epoch,
                   validated=bool(setup.val_regions))
    if run is not None:
        preview["run"] = run.label
    return preview


def _note_budget(setup: Setup, state: RunState, budget: Budget, n_iter: int) -> None:
    """What the time budget cut: epochs not validated, the last epoch cut short."""
    minutes = setup.config.minutes
    skipped = state.skipped_validation
    if skipped:
        setup.notes.append(f"epoch{'s' if len(skipped) > 1 else ''} {', '.join(map(str, skipped))} not validated: "
                           f"the time budget ({minutes:g} min) had no room left for it")
    if state.cut_short:
        setup.notes.append(f"epoch {state.epoch} was cut short ({state.history[-1]['iterations']} of {n_iter} "
                           f"iterations) to end within the time budget of {minutes:g} min (the whole run counts: "
                           f"{budget.elapsed():.0f} s before the package)")
