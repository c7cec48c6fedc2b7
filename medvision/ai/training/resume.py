"""A run's identity, its work folder and its state across epochs and sessions: a new run, one
resumed from its checkpoint, or (a cross-validation's fold that finished earlier with the same
settings) one whose result is reused. The checkpoint itself is :mod:`.checkpoint`'s."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from ...core.jobs import Progress
from . import checkpoint as ckpt
from .config import Run, TrainConfig, same_settings
from .optim import Optimisation
from .prepare import Setup

__all__ = ["Best", "RunState", "open_run", "mark_finished"]

log = logging.getLogger(__name__)


@dataclass
class Best:
    """The best epoch so far: its score (validation Dice, or what stands for it), figures and weights."""

    score: float = -math.inf
    val_dice: float | None = None
    per_label: list = field(default_factory=list)
    epoch: int = 0
    weights: dict | None = None


@dataclass
class RunState:
    """What a run carries from epoch to epoch (and, through its checkpoint, across sessions), and what this
    session has done so far."""

    run_id: str
    lineage: list[dict]
    identity: dict
    workdir: Path
    best: Best
    history: list[dict] = field(default_factory=list)
    epoch: int = 0
    bad_epochs: int = 0
    seconds_before: float = 0.0  # the sessions before this one
    head_used: str = ""  # the head training started from, and how it was fitted
    head_note: str | None = None
    resumed: bool = False
    # this session
    session_start: float = field(default_factory=time.perf_counter)
    session_epochs: int = 0
    session_iterations: int = 0
    cut_short: bool = False  # an epoch ended early for the time budget
    skipped_validation: list[int] = field(default_factory=list)  # epochs the budget left no room to validate
    stopped: str = ""

    def elapsed(self) -> float:
        """Seconds of this session."""
        return time.perf_counter() - self.session_start

    def checkpoint(self, config: TrainConfig, setup: Setup, opt: Optimisation) -> dict:
        """The checkpoint's contents after the current epoch."""
        return {
            "run_id": self.run_id, "lineage": self.lineage, "identity": self.identity, "config": config.as_dict(),
            "epoch": self.epoch, "model": setup.net.state_dict(), "best_model": self.best.weights,
            "best_score": float(self.best.score), "best_val_dice": self.best.val_dice,
            "best_per_label": self.best.per_label, "best_epoch": self.best.epoch, "bad_epochs": self.bad_epochs,
            **opt.state(), "history": self.history, "rng": ckpt.rng_states(), "seconds": self.seconds_before
            + self.elapsed(), "head_used": self.head_used, "head_note": self.head_note, "finished": False}


def identity(config: TrainConfig, setup: Setup, data_hash: str, run: Run | None) -> dict:
    """What a checkpoint must match to be resumed: the base, the new id, the data, and what changes the run."""
    out = {"base": setup.base.id, "base_version": setup.base.version, "new_id": config.new_id,
           "data_hash": data_hash, "architecture": setup.tn.spec["name"],
           "from_scratch": bool(config.from_scratch), "transfer": config.transfer,
           "spacing_mm": list(setup.target) if setup.target else None, "head_init": setup.head_init,
           "sampling": config.sampling}
    if setup.conformed:
        out["conformed_crop"] = setup.conformed.crop
    if config.val_slab:  # (only when set: checkpoints of runs before the option still resume)
        out["val_slab"] = config.val_slab
    if run is not None:
        out.update(run.identity)
    return out


def open_run(config: TrainConfig, setup: Setup, opt: Optimisation, data_hash: str, run: Run | None,
             progress) -> Generator[Progress, None, tuple[str, RunState]]:
    """Job stage: (how the run starts: "new", "resume" or "reuse", its state). Process 0 decides; the
    others read the checkpoint it kept. A resumed run's network and optimiser are restored here."""
    group, net = setup.group, setup.net
    ident = identity(config, setup, data_hash, run)
    key = ckpt.identity_key(ident)
    workdir = Path(config.workdir) if config.workdir else _default_workdir(config.new_id, key)
    if config.workdir and run is not None:
        workdir = workdir / run.subdir
    state, start = None, "new"
    if group.main:
        state = _resumable_checkpoint(workdir, net, config.epochs, setup.notes)
        if state is not None and state.get("identity") == ident and state.get("finished") and run is not None \
                and not run.export and same_settings(state.get("config"), config):
            start = "reuse"  # a cross-validation's fold that finished, with these settings, before it was stopped
        elif state is not None and (state.get("identity") != ident or state.get("finished")):
            ckpt.set_aside(workdir, f"{state.get('run_id', 'old')}{'-finished' if state.get('finished') else ''}")
            state = None
        start = "resume" if state is not None and start == "new" else start
    start = group.broadcast(start)
    if not group.main and start != "new":
        state = ckpt.load_checkpoint(workdir, set_aside_bad=False)
        if state is None:
            raise RuntimeError(f"process {group.rank} cannot read the checkpoint process 0 resumes from in {workdir}: "
                               "run the processes on one machine, or give --workdir a folder they all see")
    if start == "reuse":
        setup.notes.append(f"{run.label} finished in an earlier session (run {state['run_id']}): its result is reused")
        yield progress("epoch", int(state["epoch"]), int(state["epoch"]), "finished earlier")
        return start, _finished_state(state, ident, workdir)
    if state is None:
        return start, RunState(ckpt.new_run_id(), [{"session": 1, "started": ckpt.now(), "from_epoch": 0,
                                                     "device": setup.device}], ident, workdir,
                               Best(per_label=setup.task.no_scores()), head_used=setup.head_init)
    return start, _resumed(state, ident, workdir, setup, opt)


def _resumed(state: dict, ident: dict, workdir: Path, setup: Setup, opt: Optimisation) -> RunState:
    """The run's state from its checkpoint; network, optimiser and (process 0's) random states restored."""
    setup.net.load_state_dict(state["model"])
    opt.restore(state)
    if setup.group.main:  # (the others' patches come from their own seeds)
        ckpt.restore_rng_states(state["rng"])
    best = Best(score=float(state["best_score"]), val_dice=state["best_val_dice"],
                per_label=list(state["best_per_label"]), epoch=int(state["best_epoch"]), weights=state["best_model"])
    out = RunState(state["run_id"], list(state["lineage"]), ident, workdir, best, history=list(state["history"]),
                   epoch=int(state["epoch"]), bad_epochs=int(state["bad_epochs"]),
                   seconds_before=float(state.get("seconds", 0.0)), head_used=state.get("head_used", setup.head_init),
                   head_note=state.get("head_note"), resumed=True)
    if out.head_note:
        setup.notes.append(out.head_note)
    out.lineage.append({"session": len(out.lineage) + 1, "started": ckpt.now(), "from_epoch": out.epoch,
                        "device": setup.device})
    setup.notes.append(f"resumed run {out.run_id} after epoch {out.epoch} (session {len(out.lineage)})")
    return out


def _finished_state(state: dict, ident: dict, workdir: Path) -> RunState:
    """A finished fold's state, from its checkpoint (nothing restored: its result is reused)."""
    best = Best(val_dice=state["best_val_dice"], per_label=list(state["best_per_label"]),
                epoch=int(state["best_epoch"]))
    return RunState(state["run_id"], list(state["lineage"]), ident, workdir, best, history=list(state["history"]),
                    epoch=int(state["epoch"]), head_used=state.get("head_used", ""),
                    stopped=state.get("stopped_because", ""))


def mark_finished(workdir: Path, **extra) -> bool:
    """Mark the run's checkpoint finished (with ``extra``); False (logged) when it cannot be written."""
    state = ckpt.load_checkpoint(workdir)
    if state is None:
        return False
    state.update(finished=True, **extra)
    try:
        ckpt.save_checkpoint(workdir, state)
    except ckpt.CheckpointError as exc:
        log.warning("%s; the run's checkpoint is not marked finished", exc)
        return False
    return True


def _resumable_checkpoint(workdir: Path, net, epochs: int | None, notes: list[str]) -> dict | None:
    """The checkpoint to resume from, or None. One that loads but cannot be resumed (an epoch of "abc" or 10^9,
    weights of other shapes) is set aside like an unreadable one and never trusted."""
    state = ckpt.load_checkpoint(workdir)
    problem = ckpt.contents_problem(state, net.state_dict(), epochs) if state is not None else None
    if not problem:
        return state
    kept = ckpt.set_aside(workdir, "bad")
    log.warning("%s: the checkpoint %s: set aside as %s, a new run starts", workdir, problem, kept)
    notes.append(f"the checkpoint in {workdir} {problem}: set aside as {kept.name if kept else '?'}, a new run "
                 "started")
    return None


def _default_workdir(new_id: str, key: str) -> Path:
    from ...paths import cache_dir

    return cache_dir() / "training" / f"{new_id}-{key[:12]}"
