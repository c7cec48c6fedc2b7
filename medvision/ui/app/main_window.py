"""The main window: views, series browser, DICOM header, log; menus, toolbar and status bar.

The window delegates to its parts: opening and loading (:mod:`.loading`), the menus (:mod:`.menus`),
the status bar and header following the viewer (:mod:`.view_state`), the toolbar (:mod:`.controls`)
and annotation (:mod:`.annotating`).
"""

from __future__ import annotations

import gc
import logging
import os
import sys

from PySide6.QtCore import QByteArray, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStyle,
    QToolButton,
    QWidget,
)

from ...core.atomic import write_via
from ...io.dicom.index import DicomIndex, SeriesInfo
from ..job_status import JobStatus
from ..panels.header_view import DicomHeaderView
from ..panels.log_panel import LogPanel
from ..panels.series_browser import SeriesBrowser
from ..views.viewer import Viewer
from ..views.views_area import ViewsArea
from .annotating import AnnotationControls
from .controls import ViewControls
from .loading import Loading
from .menus import WindowMenus
from .settings import Settings
from .view_state import ViewState

log = logging.getLogger(__name__)

__all__ = ["MainWindow"]


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
        self.last_error = ""
        self.loading = Loading(self)
        self._shown_once = False
        self.setWindowTitle("medvision")
        self.setAcceptDrops(True)
        self.resize(self.first_size())

        self.views = ViewsArea(self.viewer, self)
        self.setCentralWidget(self.views)
        self.view_state = ViewState(self)
        self._build_docks()
        self.annotating = AnnotationControls(self)
        self.annotating.build_docks()
        self.load_finished.connect(self.annotating.after_load)
        self._build_status_bar()
        self.controls = ViewControls(self)
        self.controls.build()
        self.menus = WindowMenus(self)
        self.menus.build()

        self.views.set_layout(self.settings.layout, self.settings.maximised_pane)
        self.viewer.set_interpolate(self.settings.interpolate)
        self.viewer.cursor_changed.connect(self.view_state.cursor_changed)
        self.viewer.volume_changed.connect(self._on_volume_changed)
        self.viewer.data_updated.connect(lambda: self.view_state.show_position(self.viewer.cursor, "cursor"))
        self.viewer.display_changed.connect(self.view_state.display_changed)
        for view in self.views.slice_views.values():
            view.hovered.connect(self.view_state.show_hover)
        QApplication.instance().focusChanged.connect(self.view_state.focus_changed)
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))
        self.update_title()

    @staticmethod
    def first_size() -> QSize:
        """1500 x 950, or the screen's free area where it is smaller (a 1366 x 768 laptop): the whole
        window, its docks included, on the screen."""
        screen = QApplication.primaryScreen()
        if screen is None:
            return QSize(1500, 950)
        free = screen.availableGeometry()
        return QSize(min(1500, free.width()), min(950, free.height()))

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
        self.header_dock.visibilityChanged.connect(self.view_state.header_visibility)
        self.log_panel = LogPanel(self)
        self.log_dock = self.add_dock("Log", self.log_panel, Qt.DockWidgetArea.BottomDockWidgetArea, "log")
        self.log_dock.hide()

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

    def add_action(self, menu, text: str, slot, shortcut=None) -> QAction:
        """An action in ``menu`` calling ``slot`` (with ``shortcut``, if given)."""
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    # ---- opening (:mod:`.loading`) -----------------------------------------------------------
    def choose_file(self) -> None:
        self.loading.choose_file()

    def choose_folder(self) -> None:
        self.loading.choose_folder()

    def open_path(self, path: str, series: str | None = None) -> None:
        """Open a DICOM folder/zip/DICOMDIR (scanned into the browser; its image series opens), a
        DICOM file (with the rest of its series from the same folder), or a NIfTI/NRRD/MetaImage file."""
        self.open_paths([path], series)

    def open_paths(self, paths: list[str], series: str | None = None) -> None:
        """Open what was dropped or chosen together (see :meth:`.loading.Loading.open_paths`)."""
        self.loading.open_paths(paths, series)

    def open_series(self, series: SeriesInfo) -> None:
        """Load an image series of the index."""
        self.loading.open_series(series)

    def cancel_job(self) -> None:
        """Cancel the scan or load running."""
        self.loading.cancel()

    def show_warnings(self) -> None:
        """What the loader noticed about the data on screen (see :meth:`.loading.Loading.show_warnings`)."""
        self.loading.show_warnings()

    @property
    def last_warning_box(self) -> QMessageBox | None:
        """The box :meth:`show_warnings` made last, when MEDVISION_NO_DIALOGS is set (it is not opened)."""
        return self.loading.last_warning_box

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

    # ---- view state (:mod:`.view_state`) ------------------------------------------------------
    def set_layout(self, name: str) -> None:
        """Show the views as ``1x1``, ``1x3`` or ``2x2`` (remembered in the settings)."""
        self.view_state.set_layout(name)

    def _on_volume_changed(self) -> None:
        self.view_state.note_frame()
        self.loading.show_warning_button()
        self.view_state.fit_layout()
        self.view_state.show_position(self.viewer.cursor, "cursor")
        self.update_title()
        self.view_state.update_header()
        self.controls.volume_changed()

    def update_title(self) -> None:
        """The title: what is open, and a star while labels are unsaved."""
        volume = self.viewer.volume
        if volume is None:
            self.setWindowTitle("medvision")
            return
        meta = volume.metadata
        parts = [str(meta.get(k)) for k in ("patient_name", "modality", "description") if meta.get(k)]
        title = " - ".join(parts + ["medvision"]) if parts else f"{self.loading.label} - medvision"
        ann = self.annotating.annotation
        if ann.labels is not None:
            title = ("* " if ann.dirty else "") + (f"[{ann.case_id}] " if ann.case_id else "") + title
        self.setWindowTitle(title)

    # ---- screenshots, closing ---------------------------------------------------------------
    def save_screenshot(self, path: str) -> bool:
        """Render the whole window (3D view included) to a PNG, atomically."""
        image = self.grab().toImage()
        try:
            write_via(path, lambda tmp: image.save(str(tmp), "PNG"))
        except OSError as exc:
            self.report_error(f"{path}: could not write the screenshot ({exc.strerror or exc})")
            return False
        return True

    def closeEvent(self, event) -> None:
        if not self.annotating.closing():
            event.ignore()
            return
        runner = self.loading.runner
        if runner is not None and runner.running:
            runner.cancel()
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
