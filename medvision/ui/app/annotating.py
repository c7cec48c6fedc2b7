"""The main window's annotation parts: the Annotation dock, the worklist dock, Edit and Labels
menus (undo/redo, open/save labels), the question before unsaved labels would be lost, and the
offer to restore autosaved labels after a crash."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..annotating.annotation import Annotation
from ..panels.annotation_panel import AnnotationPanel

log = logging.getLogger(__name__)

LABEL_FILTER = ("Labels (*.nii.gz *.nii *.nrrd *.seg.nrrd *.mha *.mhd);;DICOM SEG (*.dcm);;"
                "DICOM SEG or RTSTRUCT (*.dcm *.DCM);;All files (*)")


def _no_dialogs() -> bool:
    return bool(os.environ.get("MEDVISION_NO_DIALOGS"))


class AnnotationControls:
    """Builds the annotation docks and menus of a :class:`~medvision.ui.app.main_window.MainWindow`."""

    def __init__(self, window) -> None:
        self.window = window
        self.viewer = window.viewer
        self.annotation = Annotation(window.viewer, window)
        self.annotation.message.connect(lambda text: window.statusBar().showMessage(text, 8000))
        self.annotation.failed.connect(window.report_error)
        self.annotation.state_changed.connect(self._sync_actions)
        self.annotation.state_changed.connect(window.update_title)
        self._restoring = None

    # ---- construction ---------------------------------------------------------------------
    def build_docks(self) -> None:
        from ..panels.worklist import WorklistPanel

        w = self.window
        self.panel = AnnotationPanel(self.annotation, w.views.slice_views, w)
        self.panel.install_shortcuts(w)
        self.dock = w.add_dock("Annotation", self.panel, Qt.DockWidgetArea.RightDockWidgetArea, "annotation")
        self.dock.setMinimumWidth(360)
        w.views.active_changed.connect(lambda plane: setattr(self.panel, "last_plane", plane))
        from ..panels.model_panel import ModelPanel

        self.models = ModelPanel(self.annotation, w.views, w)
        self.models.annotating = self
        self.models_dock = w.add_dock("Models", self.models, Qt.DockWidgetArea.RightDockWidgetArea, "models")
        w.tabifyDockWidget(self.dock, self.models_dock)
        self.dock.raise_()
        self.worklist = WorklistPanel(self, w)
        self.worklist_dock = w.add_dock("Worklist", self.worklist, Qt.DockWidgetArea.LeftDockWidgetArea, "worklist")
        w.tabifyDockWidget(w.browser_dock, self.worklist_dock)
        w.browser_dock.raise_()

    def build_menus(self, menu_bar, file_menu, view_menu) -> None:
        w = self.window
        edit = menu_bar.addMenu("&Edit")
        self.action_undo = w.add_action(edit, "&Undo", self.annotation.undo, QKeySequence.StandardKey.Undo)
        self.action_redo = w.add_action(edit, "&Redo", self.annotation.redo, "Ctrl+Shift+Z")
        self.action_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for act in (self.action_undo, self.action_redo):
            act.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)

        labels = menu_bar.addMenu("&Labels")
        w.add_action(labels, "&Open labels...", self.choose_open_labels, "Ctrl+L")
        self.action_save = w.add_action(labels, "&Save labels", self.save, QKeySequence.StandardKey.Save)
        self.action_save_as = w.add_action(labels, "Save labels &as...", self.choose_save_as, "Ctrl+Alt+S")
        self.action_export_seg = w.add_action(labels, "Export as DICOM &SEG...", self.choose_export_seg)
        labels.addSeparator()
        self.action_close_labels = w.add_action(labels, "&Close labels", self.close_labels)
        labels.addSeparator()
        w.add_action(labels, "Label &statistics", self.panel.show_statistics)
        menu_bar.insertMenu(w.menuBar().actions()[1], edit)  # File, Edit, View ...
        view_menu.addSeparator()
        view_menu.addAction(self.dock.toggleViewAction())
        view_menu.addAction(self.worklist_dock.toggleViewAction())
        view_menu.addAction(self.models_dock.toggleViewAction())
        self._sync_actions()

    def _sync_actions(self) -> None:
        ann = self.annotation
        h = ann.history
        self.action_undo.setEnabled(h is not None and h.can_undo and not ann.busy)
        self.action_redo.setEnabled(h is not None and h.can_redo and not ann.busy)
        self.action_undo.setText(f"&Undo {h.undo_text}" if h is not None and h.can_undo else "&Undo")
        self.action_redo.setText(f"&Redo {h.redo_text}" if h is not None and h.can_redo else "&Redo")
        has = ann.labels is not None
        for act in (self.action_save, self.action_save_as, self.action_close_labels):
            act.setEnabled(has)
        volume = self.viewer.volume
        self.action_export_seg.setEnabled(has and volume is not None and bool(volume.metadata.get("slice_sources")))

    # ---- 3D ---------------------------------------------------------------------------------
    def attach_view3d(self, view) -> None:
        """Label surfaces in the 3D view, following edits (rebuilt a moment after the last one)."""
        if not hasattr(view, "set_labels"):
            return  # the 3D view could not start
        self.view3d = view
        self._surface_timer = QTimer(self.window)
        self._surface_timer.setSingleShot(True)
        self._surface_timer.setInterval(600)
        self._surface_timer.timeout.connect(self._update_surfaces)
        ann, panel = self.annotation, self.panel
        panel.show3d_check.toggled.connect(self.show_surfaces)
        ann.labels_replaced.connect(lambda: self.show_surfaces(panel.show3d_check.isChecked()))
        ann.table_changed.connect(lambda: view.refresh_label_display())
        ann.voxels_changed.connect(lambda _box: panel.show3d_check.isChecked() and self._surface_timer.start())
        panel.opacity_slider.valueChanged.connect(lambda v: view.set_labels_opacity(max(0.2, v / 100)))
        self.show_surfaces(panel.show3d_check.isChecked())

    def show_surfaces(self, on: bool) -> None:
        view = getattr(self, "view3d", None)
        if view is None:
            return
        if on:
            view.set_labels(self.annotation.labels)
        view.set_show_labels(on)

    def _update_surfaces(self) -> None:
        history = self.annotation.history
        if history is not None and history.in_edit:  # a stroke still going: after it
            self._surface_timer.start()
            return
        self.view3d.update_labels()

    # ---- files ----------------------------------------------------------------------------
    def _default_name(self) -> str:
        source = self.annotation.source[0] if self.annotation.source else ""
        base = Path(source).name.split(".")[0] if source else "labels"
        folder = self.window.settings.last_dir or os.path.expanduser("~")
        return os.path.join(folder, f"{base or 'labels'}.labels.nii.gz")

    def choose_open_labels(self) -> None:
        if not self.confirm_discard("open other labels"):
            return
        path, _ = QFileDialog.getOpenFileName(self.window, "Open labels", self.window.settings.last_dir or "",
                                              LABEL_FILTER)
        if path:
            self.annotation.discard_recovery()
            self.annotation.open(path)

    def save(self, *, wait: bool = False, after=None) -> bool:
        ann = self.annotation
        if ann.labels is None:
            return False
        if ann.target is None and ann.project is None:
            return self.choose_save_as(wait=wait, after=after)
        return ann.save(wait=wait, after=after)

    def choose_save_as(self, *, wait: bool = False, after=None) -> bool:
        path, _ = QFileDialog.getSaveFileName(self.window, "Save labels", self._default_name(), LABEL_FILTER)
        if not path:
            return False
        if not Path(path).suffix:
            path += ".nii.gz"
        if path.lower().endswith(".dcm"):
            return self._export_seg(path, wait=wait, after=after)
        return self.annotation.save(path, wait=wait, after=after)

    def choose_export_seg(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export DICOM SEG",
                                              self._default_name().replace(".labels.nii.gz", ".seg.dcm"),
                                              "DICOM SEG (*.dcm)")
        if path:
            self._export_seg(path)

    def _export_seg(self, path: str, *, wait: bool = False, after=None) -> bool:
        volume = self.viewer.volume
        if volume is None or not volume.metadata.get("slice_sources"):
            self.window.report_error("DICOM SEG needs a DICOM image series to refer to: save these labels as "
                                     "NIfTI or NRRD instead")
            return False
        # a SEG is an export: the working file (if any) stays the Save target and is not written by
        # it, so its unsaved changes stay unsaved; without a working file the SEG is what was saved
        ann = self.annotation
        target, before = ann.target, ann.saved_version
        done = after

        def restore_target(ok: bool) -> None:
            ann.target = target
            if ok and (target is not None or ann.project is not None):
                ann.saved_version = before
                ann.state_changed.emit()
            if done is not None:
                done(ok)

        return self.annotation.save(path, wait=wait, after=restore_target)

    def close_labels(self) -> None:
        if self.confirm_discard("close the labels"):
            self.annotation.discard_recovery()
            self.annotation.clear()

    # ---- unsaved labels -------------------------------------------------------------------
    def confirm_discard(self, what: str) -> bool:
        """Before the working labels would be dropped: ask to save them. Returns whether to go on.
        Without dialogs (tests, scripted runs) unsaved labels stay in the recovery area."""
        ann = self.annotation
        if not ann.dirty:
            return True
        if ann.busy:
            ann.wait()
        if _no_dialogs():
            ann.autosave(wait=True)
            ann.keep_recovery()
            log.warning("unsaved labels kept in the recovery area (%s)", what)
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "medvision",
                          f"The labels have unsaved changes. Save them before you {what}?", parent=self.window)
        box.setStandardButtons(QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                               | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Cancel:
            return False
        if answer == QMessageBox.StandardButton.Discard:
            ann.discard_recovery()
            return True
        result = {"ok": False}
        self.save(wait=True, after=lambda ok: result.update(ok=ok))
        return result["ok"]

    def closing(self) -> bool:
        """The window is closing: False keeps it open (the user cancelled)."""
        if not self.confirm_discard("close medvision"):
            return False
        self.annotation.discard_recovery()
        return True

    # ---- recovery -------------------------------------------------------------------------
    def offer_recovery(self) -> None:
        """Offer the labels autosaved by a medvision that ended without saving them."""
        from ...workspace.recovery import pending

        try:
            slots = pending()
        except OSError as exc:
            log.warning("recovery area unreadable: %s", exc)
            return
        self.recoverable = slots
        if not slots or _no_dialogs():
            return
        newest = slots[0]
        box = QMessageBox(QMessageBox.Icon.Question, "medvision",
                          "medvision ended while labels were being edited. Restore them?", parent=self.window)
        more = ""
        if len(slots) > 1:
            more = f"\n\n({len(slots) - 1} older autosave{'s' if len(slots) > 2 else ''} kept as well.)"
        box.setInformativeText(newest.describe() + more)
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is restore:
            self.restore(newest)
        elif box.clickedButton() is discard:
            newest.discard()

    def restore(self, recovered) -> None:
        """Open the image the autosave belongs to, then put the autosaved labels on it (unsaved)."""
        image = recovered.image
        if not image or not os.path.exists(image):
            self.window.report_error(f"the image of the autosaved labels is gone ({image or 'unknown'}); the "
                                     f"autosave stays in {recovered.dir}")
            return
        self._restoring = recovered
        self.window.open_path(image, recovered.state.get("series"))

    def after_load(self, ok: bool) -> None:
        """Called by the window when a load ended: finish a restore, or open a case's labels."""
        recovered, self._restoring = self._restoring, None
        if recovered is not None and ok:
            QTimer.singleShot(0, lambda: self._finish_restore(recovered))
        self.worklist.after_load(ok)

    def _finish_restore(self, recovered) -> None:
        ann = self.annotation
        volume = self.viewer.frame_volume()
        try:
            labels = recovered.load(volume)
        except Exception as exc:  # noqa: BLE001 - shown; the autosave stays where it is
            self.window.report_error(f"the autosaved labels could not be read: {exc} (kept in {recovered.dir})")
            return
        state = recovered.state
        if state.get("project") and state.get("case"):
            self.worklist.attach_case(state["project"], state["case"])
        ann.set_labels(labels, target=state.get("target"), saved=False)
        ann.autosave(wait=True)  # this window's own slot holds them now
        recovered.discard()
        self.window.statusBar().showMessage(
            f"restored {recovered.describe()}; save them to keep them (Ctrl+S)", 20000)
