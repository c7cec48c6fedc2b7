"""The labels being edited in the window: the case, bound to the viewer, its overlay and jobs.

One :class:`Annotation` lives beside the :class:`~medvision.ui.views.viewer.Viewer`. The case itself (the
working label map, its history, the active label, where the labels are saved, autosave) is a
headless :class:`~medvision.workspace.case.WorkingCase`; this class binds it to the window: it brings the
history's reports to the GUI thread as signals, keeps the overlay layer the views draw in step,
autosaves on a timer, and runs long edits (smoothing, growing, thresholding a whole volume, saving)
as jobs on a worker thread; the views keep drawing meanwhile and other edits wait for them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QDeadlineTimer, QEventLoop, QObject, QTimer, Signal

from ...core.jobs import Progress
from ...core.labels import Label, LabelMap
from ...workspace.case import SEG_SUFFIXES, WorkingCase, autosave_seconds, read_labels
from ..jobs import JobRunner
from ..views.viewer import Layer, Viewer

__all__ = ["LAYER", "SEG_SUFFIXES", "Annotation"]

LAYER = "labels"


def _case_attribute(name: str, doc: str) -> property:
    """An attribute of the bound :class:`WorkingCase`, read and written through the annotation."""
    return property(lambda self: getattr(self.case, name), lambda self, value: setattr(self.case, name, value),
                    doc=doc)


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
    job_ended = Signal()  # the running job ended (done, failed or cancelled)

    # the case's state, as the panels and tools use it
    active = _case_attribute("active", "the label new paint goes into")
    rules = _case_attribute("rules", "the edit rules (overwrite, intensity range)")
    source = _case_attribute("source", "the image source (path, series UID) the labels belong to")
    target = _case_attribute("target", "where Save writes: a label file path, or None")
    project = _case_attribute("project", "the annotation project, when the image is a project case")
    case_id = _case_attribute("case_id", "the project case id")
    default_table = _case_attribute("default_table", "the table new label maps start with")
    saved_version = _case_attribute("saved_version", "the history version saved where Save writes")

    def __init__(self, viewer: Viewer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        # the history reports from whichever thread edits; these signals bring it to the GUI thread
        self.case = WorkingCase(on_voxels=self._history_data.emit, on_state=self._history_state.emit,
                         on_replaced=self._replaced)
        self.outline = False
        self.opacity = 0.5
        self.busy = ""
        self._runner: JobRunner | None = None
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(int(autosave_seconds() * 1000))
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        self.voxels_changed.connect(self._after_voxels)
        self._history_data.connect(self.voxels_changed)
        self._history_state.connect(self.state_changed)
        viewer.volume_changed.connect(self._on_volume_changed)

    _history_data = Signal(object)
    _history_state = Signal()

    # ---- the label map --------------------------------------------------------------------
    @property
    def labels(self) -> LabelMap | None:
        return self.case.labels

    @property
    def history(self):
        return self.case.history

    @property
    def dirty(self) -> bool:
        return self.case.dirty

    @property
    def autosave_error(self) -> str:
        return self.case.autosave_error

    @property
    def image(self) -> np.ndarray | None:
        """The image the labels lie on (the current frame), for intensity rules and statistics."""
        return None if self.viewer.volume is None else self.viewer.frame_array()

    @property
    def editable(self) -> bool:
        volume = self.viewer.volume
        return volume is not None and not volume.metadata.get("partial")

    def ensure_labels(self) -> LabelMap | None:
        """The working label map, made empty on the volume's grid on first use."""
        if self.case.labels is None and self.editable:
            self.set_labels(self.case.new_labels(self.viewer.frame_volume()), target=self.target, saved=True)
        return self.case.labels

    def set_labels(self, labels: LabelMap | None, *, target: str | None = None, saved: bool = True) -> None:
        """Make ``labels`` (on the volume's grid) the working labels; history starts empty.
        ``saved`` False: they are not on disk yet where Save would write them (a recovery)."""
        self.case.set_labels(labels, grid=self.viewer.volume, target=target, saved=saved)

    def _replaced(self) -> None:
        self._install_layer()
        self.labels_replaced.emit()
        self.active_changed.emit(self.case.active)
        self.state_changed.emit()

    def clear(self) -> None:
        """Forget the working labels (after the user chose to discard them)."""
        self.case.clear()

    def _on_volume_changed(self) -> None:
        if self.case.image_replaced(self.viewer.volume):
            self._install_layer()  # the same grid again (a reload): keep the labels

    # ---- overlay --------------------------------------------------------------------------
    def _install_layer(self) -> None:
        viewer = self.viewer
        if viewer.layer(LAYER) is not None:
            viewer.remove_layer(LAYER, notify=False)
        if self.labels is not None and viewer.volume is not None:
            layer = Layer(LAYER, self.labels.array, self._lut(), self.opacity, outline=self.outline)
            viewer.add_layer(layer, below=True, notify=False)
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
        self.case.table_edited()
        self.table_changed.emit()
        self.state_changed.emit()

    def add_label(self, name: str | None = None, color=None, **kwargs) -> Label | None:
        if self.ensure_labels() is None:
            return None
        before = self.case.active
        label = self.case.add_label(name, color, **kwargs)
        self._table_changed(before)
        return label

    def remove_label(self, value: int) -> None:
        """Erase a label's voxels (one undo step) and drop it from the table."""
        before = self.case.active
        if self.case.remove_label(value):
            self._table_changed(before)

    def _table_changed(self, active_before: int) -> None:
        layer = self.viewer.layer(LAYER)
        if layer is not None and self.labels is not None:
            layer.lut = self._lut()
            self.viewer.notify_layers(None)
        self.table_changed.emit()
        self.state_changed.emit()
        if self.case.active != active_before:
            self.active_changed.emit(self.case.active)

    def set_active(self, value: int) -> None:
        if value != self.case.active:
            self.case.active = value
            self.active_changed.emit(value)

    def paint_value(self) -> int | None:
        """The label new paint goes into, made when there is none yet ("Label 1"); None if the
        image cannot be edited (still loading, none open) or the label is locked."""
        self.ensure_labels()
        before, had = self.case.active, self.labels is not None and self.case.active in self.labels.table
        value, why = self.case.paint_value()
        if not had and self.labels is not None:
            self._table_changed(before)
        if value is None:
            self.message.emit(why)
        return value

    # ---- undo -----------------------------------------------------------------------------
    def undo(self) -> None:
        if not self.busy:
            edit = self.case.undo()
            if edit is not None:
                self.message.emit(f"undone: {edit.description}")

    def redo(self) -> None:
        if not self.busy:
            edit = self.case.redo()
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
        runner.finished.connect(lambda result: self._job_ended(result, done))
        runner.failed.connect(lambda exc: self._job_failed(what, exc))
        runner.cancelled.connect(lambda: self._job_ended(None, None))
        self._runner = runner
        self.state_changed.emit()
        self.message.emit(f"{what} ...")
        runner.start()
        return True

    def _job_ended(self, result, done) -> None:
        self.busy = ""
        self._runner = None
        self.state_changed.emit()
        self.job_ended.emit()
        if done is not None:
            done(result)

    def _job_failed(self, what: str, exc: BaseException) -> None:
        self.case.close_open_edits()  # what the failed edit changed stays undoable
        self._job_ended(None, None)
        self.failed.emit(f"{what} failed: {exc}")

    def wait(self, timeout_s: float = 60.0) -> None:
        """Run the event loop until the running job ended (tests, closing), at most ``timeout_s``."""
        if not self.busy:
            return
        loop, timer = QEventLoop(), QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        self.job_ended.connect(loop.quit)
        deadline = QDeadlineTimer(int(timeout_s * 1000))
        timer.start(int(timeout_s * 1000))
        try:
            while self.busy and not deadline.hasExpired():
                loop.exec()
        finally:
            timer.stop()
            self.job_ended.disconnect(loop.quit)

    # ---- files ----------------------------------------------------------------------------
    def snapshot(self) -> LabelMap:
        return self.case.snapshot()

    def save(self, path: str | None = None, *, wait: bool = False,
             after: Callable[[bool], None] | None = None) -> bool:
        """Save the labels to ``path`` (default: the target, or the project case). ``.dcm`` writes
        DICOM SEG referencing the DICOM series on screen; anything else NIfTI/NRRD + JSON table.
        Runs on a worker thread unless ``wait``; ``after(ok)`` is called in the GUI thread."""
        if self.labels is None:
            return False
        path = path or self.target
        work = self.case.save_plan(path, self.viewer.frame_volume())
        version = self.history.version

        def done(where) -> None:
            ok = where is not None
            if ok:
                self.case.saved(version, path)
                self.state_changed.emit()
                self.saved.emit(str(where))
                self.message.emit(f"labels saved: {where}")
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

    def open(self, path: str, *, done: Callable[[bool], None] | None = None) -> bool:
        """Read labels (NIfTI/NRRD/MHA, DICOM SEG, RTSTRUCT) onto the image on screen, as the
        working labels (their file becomes the Save target unless it is DICOM)."""
        volume = self.viewer.frame_volume()
        if volume is None or not self.editable:
            self.failed.emit("open an image (and let it finish loading) before opening labels for it")
            return False

        def finish(labels) -> None:
            if labels is None:
                if done:
                    done(False)
                return
            self.case.open_labels(path, labels, self.viewer.volume)
            how = getattr(labels, "placement", "")
            said = "".join(f"; warning: {w}" for w in labels.metadata.get("warnings") or [])
            self.message.emit(f"labels opened: {path}" + (f" ({how})" if how and how != "same grid" else "") + said)
            if done:
                done(True)

        return self.run("opening labels", lambda: read_labels(path, volume), finish)

    # ---- autosave -------------------------------------------------------------------------
    def autosave(self, *, wait: bool = False) -> None:
        """Save unsaved edits into the recovery slot (worker thread; nothing when up to date)."""
        self.case.autosave(wait=wait)

    def wait_autosave(self, timeout_s: float = 30.0) -> None:
        self.case.wait_autosave(timeout_s)

    def discard_recovery(self) -> None:
        """Remove this session's autosave (the user discarded the edits, or they are saved)."""
        self.case.discard_recovery()

    def keep_recovery(self) -> None:
        """Leave this session's autosave in the recovery area (offered at the next start)."""
        self.case.keep_recovery()

    @property
    def recovery_dir(self) -> Path | None:
        return self.case.recovery_dir
