"""Autosave and crash recovery for labels being edited.

While labels are edited, the window saves them every few seconds of editing into a recovery slot
(``<data dir>/recovery/<slot>/``: the labels as NIfTI + JSON table, and ``state.json`` saying what
image they belong to, where they were to be saved, which project case, when, by which process).
Every write is atomic, so a slot always holds a complete earlier save. A clean save or close
removes the slot. At the next start, slots whose process is gone are offered for restore.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import private_dir, write_text
from ..core.labels import LabelMap
from ..io.labels import load_labels, save_labels
from ..paths import data_dir

__all__ = ["RecoverySlot", "Recovered", "pending", "recovery_root"]

log = logging.getLogger(__name__)


def recovery_root() -> Path:
    return private_dir(data_dir() / "recovery")


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot) from /proc; "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str = "") -> bool:
    if pid <= 0:
        return False
    if started and _start_time(pid) not in ("", started):
        return False  # the number now belongs to another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) is not alive for our purpose
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class RecoverySlot:
    """The autosave slot of one label map being edited in this process."""

    def __init__(self, image_source: str, *, target: str | None = None, project: str | None = None,
                 case: str | None = None, series: str | None = None, root: Path | None = None) -> None:
        self.dir = (root or recovery_root()) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.image_source, self.target, self.project, self.case = image_source, target, project, case
        self.series = series  # the Series Instance UID of a DICOM image source
        self.saved_version: int | None = None
        self.saved_at: float | None = None

    def save(self, labels: LabelMap, version: int) -> Path:
        """Write ``labels`` (edit ``version``) into the slot; the state file goes last."""
        private_dir(self.dir)
        save_labels(labels, self.dir / "labels.nii.gz", fast=True, private=True)
        saved_at = time.time()
        state = {"pid": os.getpid(), "pid_started": _start_time(os.getpid()), "image": self.image_source,
                 "series": self.series,
                 "target": self.target, "project": self.project,
                 "case": self.case, "version": version, "saved_at": saved_at,
                 "saved": time.strftime("%Y-%m-%d %H:%M:%S"), "labels_name": labels.name}
        write_text(self.dir / "state.json", json.dumps(state, indent=1), private=True)
        self.saved_version, self.saved_at = version, saved_at
        return self.dir

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Recovered:
    """A slot left by a process that is gone."""

    dir: Path
    state: dict

    @property
    def image(self) -> str:
        return str(self.state.get("image") or "")

    def describe(self) -> str:
        where = f" (case {self.state['case']})" if self.state.get("case") else ""
        return f"labels on {self.image}{where}, autosaved {self.state.get('saved', '?')}"

    def load(self, reference=None) -> LabelMap:
        return load_labels(self.dir / "labels.nii.gz", reference=reference)

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def pending(root: Path | None = None) -> list[Recovered]:
    """Slots whose process has ended without removing them (a crash, a kill), newest first."""
    root = root or recovery_root()
    out = []
    for slot in sorted(root.iterdir(), reverse=True) if root.exists() else []:
        state_file = slot / "state.json"
        if not state_file.exists():
            if slot.is_dir() and time.time() - slot.stat().st_mtime > 3600:
                shutil.rmtree(slot, ignore_errors=True)  # a first save that never completed
            continue
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: unreadable recovery state; left alone", slot)
            continue
        pid = int(state.get("pid", 0))
        if pid == os.getpid() or _alive(pid, str(state.get("pid_started", ""))):
            continue  # this window's own slot, or another medvision window still working on it
        out.append(Recovered(slot, state))
    return out
