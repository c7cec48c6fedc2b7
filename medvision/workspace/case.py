"""The case being annotated: its label map, undo history, where it is saved, and its autosave.

A :class:`WorkingCase` knows nothing of windows or threads of a GUI toolkit. It owns the working
:class:`~medvision.core.labels.LabelMap` of one image (made on the first edit), its
:class:`~medvision.core.edits.History`, the active label, the edit rules, what the labels belong to
(the image source, a project case) and where "Save" writes them. Saving routes by destination: a
file ending in ``.dcm`` becomes DICOM SEG referencing the DICOM series, another path NIfTI/NRRD plus
a JSON table, no path the case of an annotation project. Unsaved edits are autosaved into a recovery
slot (:mod:`medvision.workspace.recovery`) on a background thread; a clean save removes the slot.

The window binds a case to its widgets (:class:`medvision.ui.annotating.annotation.Annotation`): it passes the
history's callbacks on to the GUI thread, draws the labels and runs long edits as jobs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..annotate.rules import EditRules
from ..core.edits import Box, Edit, History
from ..core.labels import Label, LabelMap, LabelTable
from ..core.volume import Volume
from .recovery import RecoverySlot

__all__ = ["SEG_SUFFIXES", "WorkingCase", "autosave_seconds", "read_labels", "write_labels"]

log = logging.getLogger(__name__)

#: labels saved as DICOM SEG when the file name ends so
SEG_SUFFIXES = (".dcm",)


def autosave_seconds() -> float:
    """Seconds between autosaves of unsaved edits (``MEDVISION_AUTOSAVE_S``, default 10, at least 0.5)."""
    try:
        return max(0.5, float(os.environ.get("MEDVISION_AUTOSAVE_S", "10")))
    except ValueError:
        return 10.0


def write_labels(labels: LabelMap, volume: Volume | None, path: str | None, project: Any = None,
                 case_id: str | None = None) -> Path:
    """Write ``labels`` where they belong: a ``.dcm`` path as DICOM SEG referencing the DICOM series
    of ``volume``, another path as NIfTI/NRRD + JSON table, no path into ``project``'s case."""
    if path is None:
        if project is None or case_id is None:
            raise ValueError("no file to save the labels to")
        return project.save_labels(project.case(case_id), labels)
    if str(path).lower().endswith(SEG_SUFFIXES):
        from ..io.seg import write_seg

        if volume is None:
            raise ValueError("a DICOM SEG needs the image it labels")
        write_seg(labels, volume, path)
        return Path(path)
    from ..io.labels import save_labels

    return save_labels(labels, path)


def read_labels(path: str, volume: Volume) -> LabelMap:
    """Labels from a file (NIfTI/NRRD/MHA, DICOM SEG, RTSTRUCT) placed on ``volume``'s grid."""
    from ..io.labels import load_labels

    return load_labels(path, reference=volume)


class WorkingCase:
    """The working labels of one image and what belongs to them (see the module docstring).

    ``on_voxels(box)`` and ``on_state()`` are passed to every new history: they are called from
    whichever thread edits. ``on_replaced()`` is called after :meth:`set_labels`.
    """

    def __init__(self, *, on_voxels: Callable[[Box | None], None] | None = None,
                 on_state: Callable[[], None] | None = None,
                 on_replaced: Callable[[], None] | None = None,
                 recovery_root: Path | None = None) -> None:
        self.labels: LabelMap | None = None
        self.history: History | None = None
        self.active = 0
        self.rules = EditRules()
        #: what the labels belong to: the image source (path, series UID) shown in the window
        self.source: tuple[str, str | None] | None = None
        #: where "Save" writes: a label file path, or None (ask, or the project case)
        self.target: str | None = None
        #: an annotation project and case id, when the image is a project case
        self.project: Any = None
        self.case_id: str | None = None
        #: the table new label maps start with (a project's shared table)
        self.default_table: LabelTable | None = None
        #: the history version on disk where Save writes (-1: never saved there, e.g. a recovery)
        self.saved_version = 0
        #: the last autosave failure ("" when the last autosave worked)
        self.autosave_error = ""
        self._on_voxels, self._on_state, self._on_replaced = on_voxels, on_state, on_replaced
        self._recovery_root = recovery_root
        self._slot: RecoverySlot | None = None
        self._autosaving = False
        self._autosave_lock = threading.Lock()

    # ---- state ----------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """Edits (or table changes) not yet saved where Save writes."""
        return self.history is not None and self.history.version != self.saved_version

    def _changed(self) -> None:
        if self._on_state is not None:
            self._on_state()

    # ---- the label map --------------------------------------------------------------------
    def new_labels(self, volume: Volume) -> LabelMap:
        """An empty label map on ``volume``'s grid with the default table (a project's, or none)."""
        table = self.default_table.copy() if self.default_table is not None else LabelTable()
        return LabelMap.empty_like(volume, table)

    def set_labels(self, labels: LabelMap | None, *, grid: Volume | None = None, target: str | None = None,
                   saved: bool = True) -> None:
        """Make ``labels`` (on ``grid``, the image on screen) the working labels; the history starts
        empty. ``saved`` False: they are not on disk yet where Save would write them (a recovery)."""
        if self._slot is not None:
            self._slot.discard()
            self._slot = None
        if labels is not None and (grid is None or labels.shape != grid.shape[-3:]):
            raise ValueError("labels must lie on the grid of the image on screen")
        self.labels = labels
        self.target = target
        self.history = None
        self.saved_version = 0
        if labels is not None:
            self.history = History(labels)
            if self._on_voxels is not None:
                self.history.on_data(self._on_voxels)
            if self._on_state is not None:
                self.history.on_state(self._on_state)
            if not saved:
                self.saved_version = -1
            values = labels.table.values()
            self.active = self.active if self.active in values else (values[0] if values else 0)
        else:
            self.active = 0
        if self._on_replaced is not None:
            self._on_replaced()

    def clear(self) -> None:
        """Forget the working labels and the project case (the user chose to discard them)."""
        self.set_labels(None)
        self.project, self.case_id = None, None

    def keeps_labels_for(self, volume: Volume | None) -> bool:
        """Whether the working labels stay when ``volume`` replaces the image (the same grid again)."""
        return (self.labels is not None and volume is not None and not volume.metadata.get("partial")
                and self.labels.on_grid_of(volume) and self.labels.shape == volume.shape[-3:])

    def image_replaced(self, volume: Volume | None) -> bool:
        """Follow a new image on screen: keep the labels on the same grid, otherwise forget them and
        the case (a partly loaded image without labels changes nothing yet). True if they were kept."""
        if self.keeps_labels_for(volume):
            return True
        if volume is not None and volume.metadata.get("partial") and self.labels is None:
            return False
        if self.labels is not None or self.history is not None:
            self.set_labels(None)
        self.project, self.case_id, self.target = None, None, None
        return False

    # ---- the label table ------------------------------------------------------------------
    def table_edited(self) -> None:
        """Note a change of the table (names, colours, visibility, locks, codes): it is saved with
        the labels, so it is an unsaved change."""
        if self.history is not None:
            self.history.version += 1

    def add_label(self, name: str | None = None, color: Any = None, **kwargs: Any) -> Label:
        """Add a label to the table (the label map must exist) and make it active."""
        if self.labels is None:
            raise ValueError("no labels to add a label to")
        label = self.labels.table.add(name, color, **kwargs)
        self.labels.ensure_value_fits(label.value)
        self.table_edited()
        self.active = label.value
        return label

    def remove_label(self, value: int) -> bool:
        """Erase a label's voxels (one undo step) and drop it from the table; the first remaining
        label becomes active if it was. False when there is no such label."""
        if self.labels is None or self.history is None or value not in self.labels.table:
            return False
        mask = self.labels.array == value
        if mask.any():
            self.history.write(tuple(slice(0, n) for n in mask.shape), np.zeros((), self.labels.array.dtype),
                               mask=mask, description=f"delete {self.labels.table[value].name}")
        self.labels.table.remove(value)
        if self.active == value:
            values = self.labels.table.values()
            self.active = values[0] if values else 0
        self.table_edited()
        return True

    def paint_value(self) -> tuple[int | None, str]:
        """The label new paint goes into (made when there is none yet, "Label 1"), or None and the
        reason: there are no labels (the caller makes them first) or the label is locked."""
        if self.labels is None:
            return None, "nothing to label: open an image first (or wait until it has loaded)"
        if self.active not in self.labels.table:
            self.add_label()
        label = self.labels.table[self.active]
        if label.locked:
            return None, f"{label.name} is locked: unlock it in the label table to edit it"
        return self.active, ""

    # ---- undo -----------------------------------------------------------------------------
    def undo(self) -> Edit | None:
        return None if self.history is None else self.history.undo()

    def redo(self) -> Edit | None:
        return None if self.history is None else self.history.redo()

    def close_open_edits(self) -> None:
        """Close an edit a failed operation left open: what it changed stays one undoable step."""
        while self.history is not None and self.history.in_edit:
            self.history.end()

    # ---- files ----------------------------------------------------------------------------
    def snapshot(self) -> LabelMap:
        """A copy of the labels (for a save or an autosave while editing goes on)."""
        if self.labels is None:
            raise ValueError("no labels")
        lm = self.labels
        return LabelMap(lm.array.copy(), lm.affine.copy(), lm.table.copy(), name=lm.name)

    def save_plan(self, path: str | None, volume: Volume | None) -> Callable[[], Path]:
        """What saving to ``path`` (default: the target, else the project case) does, as a function
        to run on any thread; it writes a snapshot of now. Record the result with :meth:`saved`."""
        if self.labels is None or self.history is None:
            raise ValueError("no labels to save")
        path = path or self.target
        if path is None and self.project is None:
            raise ValueError("no file to save the labels to")
        snapshot = self.snapshot()
        project, case_id = (self.project, self.case_id) if path is None else (None, None)
        return lambda: write_labels(snapshot, volume, path, project, case_id)

    def saved(self, version: int, path: str | None) -> None:
        """Record a save of history ``version`` (to ``path``, which becomes the target; None: the
        project case). The recovery slot goes when nothing was edited since."""
        if path is not None:
            self.target = path
        self.saved_version = version
        if self.history is not None and self.history.version == version and self._slot is not None:
            self._slot.discard()
            self._slot = None

    def open_labels(self, path: str, labels: LabelMap, grid: Volume) -> None:
        """Make labels read from ``path`` the working labels; their file becomes the Save target
        unless it is DICOM (Save then asks where, as NIfTI)."""
        dicom = str(path).lower().endswith(SEG_SUFFIXES)
        self.set_labels(labels, grid=grid, target=None if dicom else str(path), saved=True)

    # ---- autosave -------------------------------------------------------------------------
    def autosave_due(self) -> bool:
        """Unsaved edits newer than the last autosave, no edit in progress, no autosave running."""
        if self.labels is None or self.history is None or self.history.in_edit or not self.dirty:
            return False
        if self._slot is not None and self._slot.saved_version == self.history.version:
            return False
        return not self._autosaving

    def autosave(self, *, wait: bool = False) -> None:
        """Save unsaved edits into the recovery slot, on a background thread unless ``wait``
        (nothing when up to date). A failure is logged once and kept in ``autosave_error``."""
        if not self.autosave_due():
            return
        assert self.history is not None
        if self._slot is None:
            path, series = self.source or ("", None)
            self._slot = RecoverySlot(path, target=self.target, series=series,
                                      project=str(self.project.folder) if self.project is not None else None,
                                      case=self.case_id, root=self._recovery_root)
        slot, snapshot, version = self._slot, self.snapshot(), self.history.version
        slot.target = self.target
        self._autosaving = True

        def write() -> None:
            try:
                with self._autosave_lock:
                    slot.save(snapshot, version)
                self.autosave_error = ""
            except OSError as exc:
                if not self.autosave_error:
                    log.error("autosave into %s failed: %s", slot.dir, exc)
                self.autosave_error = str(exc)
            finally:
                self._autosaving = False

        if wait:
            write()
        else:
            threading.Thread(target=write, name="autosave", daemon=True).start()

    def wait_autosave(self, timeout_s: float = 30.0) -> None:
        """Wait for a running autosave to end."""
        if self._autosave_lock.acquire(timeout=timeout_s):
            self._autosave_lock.release()

    def discard_recovery(self) -> None:
        """Remove this session's autosave (the user discarded the edits, or they are saved)."""
        self.wait_autosave()
        if self._slot is not None:
            self._slot.discard()
            self._slot = None

    def keep_recovery(self) -> None:
        """Leave this session's autosave in the recovery area (offered at the next start)."""
        self.wait_autosave()
        self._slot = None

    @property
    def recovery_dir(self) -> Path | None:
        return None if self._slot is None else self._slot.dir
