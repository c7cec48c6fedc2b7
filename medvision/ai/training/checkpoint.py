"""A training run's checkpoint: written after every epoch, atomically, loadable with
``torch.load(weights_only=True)`` (tensors, dicts, lists, numbers, strings only).

It holds the model, the best weights so far, optimizer, scheduler and grad-scaler states, the
epoch, the history, the random states, the config, the run's identity (base model, new id, data
hash, architecture, from scratch or not), its ``run_id`` and ``lineage`` (one entry per session:
a run stopped and resumed keeps its run id and appends to its lineage).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import random
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from ...core.atomic import write_bytes

__all__ = ["FILE", "CheckpointError", "disk_problem", "identity_key", "load_checkpoint", "save_checkpoint",
           "set_aside", "rng_states", "restore_rng_states", "new_run_id", "now"]

log = logging.getLogger(__name__)

FILE = "checkpoint.pt"
FORMAT = "medvision-training-checkpoint"


class CheckpointError(RuntimeError):
    """The checkpoint could not be written (full disk, no permission): the previous one is intact."""


def disk_problem(exc: BaseException, folder: Path, needed: int | None = None) -> str:
    """Why writing into ``folder`` failed, in words: a full disk says how much room is left (and how
    much the file needed, ``needed`` bytes, when known)."""
    text = str(exc)
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "os error 28" in text:
        try:
            free = shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists())).free
            left = f"{free / 2**20:.0f} MiB free"
        except (OSError, StopIteration):
            left = ""
        sizes = ", ".join(t for t in (left, needed and f"{needed / 2**20:.0f} MiB needed") if t)
        return f"the disk is full ({sizes})" if sizes else "the disk is full"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return text


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def identity_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def rng_states() -> dict:
    """torch, numpy and Python random states as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    out = {"torch": torch.random.get_rng_state(),
           "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached": float(cached)},
           "python": {"version": int(version), "state": list(internal), "gauss": gauss}}
    if torch.cuda.is_available():
        out["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng_states(states: dict) -> None:
    try:
        torch.random.set_rng_state(states["torch"])
        n = states["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        p = states["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
        if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        log.warning("random states not restored (%s): the resumed run continues with fresh ones", exc)


def save_checkpoint(workdir: Path, state: dict) -> Path:
    """Write ``state`` as the run's checkpoint: serialised in memory, then written atomically
    (:func:`medvision.core.atomic.write_bytes`), so that a failure leaves the previous checkpoint
    whole; a failure to write raises :class:`CheckpointError` saying why (a full disk, in words,
    where torch would say only "unexpected pos")."""
    buffer = io.BytesIO()
    torch.save(dict(state, format=FORMAT), buffer)
    path = workdir / FILE
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        write_bytes(path, buffer.getbuffer())
    except OSError as exc:
        raise CheckpointError(f"could not write the training checkpoint in {workdir}: "
                              f"{disk_problem(exc, workdir, buffer.tell())}") from exc
    return path


def load_checkpoint(workdir: Path, set_aside_bad: bool = True) -> dict | None:
    """The checkpoint in ``workdir`` (None when there is none or it is unreadable: then set aside,
    unless ``set_aside_bad`` is False)."""
    path = workdir / FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is set aside, not fatal
        log.warning("%s: unreadable checkpoint (%s)%s", path, exc,
                    ": set aside, a new run starts" if set_aside_bad else "")
        if set_aside_bad:
            set_aside(workdir, "unreadable")
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        log.warning("%s: not a medvision training checkpoint%s", path, ": set aside" if set_aside_bad else "")
        if set_aside_bad:
            set_aside(workdir, "unknown")
        return None
    return state


#: no run trains this many epochs: a checkpoint that says more is damaged (or made to install an untrained model)
MAX_EPOCHS = 100_000


def _shapes_fit(weights, want: dict) -> str | None:
    if not isinstance(weights, dict) or set(weights) != set(want):
        return "holds weights of another network"
    for k, t in weights.items():
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(want[k].shape):
            return f"holds weights of another shape ({k})"
    return None


def contents_problem(state: dict, model_state: dict, epochs: int | None = None) -> str | None:
    """Why a checkpoint that loads cannot be resumed (None: it can): every field of the type and range a run
    writes, the epoch within the run's (and history's) length, the weights of the network's shapes."""
    ints = {k: state.get(k) for k in ("epoch", "bad_epochs", "best_epoch")}
    bad = [k for k, v in ints.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if bad:
        return f"has an {bad[0]} of {ints[bad[0]]!r}"
    epoch = ints["epoch"]
    limit = min(MAX_EPOCHS, epochs) if epochs else MAX_EPOCHS
    if epoch > limit:
        return f"says {epoch} epochs were trained, more than the run's {limit}"
    if not isinstance(state.get("history"), list) or len(state["history"]) != epoch:
        return f"has a history of {len(state.get('history') or [])} epochs for epoch {epoch}"
    if ints["best_epoch"] > epoch:
        return f"has a best epoch ({ints['best_epoch']}) after its last ({epoch})"
    score = state.get("best_score")
    if not isinstance(score, int | float) or isinstance(score, bool) or score != score:
        return f"has a best score of {score!r}"
    for key, kind in (("run_id", str), ("lineage", list), ("optimizer", dict), ("scheduler", dict), ("rng", dict),
                      ("best_per_label", list)):
        if not isinstance(state.get(key), kind):
            return f"has a {key} of type {type(state.get(key)).__name__}"
    problem = _shapes_fit(state.get("model"), model_state)
    if problem:
        return problem
    if state.get("best_model") is not None:
        problem = _shapes_fit(state["best_model"], model_state)
        if problem:
            return "best model " + problem
    return None


def set_aside(workdir: Path, tag: str) -> Path | None:
    """Rename the checkpoint to ``checkpoint-<tag>.pt`` (kept, no longer resumed)."""
    path = workdir / FILE
    if not path.exists():
        return None
    dest = workdir / f"checkpoint-{tag}.pt"
    n = 2
    while dest.exists():
        dest = workdir / f"checkpoint-{tag}-{n}.pt"
        n += 1
    os.replace(path, dest)
    return dest
