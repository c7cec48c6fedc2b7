"""The labels being edited in the window: label map, undo history, overlay, files and autosave.

One :class:`Annotation` lives beside the :class:`~medvision.ui.viewer.Viewer`. It owns the working
:class:`~medvision.core.labels.LabelMap` of the volume on screen (made on the first edit), its
:class:`~medvision.core.edits.History`, the overlay layer the views draw, and where the labels go
when saved (a file, or a case of an annotation project). While labels are edited it autosaves them
into a recovery slot every few seconds (atomic writes, on a worker thread); a clean save removes
the slot. Long edits (smoothing, growing, thresholding a whole volume) run as jobs on a worker
thread; the views keep drawing meanwhile and other edits wait for them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from ..annotate.rules import EditRules
from ..core.edits import History
from ..core.jobs import Progress
from ..core.labels import Label, LabelMap, LabelTable
from ..core.volume import Volume
from .jobs import JobRunner
from .viewer import Layer, Viewer

log = logging.getLogger(__name__)

LAYER = "labels"
#: labels saved as DICOM SEG when the file name ends so
SEG_SUFFIXES = (".dcm",)


def _autosave_seconds() -> float:
    try:
        return max(0.5, float(os.environ.get("MEDVISION_AUTOSAVE_S", "10")))
    except ValueError:
        return 10.0


class Annotation(QObject):
    """The working labels of the volume on screen (see the module docstring)."""

    labels_replaced = Signal()  # a new label map (or none)
    table_changed = Signal()  # names, colours, visibility, locks, codes
    voxels_changed = Signal(object)  # Box (z, y, x) of changed voxels; emitted in the GUI thread
    state_changed = Signal()  # undo/redo availability, unsaved state, busy
    active_changed = Signal(int)
    message = Signal(str)  # status-bar text
    failed = Signal(str)  # a user-facing failure (save failed, operation failed)
    saved = Signal(str)  # where the labels were saved

    def __init__(self, viewer: Viewer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.labels: LabelMap | None = None
        self.history: History | None = None
        self.active = 0
        self.rules = EditRules()
        self.outline = False
        self.opacity = 0.5
        #: what the labels belong to: the image source (path, series UID) shown in the window
        self.source: tuple[str, str | None] | None = None
        #: where "Save" writes: a label file path, or None (ask)
        self.target: str | None = None
        #: an annotation project and case id, when the image is a project case
        self.project = None
        self.case_id: str | None = None
        #: the table new label maps start with (a project's shared table)
        self.default_table: LabelTable | None = None
        self.saved_version = 0
        self.busy = ""
        self._runner: JobRunner | None = None
        self._slot = None
        self._autosaving = False
        self._autosave_lock = threading.Lock()
        self.autosave_error = ""
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(int(_autosave_seconds() * 1000))
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        self.voxels_changed.connect(self._after_voxels)
        # the history reports from whichever thread edits; these signals bring it to the GUI thread
        self._history_data.connect(self.voxels_changed)
        self._history_state.connect(self.state_changed)
        viewer.volume_changed.connect(self._on_volume_changed)

    _history_data = Signal(object)
    _history_state = Signal()

    # ---- the label map --------------------------------------------------------------------
    @property
    def image(self) -> np.ndarray | None:
        """The image the labels lie on (the current frame), for intensity rules and statistics."""
        return None if self.viewer.volume is None else self.viewer.frame_array()

    @property
    def editable(self) -> bool:
        volume = self.viewer.volume
        return volume is not None and not volume.metadata.get("partial")

    @property
    def dirty(self) -> bool:
        return self.history is not None and self.history.version != self.saved_version

    def ensure_labels(self) -> LabelMap | None:
        """The working label map, made empty on the volume's grid on first use."""
        if self.labels is None and self.editable:
            volume = self.viewer.frame_volume()
            table = self.default_table.copy() if self.default_table is not None else LabelTable()
            self.set_labels(LabelMap.empty_like(volume, table), target=self.target, saved=True)
        return self.labels

    def set_labels(self, labels: LabelMap | None, *, target: str | None = None, saved: bool = True) -> None:
        """Make ``labels`` (on the volume's grid) the working labels; history starts empty.
        ``saved`` False: they are not on disk yet where Save would write them (a recovery)."""
        if self._slot is not None:
            self._slot.discard()
            self._slot = None
        volume = self.viewer.volume
        if labels is not None and (volume is None or labels.shape != volume.shape[-3:]):
            raise ValueError("labels must lie on the grid of the image on screen")
        self.labels = labels
        self.target = target
        self.history = None
        self.saved_version = 0
        if labels is not None:
            self.history = History(labels)
            self.history.on_data(self._history_data.emit)
            self.history.on_state(self._history_state.emit)
            if not saved:
                self.saved_version = -1
            values = labels.table.values()
            self.active = self.active if self.active in values else (values[0] if values else 0)
        else:
            self.active = 0
        self._install_layer()
        self.labels_replaced.emit()
        self.active_changed.emit(self.active)
        self.state_changed.emit()

    def clear(self) -> None:
        """Forget the working labels (after the user chose to discard them)."""
        self.set_labels(None)
        self.project, self.case_id = None, None

    def _on_volume_changed(self) -> None:
        volume = self.viewer.volume
        if self.labels is not None and volume is not None and not volume.metadata.get("partial") \
                and self.labels.on_grid_of(volume) and self.labels.shape == volume.shape[-3:]:
            self._install_layer()  # the same grid again (a reload): keep the labels
            return
        if volume is not None and volume.metadata.get("partial") and self.labels is None:
            return
        if self.labels is not None or self.history is not None:
            self.set_labels(None)
        self.project, self.case_id, self.target = None, None, None

    # ---- overlay --------------------------------------------------------------------------
    def _install_layer(self) -> None:
        viewer = self.viewer
        if viewer.layer(LAYER) is not None:
            viewer.layers = [la for la in viewer.layers if la.name != LAYER]
        if self.labels is not None and viewer.volume is not None:
            layer = Layer(LAYER, self.labels.array, self._lut(), self.opacity, outline=self.outline)
            viewer.layers.insert(0, layer)
        viewer.display_changed.emit()

    def _lut(self) -> np.ndarray:
        assert self.labels is not None
        size = 256 if self.labels.array.dtype == np.uint8 else int(self.labels.array.max(initial=0)) + 1
        return self.labels.table.lut(size)

    def set_overlay(self, *, outline: bool | None = None, opacity: float | None = None) -> None:
        if outline is not None:
            self.outline = outline
        if opacity is not None:
            self.opacity = float(opacity)
        layer = self.viewer.layer(LAYER)
        if layer is not None:
            layer.outline, layer.opacity = self.outline, self.opacity
            self.viewer.display_changed.emit()

    def set_overlay_visible(self, visible: bool) -> None:
        layer = self.viewer.layer(LAYER)
        if layer is not None:
            layer.visible = visible
            self.viewer.display_changed.emit()

    def _after_voxels(self, box) -> None:
        layer = self.viewer.layer(LAYER)
        if self.labels is None or layer is None:
            return
        if layer.array is not self.labels.array:  # widened to uint16 for a value past 255
            layer.array, layer.lut = self.labels.array, self._lut()
        elif len(layer.lut) <= max(self.labels.table.values(), default=0):
            layer.lut = self._lut()
        self.viewer.notify_layers(box)
        self.state_changed.emit()

    # ---- the label table ------------------------------------------------------------------
    def table_edited(self) -> None:
        """Call after changing the table (names, colours, visibility, locks, codes)."""
        layer = self.viewer.layer(LAYER)
        if layer is not None and self.labels is not None:
            layer.lut = self._lut()
            self.viewer.notify_layers(None)
        if self.history is not None:
            self.history.version += 1  # the table is saved with the labels: it is an unsaved change
        self.table_changed.emit()
        self.state_changed.emit()

    def add_label(self, name: str | None = None, color=None, **kwargs) -> Label | None:
        labels = self.ensure_labels()
        if labels is None:
            return None
        label = labels.table.add(name, color, **kwargs)
        labels.ensure_value_fits(label.value)
        self.table_edited()
        self.set_active(label.value)
        return label

    def remove_label(self, value: int) -> None:
        """Erase a label's voxels (one undo step) and drop it from the table."""
        if self.labels is None or value not in self.labels.table:
            return
        mask = self.labels.array == value
        if mask.any():
            self.history.write(tuple(slice(0, n) for n in mask.shape), np.zeros((), self.labels.array.dtype),
                               mask=mask, description=f"delete {self.labels.table[value].name}")
        self.labels.table.remove(value)
        if self.active == value:
            values = self.labels.table.values()
            self.set_active(values[0] if values else 0)
        self.table_edited()

    def set_active(self, value: int) -> None:
        if value != self.active:
            self.active = value
            self.active_changed.emit(value)

    def paint_value(self) -> int | None:
        """The label new paint goes into, made when there is none yet ("Label 1"); None if the
        image cannot be edited (still loading, none open) or the label is locked."""
        labels = self.ensure_labels()
        if labels is None:
            self.message.emit("nothing to label: open an image first (or wait until it has loaded)")
            return None
        if self.active not in labels.table:
            self.add_label()
        label = labels.table[self.active]
        if label.locked:
            self.message.emit(f"{label.name} is locked: unlock it in the label table to edit it")
            return None
        return self.active

    # ---- undo -----------------------------------------------------------------------------
    def undo(self) -> None:
        if self.history is not None and not self.busy:
            edit = self.history.undo()
            if edit is not None:
                self.message.emit(f"undone: {edit.description}")

    def redo(self) -> None:
        if self.history is not None and not self.busy:
            edit = self.history.redo()
            if edit is not None:
                self.message.emit(f"redone: {edit.description}")

    # ---- jobs -----------------------------------------------------------------------------
    def can_edit(self) -> bool:
        if self.busy:
            self.message.emit(f"wait: {self.busy} is running")
            return False
        return True

    def run(self, what: str, work: Callable[[], object], done: Callable[[object], None] | None = None) -> bool:
        """Run ``work()`` (an edit through the history, or a computation) on a worker thread; one
        at a time. ``done(result)`` runs in the GUI thread. Returns False when another is running."""
        if not self.can_edit():
            return False

        def job():
            yield Progress(what, 0, 0)
            return work()

        self.busy = what
        runner = JobRunner(job(), name=what, parent=self)
        runner.finished.connect(lambda result: self._job_ended(what, result, done))
        runner.failed.connect(lambda exc: self._job_failed(what, exc))
        runner.cancelled.connect(lambda: self._job_ended(what, None, None))
        self._runner = runner
        self.state_changed.emit()
        self.message.emit(f"{what} ...")
        runner.start()
        return True

    def _job_ended(self, what: str, result, done) -> None:
        self.busy = ""
        self._runner = None
        self.state_changed.emit()
        if done is not None:
            done(result)

    def _job_failed(self, what: str, exc: BaseException) -> None:
        if self.history is not None and self.history.in_edit:
            while self.history.in_edit:  # an edit left open by the failure is closed: it stays undoable
                self.history.end()
        self._job_ended(what, None, None)
        self.failed.emit(f"{what} failed: {exc}")

    def wait(self, timeout_s: float = 60.0) -> None:
        """Process events until the running job ended (tests, closing)."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QThread

        deadline = QDeadlineTimer(int(timeout_s * 1000))
        while self.busy and not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(5)

    # ---- files ----------------------------------------------------------------------------
    def snapshot(self) -> LabelMap:
        assert self.labels is not None
        lm = self.labels
        return LabelMap(lm.array.copy(), lm.affine.copy(), lm.table.copy(), name=lm.name)

    def save(self, path: str | None = None, *, wait: bool = False,
             after: Callable[[bool], None] | None = None) -> bool:
        """Save the labels to ``path`` (default: the target, or the project case). ``.dcm`` writes
        DICOM SEG referencing the DICOM series on screen; anything else NIfTI/NRRD + JSON table.
        Runs on a worker thread unless ``wait``; ``after(ok)`` is called in the GUI thread."""
        if self.labels is None:
            return False
        path = path or self.target
        if path is None and self.project is None:
            raise ValueError("no file to save the labels to")
        snapshot, version = self.snapshot(), self.history.version
        volume = self.viewer.frame_volume()
        project, case_id = (self.project, self.case_id) if path is None else (None, None)

        def work():
            return _write_labels(snapshot, volume, path, project, case_id)

        def done(where) -> None:
            ok = where is not None
            if ok:
                self._saved(version, str(where), path)
            if after is not None:
                after(ok)

        if wait:
            if self.busy:
                self.wait()
            try:
                where = work()
            except Exception as exc:  # noqa: BLE001 - shown to the user; the labels stay in memory
                self.failed.emit(f"saving the labels failed: {exc}")
                if after is not None:
                    after(False)
                return False
            done(where)
            return True
        started = self.run("saving labels", work, done)
        if not started and after is not None:
            after(False)
        return started

    def _saved(self, version: int, where: str, path: str | None) -> None:
        if path is not None:
            self.target = path
        self.saved_version = version
        if self.history is not None and self.history.version == version and self._slot is not None:
            self._slot.discard()
            self._slot = None
        self.state_changed.emit()
        self.saved.emit(where)
        self.message.emit(f"labels saved: {where}")

    def open(self, path: str, *, done: Callable[[bool], None] | None = None) -> bool:
        """Read labels (NIfTI/NRRD/MHA, DICOM SEG, RTSTRUCT) onto the image on screen, as the
        working labels (their file becomes the Save target unless it is DICOM)."""
        volume = self.viewer.frame_volume()
        if volume is None or not self.editable:
            self.failed.emit("open an image (and let it finish loading) before opening labels for it")
            return False

        def work():
            return _read_labels(path, volume)

        def finish(labels) -> None:
            if labels is None:
                if done:
                    done(False)
                return
            dicom = str(path).lower().endswith(SEG_SUFFIXES)  # Save asks where (NIfTI) for DICOM input
            self.set_labels(labels, target=None if dicom else str(path), saved=True)
            how = getattr(labels, "placement", "")
            self.message.emit(f"labels opened: {path}" + (f" ({how})" if how and how != "same grid" else ""))
            if done:
                done(True)

        return self.run("opening labels", work, finish)

    # ---- autosave -------------------------------------------------------------------------
    def autosave(self, *, wait: bool = False) -> None:
        """Save unsaved edits into the recovery slot (worker thread; nothing when up to date)."""
        from ..workspace.recovery import RecoverySlot

        if self.labels is None or self.history is None or self.history.in_edit or not self.dirty:
            return
        if self._slot is not None and self._slot.saved_version == self.history.version:
            return
        if self._autosaving:
            return
        if self._slot is None:
            path, series = self.source or ("", None)
            self._slot = RecoverySlot(path, target=self.target, series=series,
                                      project=str(self.project.folder) if self.project is not None else None,
                                      case=self.case_id)
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


def _write_labels(labels: LabelMap, volume: Volume, path: str | None, project, case_id: str | None) -> Path:
    if path is None:
        case = project.case(case_id)
        return project.save_labels(case, labels)
    if str(path).lower().endswith(SEG_SUFFIXES):
        from ..io.seg import write_seg

        write_seg(labels, volume, path)
        return Path(path)
    from ..io.labels import save_labels

    return save_labels(labels, path)


def _read_labels(path: str, volume: Volume) -> LabelMap:
    from ..io.labels import load_labels

    return load_labels(path, reference=volume)
