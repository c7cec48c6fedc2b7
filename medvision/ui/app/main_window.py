"""The main window: views, series browser, DICOM header, log; menus, toolbar and status bar."""

from __future__ import annotations

import gc
import logging
import os
import sys
import time

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStyle,
    QToolButton,
    QWidget,
)

from ...core.atomic import write_via
from ...core.jobs import Progress
from ...core.volume import Volume
from ...io.dicom.index import DicomIndex, ScanResult, SeriesInfo
from ..job_status import JobStatus
from ..jobs import JobRunner
from ..panels.header_view import DicomHeaderView
from ..panels.log_panel import LogPanel
from ..panels.series_browser import SeriesBrowser
from ..views.viewer import Viewer
from ..views.views_area import ViewsArea
from .annotating import AnnotationControls
from .controls import ViewControls
from .settings import Settings

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """The reading workstation window."""

    #: emitted when a volume finished loading and the views show it (or loading failed: False)
    load_finished = Signal(bool)
    view3d_ready = Signal()

    def __init__(self, settings: Settings | None = None, index: DicomIndex | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else Settings.load()
        self.index = index if index is not None else DicomIndex()
        self.viewer = Viewer(self)
        self.runner: JobRunner | None = None
        self.last_error = ""
        self._loading_label = ""
        self._preview_shown = False
        # what a failed or cancelled load goes back to: (volume, window, window name, reload_regular)
        self._previous: tuple | None = None
        self._shown_frame = 0
        self._auto_maximised = False
        self._reload_regular = None  # reloads the DICOM series last opened, resampled to regular spacing
        self._shown_once = False
        self._last_preview_refresh = 0.0
        self.setWindowTitle("medvision")
        self.setAcceptDrops(True)
        self.resize(1500, 950)

        self.views = ViewsArea(self.viewer, self)
        self.setCentralWidget(self.views)
        self._build_docks()
        self.annotating = AnnotationControls(self)
        self.annotating.build_docks()
        self.load_finished.connect(self.annotating.after_load)
        self._loading_source: tuple[str, str | None] | None = None
        self._build_status_bar()
        self.controls = ViewControls(self)
        self.controls.build()
        self._build_menus()

        self.views.set_layout(self.settings.layout, self.settings.maximised_pane)
        self.viewer.set_interpolate(self.settings.interpolate)
        self.viewer.cursor_changed.connect(self._on_cursor_changed)
        self.viewer.volume_changed.connect(self._on_volume_changed)
        self.viewer.data_updated.connect(lambda: self._show_position(self.viewer.cursor, "cursor"))
        self.viewer.display_changed.connect(self._on_display_changed)
        for view in self.views.slice_views.values():
            view.hovered.connect(self._show_hover)
        QApplication.instance().focusChanged.connect(self._on_focus_changed)
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))
        self.update_title()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if not self.settings.window_state and not self.browser_dock.isFloating():
                self.resizeDocks([self.browser_dock], [380], Qt.Orientation.Horizontal)
            # Everything made so far (Qt wrappers, modules, widgets) lives as long as the window:
            # take it out of the cyclic garbage collector's full passes, which otherwise stall the
            # event loop for tens of milliseconds while a series loads in the background.
            gc.collect()
            gc.freeze()
            # background jobs run Python threads too: hand the GIL back to the event loop sooner
            sys.setswitchinterval(0.001)
            QTimer.singleShot(0, self.annotating.offer_recovery)

    # ---- construction ---------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.browser = SeriesBrowser(self.index, self)
        self.browser.open_requested.connect(self.open_series)
        self.browser.status.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.browser_dock = self.add_dock("Series", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea, "browser")
        self.browser.setMinimumWidth(300)
        self.header_view = DicomHeaderView(self)
        self.header_dock = self.add_dock("DICOM header", self.header_view, Qt.DockWidgetArea.RightDockWidgetArea,
                                      "header")
        self.header_dock.hide()
        self.header_dock.visibilityChanged.connect(self._header_visibility)
        self.log_panel = LogPanel(self)
        self.log_dock = self.add_dock("Log", self.log_panel, Qt.DockWidgetArea.BottomDockWidgetArea, "log")
        self.log_dock.hide()

    def _header_visibility(self, visible: bool) -> None:
        if not visible:
            return
        if self.header_dock.width() < 520 and not self.header_dock.isFloating():
            # wide enough for tag, name, VR and the start of the value
            self.resizeDocks([self.header_dock], [560], Qt.Orientation.Horizontal)
        self._update_header()

    def add_dock(self, title: str, widget: QWidget, area, name: str) -> QDockWidget:
        """A dock holding ``widget`` in ``area``; ``name`` keys its saved place and size."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{name}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.position_label = QLabel("")
        self.position_label.setMinimumWidth(420)
        self.value_label = QLabel("")
        self.value_label.setMinimumWidth(120)
        self.job_status = JobStatus(bar_width=220)  # loading and scanning; Cancel cancels the job
        self.warning_button = QToolButton()
        self.warning_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        self.warning_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.warning_button.setAutoRaise(True)
        self.warning_button.clicked.connect(self.show_warnings)
        self.warning_button.hide()
        for w in (self.warning_button, self.position_label, self.value_label):
            bar.addPermanentWidget(w)
        bar.addPermanentWidget(self.job_status)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.action_open_file = self.add_action(file_menu, "Open &file...", self.choose_file,
                                             QKeySequence.StandardKey.Open)
        self.action_open_folder = self.add_action(file_menu, "Open f&older...", self.choose_folder, "Ctrl+Shift+O")
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        self.add_action(file_menu, "Save &screenshot...", self.choose_screenshot, "Ctrl+Shift+S")
        file_menu.addSeparator()
        self.add_action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        view_menu = menu.addMenu("&View")
        group = QActionGroup(self)
        self.layout_actions = {}
        for i, name in enumerate(("1x1", "1x3", "2x2")):
            act = self.add_action(view_menu, f"Layout {name}", lambda _=False, n=name: self.set_layout(n),
                                  f"Ctrl+{i + 1}")
            act.setCheckable(True)
            group.addAction(act)
            self.layout_actions[name] = act
        self.layout_actions[self.views.layout_name].setChecked(True)
        self.views.layout_changed.connect(lambda n: self.layout_actions[n].setChecked(True))
        view_menu.addSeparator()
        for act in self.controls.view_actions():
            view_menu.addAction(act)
        view_menu.addSeparator()
        for dock in (self.browser_dock, self.header_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())
        self.header_dock.toggleViewAction().setShortcut("Ctrl+H")

        self.annotating.build_menus(menu, file_menu, view_menu)

        window_menu = menu.addMenu("&Window")
        self.controls.fill_window_menu(window_menu)

        help_menu = menu.addMenu("&Help")
        self.add_action(help_menu, "&Keyboard and mouse", self.show_shortcuts, "F1")
        self.add_action(help_menu, "&About medvision", self.show_about)

    def add_action(self, menu, text: str, slot, shortcut=None) -> QAction:
        """An action in ``menu`` calling ``slot`` (with ``shortcut``, if given)."""
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    # ---- opening --------------------------------------------------------------------------
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", self.settings.last_dir or os.path.expanduser("~"),
            "Images (*.dcm *.DCM *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.zip DICOMDIR);;All files (*)")
        if path:
            self.open_path(path)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder",
                                                self.settings.last_dir or os.path.expanduser("~"))
        if path:
            self.open_path(path)

    def open_path(self, path: str, series: str | None = None) -> None:
        """Open a DICOM folder/zip/DICOMDIR (scanned into the browser; its image series opens), a
        DICOM file (with the rest of its series from the same folder), or a NIfTI/NRRD/MetaImage file."""
        self.open_paths([path], series)

    def open_paths(self, paths: list[str], series: str | None = None) -> None:
        """Open what was dropped or chosen together, as :func:`medvision.io.routing.plan_open`
        decides: an image file loads, DICOM files and folders are scanned as one set and its
        (largest) image series opens."""
        from ...io.api import load_job
        from ...io.routing import plan_open

        plan = plan_open(paths)
        if plan.missing:
            self.report_error(plan.missing_text)
        if plan.action == "nothing":
            self.load_finished.emit(False)
            return
        first = plan.paths[0]
        self.settings.add_recent(first if len(plan.paths) == 1 else os.path.commonpath(plan.paths))
        self.settings.last_dir = os.path.dirname(first)
        self.settings.save()
        if plan.note:
            log.info("%s", plan.note)
        if plan.action == "load":
            self.browser.tree.clearSelection()  # the series list no longer shows what is open
            self._start_load(load_job(plan.target), plan.label, source=(plan.target, None))
            return
        self._start(self.index.scan(plan.scan), f"scanning {plan.label}",
                    lambda result: self._scanned(result, series, member=plan.member))

    def _scanned(self, result: ScanResult, series: str | None, member: str | None = None) -> None:
        from ...io.routing import pick_series

        self.browser.refresh()
        try:
            chosen, note = pick_series(result, series, member)
        except Exception as exc:  # noqa: BLE001 - shown to the user, nothing lost
            self.report_error(str(exc))
            self.load_finished.emit(False)
            return
        if note:
            self.statusBar().showMessage(note, 15000)
        self.browser_dock.show()
        self.open_series(chosen)

    def open_series(self, series: SeriesInfo) -> None:
        from ...io.dicom.series import load_series_job

        if series.kind != "image":
            self.report_error(f"{series.label()} is a {series.kind} object, not an image series")
            self.load_finished.emit(False)
            return
        # files indexed earlier may have been moved or deleted since (a copied study removed): the
        # index forgets them, and the series loads from the files that are still there
        gone = [ref for ref in series.files if not os.path.exists(ref.path)]
        files = [ref for ref in series.files if os.path.exists(ref.path)] if gone else series.files
        if gone:
            self.index.forget(*gone)
            self.browser.refresh()
            log.info("%s: %d indexed files are gone and were forgotten", series.label(), len(gone))
            if not files:
                self.report_error(f"{series.label()}: its files are gone (moved or deleted since they were "
                                  "indexed); open the folder where they are now")
                self.load_finished.emit(False)
                return
        self.browser.select_series(series.key)
        folders = {os.path.dirname(ref.path) for ref in files}
        source = (folders.pop() if len(folders) == 1 else os.path.commonpath(list(folders)), series.uid or None)
        self._start_load(load_series_job(files), series.label(), source=source,
                         reload_regular=lambda: self._start_load(load_series_job(files, regularize=True),
                                                                 series.label(), source=source))

    def _start_load(self, job, label: str, reload_regular=None, source: tuple[str, str | None] | None = None) -> None:
        if not self.annotating.confirm_discard("open another image"):
            job.close()
            self.load_finished.emit(False)
            return
        self._loading_label = label
        self._loading_source = source
        if not self._preview_shown:
            # what to go back to if this load fails or is cancelled: the last complete volume
            # (when a load replaces another still loading, its half-decoded preview is not kept)
            self._previous = (self.viewer.volume, self.viewer.window, self.viewer.window_name,
                              self._reload_regular)
        self._reload_regular = reload_regular
        self._start(job, f"loading {label}", self._loaded, on_progress=self._load_progress)

    def _start(self, job, what: str, on_finished, on_progress=None) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        runner = JobRunner(job, name=what, parent=self)

        def current(handler):  # a job replaced by a newer one is ignored when it ends
            return lambda *args: runner is self.runner and handler(*args)

        if on_progress is not None:
            runner.progress.connect(lambda rec: runner is self.runner and on_progress(rec))
        runner.finished.connect(current(on_finished))
        runner.failed.connect(current(lambda exc: self._job_failed(what, exc)))
        runner.cancelled.connect(current(lambda: self._job_cancelled(what)))
        self.runner = runner
        self.job_status.track(runner, what)
        runner.start()

    def _job_failed(self, what: str, exc: BaseException) -> None:
        self._restore_previous()
        self.report_error(f"{what} failed: {exc}")
        self.load_finished.emit(False)

    def _job_cancelled(self, what: str) -> None:
        self._restore_previous()
        self.statusBar().showMessage(f"{what}: cancelled", 8000)
        self.load_finished.emit(False)

    def _restore_previous(self) -> None:
        if self._preview_shown and self._previous is not None:
            volume, window, name, self._reload_regular = self._previous
            self.viewer.set_volume(volume, window=window if volume is not None else None, window_name=name)
        self._preview_shown = False

    def cancel_job(self) -> None:
        if self.runner is not None:
            self.runner.cancel()

    def _load_progress(self, rec: Progress) -> None:
        if rec.preview is not None and not self._preview_shown:
            # the first decoded slices (the middle ones) are there: show the volume filling up
            self._preview_shown = True
            self._last_preview_refresh = time.monotonic()
            self.viewer.set_volume(rec.preview)
            self.statusBar().showMessage(f"loading {self._loading_label} ...")
        elif self._preview_shown and time.monotonic() - self._last_preview_refresh > 0.25:
            # the views redraw what has been decoded so far, a few times a second (not on every
            # record: on a small machine that would take the event loop's time from the user)
            self._last_preview_refresh = time.monotonic()
            self.viewer.notify_data_updated()

    def _loaded(self, volumes: list[Volume]) -> None:
        volume = volumes[0]
        keep = self._preview_shown and self.viewer.volume is not None and self.viewer.volume.same_grid(volume)
        if keep and self.viewer.volume.array.shape == volume.array.shape:
            # the preview was this volume filling up: keep the cursor and any window the user chose
            # (an automatic window is recomputed now that every slice is there)
            automatic = self.viewer.window_name == "automatic"
            self.viewer.set_volume(volume, window=None if automatic else self.viewer.window,
                                   window_name=self.viewer.window_name, keep_cursor=True)
        else:
            self.viewer.set_volume(volume)
        self.annotating.annotation.source = self._loading_source
        self._preview_shown = False
        warnings = volume.metadata.get("warnings") or []
        message = f"opened {self._loading_label}: {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]}"
        if volume.is_4d:
            message += f", {volume.n_frames} frames"
        if warnings:
            message += f"  ({len(warnings)} warning{'s' if len(warnings) > 1 else ''}: {warnings[0]})"
            for w in warnings:
                log.warning("%s: %s", self._loading_label, w)
        self.statusBar().showMessage(message, 20000)
        self.update_title()
        self.load_finished.emit(True)

    def _warnings(self) -> list[str]:
        """What the loader noticed about the complete volume on screen."""
        volume = self.viewer.volume
        if volume is None or volume.metadata.get("partial"):
            return []
        return list(volume.metadata.get("warnings") or [])

    def _show_warning_button(self) -> None:
        warnings = self._warnings()
        if not warnings:
            self.warning_button.hide()
            return
        self.warning_button.setText(f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}")
        self.warning_button.setToolTip("\n".join(warnings))
        self.warning_button.show()

    def show_warnings(self) -> None:
        """What the loader noticed about the data on screen (spacing, tilt, missing tags ...); a
        series with irregular slice spacing can be resampled onto a regular grid from here."""
        warnings = self._warnings()
        if not warnings:
            return
        irregular = any(w.startswith("non-uniform slice spacing") and "resampled" not in w for w in warnings)
        box = QMessageBox(QMessageBox.Icon.Warning, "medvision",
                          f"{self._loading_label}: what the loader noticed", parent=self)
        box.setInformativeText("\n\n".join(warnings))
        resample = None
        if irregular and self._reload_regular is not None:
            resample = box.addButton("Resample to regular spacing", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if resample is not None:
            resample.clicked.connect(self._reload_regular)
        if os.environ.get("MEDVISION_NO_DIALOGS"):
            self.last_warning_box = box
            return
        box.open()

    def report_error(self, message: str) -> None:
        """A user-facing failure: status bar, log, and a non-blocking message box."""
        self.last_error = message
        log.error("%s", message)
        self.statusBar().showMessage(message.splitlines()[0], 20000)
        if os.environ.get("MEDVISION_NO_DIALOGS"):
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "medvision", message.splitlines()[0], parent=self)
        if "\n" in message:
            box.setDetailedText(message)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ---- drag and drop --------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.open_path(p))
            act.setEnabled(os.path.exists(path))
        if self.settings.recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self._clear_recent)
        else:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _clear_recent(self) -> None:
        self.settings.recent = []
        self.settings.save()

    # ---- view state -----------------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        self._auto_maximised = False
        self.views.set_layout(name)
        self.settings.layout = name
        self.settings.maximised_pane = self.views.maximised

    def _on_focus_changed(self, _old, new) -> None:
        for plane, view in self.views.slice_views.items():
            if new is view:
                self.views.set_active(plane)

    def _on_volume_changed(self) -> None:
        self._shown_frame = self.viewer.frame
        self._show_warning_button()
        self._fit_layout()
        self._show_position(self.viewer.cursor, "cursor")
        self.update_title()
        self._update_header()
        self.controls.volume_changed()

    def _on_cursor_changed(self, old) -> None:
        if self.viewer.grid is None:
            return
        if self.header_dock.isVisible() and self.viewer.slice_source(old) != self.viewer.slice_source():
            self._update_header()
        self._show_position(self.viewer.cursor, "cursor")

    def _fit_layout(self) -> None:
        """A single image (radiograph, ultrasound frame, one slice) fills the window; the layout
        chosen comes back with the next volume."""
        volume, views = self.viewer.volume, self.views
        single = volume is not None and volume.shape[-3] == 1
        if single and views.layout_name != "1x1":
            views.toggle_maximised(self.viewer.grid.acquisition_plane)
            self._auto_maximised = True
        elif not single and self._auto_maximised:
            self._auto_maximised = False
            if views.layout_name == "1x1" and views.chosen_layout != "1x1":
                views.toggle_maximised(views.maximised)

    def _on_display_changed(self) -> None:
        if self.viewer.volume is not None and self.viewer.volume.is_4d and self.viewer.frame != self._shown_frame:
            self._shown_frame = self.viewer.frame  # a new 4D frame: its own images and values
            self._update_header()
            self._show_position(self.viewer.cursor, "cursor")

    def _update_header(self) -> None:
        if not self.header_dock.isVisible():
            return
        source = self.viewer.slice_source()
        if source is None:
            self.header_view.set_source(None, title="no DICOM header (not a DICOM series)")
            return
        ref, frame, instance = source
        grid = self.viewer.grid
        plane = grid.acquisition_plane
        k = int(self.viewer.cursor[grid.slice_axis(plane)]) + 1
        parts = [f"Im {instance}" if instance is not None else "", f"{plane} {k}/{grid.n_slices(plane)}"]
        if self.viewer.volume.is_4d:
            parts.append(f"frame {self.viewer.frame + 1}/{self.viewer.volume.n_frames}")
        self.header_view.set_source(ref, frame, title=", ".join(p for p in parts if p))

    def _show_hover(self, ijk) -> None:
        if ijk is None:
            self._show_position(self.viewer.cursor, "cursor")
        else:
            self._show_position(ijk, "mouse")

    def _show_position(self, ijk, what: str) -> None:
        grid, volume = self.viewer.grid, self.viewer.volume
        if grid is None:
            self.position_label.setText("")
            self.value_label.setText("")
            return
        vx, vy, vz = grid.to_volume_index(np.asarray(ijk, dtype=int))
        lps = grid.world(ijk)
        where = (f"   LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm"
                 if volume.metadata.get("orientation_known", True) else "   (no patient position in the file)")
        self.position_label.setText(f"{what}: voxel ({vx}, {vy}, {vz}){where}")
        value = grid.value_at(np.asarray(ijk), self.viewer.frame)
        unit = " HU" if volume.metadata.get("modality") == "CT" and volume.metadata.get("rescale_applied") else ""
        if value is None:
            self.value_label.setText("")
        elif isinstance(value, float):
            self.value_label.setText(f"value {value:.4g}{unit}")
        else:
            self.value_label.setText(f"value {value}{unit}")

    def update_title(self) -> None:
        """The title: what is open, and a star while labels are unsaved."""
        volume = self.viewer.volume
        if volume is None:
            self.setWindowTitle("medvision")
            return
        meta = volume.metadata
        parts = [str(meta.get(k)) for k in ("patient_name", "modality", "description") if meta.get(k)]
        title = " - ".join(parts + ["medvision"]) if parts else f"{self._loading_label} - medvision"
        ann = self.annotating.annotation
        if ann.labels is not None:
            title = ("* " if ann.dirty else "") + (f"[{ann.case_id}] " if ann.case_id else "") + title
        self.setWindowTitle(title)

    # ---- screenshots, help, closing ---------------------------------------------------------
    def choose_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "medvision.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path)

    def save_screenshot(self, path: str) -> bool:
        """Render the whole window (3D view included) to a PNG, atomically."""
        image = self.grab().toImage()
        try:
            write_via(path, lambda tmp: image.save(str(tmp), "PNG"))
        except OSError as exc:
            self.report_error(f"{path}: could not write the screenshot ({exc.strerror or exc})")
            return False
        return True

    def show_shortcuts(self) -> None:
        from ..views.slice_view import __doc__ as view_doc

        QMessageBox.information(self, "Keyboard and mouse", view_doc.split("\n\n", 1)[1] + "\n\n"
                                "I: invert.  Space: cine.  Ctrl+1/2/3: layouts 1x1, 1x3, 2x2.\n"
                                "Ctrl+O: open a file.  Ctrl+Shift+O: open a folder.  Ctrl+H: DICOM header.")

    def show_about(self) -> None:
        from ... import __version__

        QMessageBox.about(self, "About medvision", f"medvision {__version__}\nA radiology workstation.")

    def closeEvent(self, event) -> None:
        if not self.annotating.closing():
            event.ignore()
            return
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        self.settings.layout = self.views.chosen_layout
        self.settings.maximised_pane = self.views.maximised
        self.settings.interpolate = self.viewer.interpolate
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self.controls.save_settings()
        self.settings.save()
        self.log_panel.detach()
        super().closeEvent(event)

    # ---- 3D view ---------------------------------------------------------------------------
    def start_view3d(self) -> None:
        """Create the 3D view (imports VTK): called once the window is on screen."""
        QTimer.singleShot(0, self._create_view3d)

    def _create_view3d(self) -> None:
        try:
            from ..views.view3d import View3D

            view = View3D(self)
        except Exception as exc:  # noqa: BLE001 - no VTK/OpenGL: the 2D views keep working
            log.error("the 3D view could not start: %s", exc)
            label = QLabel(f"3D view unavailable:\n{exc}")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
            label.setStyleSheet("background: black; color: #c88;")
            self.views.install_view3d(label)
            self.view3d_ready.emit()
            return
        self.views.install_view3d(view)
        self.controls.attach_view3d(view)
        self.annotating.attach_view3d(view)
        self.view3d_ready.emit()
