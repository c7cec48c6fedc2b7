"""The series browser: patients -> studies -> series of the DICOM index, with lazy thumbnails.

Everything slow runs on the thread pool: reading the index (``DicomIndex.contents``), scanning
folders (``DicomIndex.scan``) and making thumbnails (only for series rows on screen). Thumbnails
are cached in memory and as PNG files in ``cache_dir()/thumbnails``. The rows are built in
:mod:`.series_tree`, the thumbnails made in :mod:`.series_thumbnails`, the jobs and the scans'
progress are in :mod:`.series_jobs`.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from PySide6.QtCore import QModelIndex, QPoint, QRegularExpression, QSize, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QIcon, QPalette, QStandardItem
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLineEdit,
    QMenu,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ...core.jobs import Job, Progress
from ...io.dicom.index import DicomIndex, PatientInfo, ScanResult, SeriesInfo, StudyInfo
from ...paths import cache_dir
from ..job_status import JobStatus
from ..jobs import JobRunner
from .series_jobs import ScanJobs, contents_job, forget_job
from .series_thumbnails import BATCH, ThumbnailIcons, thumbnail_job, thumbnail_name
from .series_tree import (
    COLUMNS,
    KIND_NAMES,
    ROLE_INFO,
    ROLE_NODE,
    ROLE_SEARCH,
    TreeBuilder,
    new_model,
    node_files,
    node_folders,
    node_label,
)

__all__ = ["SeriesBrowser"]


class SeriesBrowser(QWidget):
    """Patient -> study -> series tree of a :class:`DicomIndex`, for a dock of the main window."""

    open_requested = Signal(object)  # SeriesInfo of an image series to open
    status = Signal(str)  # a message for the status bar
    scanned = Signal(object)  # ScanResult of add_path, once the tree shows it
    refreshed = Signal()  # the tree was rebuilt from the index

    def __init__(self, index: DicomIndex, parent: QWidget | None = None, *, icon_size: int = 56) -> None:
        super().__init__(parent)
        self.index = index
        self.thumbnail_dir = cache_dir() / "thumbnails"
        self._items: dict[str, QStandardItem] = {}  # node id -> column-0 item
        self._thumb_nodes: dict[str, list[str]] = {}  # thumbnail name -> node ids showing it
        self._pending: OrderedDict[str, SeriesInfo] = OrderedDict()
        self._thumb_runner: JobRunner | None = None
        self._refresh_runner: JobRunner | None = None
        self._refresh_again = False
        self._select_after: str | None = None
        self._scanned_results: list[ScanResult] = []
        self._populated = False

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter: patient name or ID, description, modality")
        self.filter_edit.setClearButtonEnabled(True)
        # the scans running (one row for all; Cancel cancels every scan)
        self.progress_row = JobStatus(self, label=True, own_cancel=True)
        self.progress_row.cancel_requested.connect(self.cancel_scans)
        self.scans = ScanJobs(self, self.progress_row)

        self.model = new_model(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setFilterRole(ROLE_SEARCH)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setAutoAcceptChildRows(True)
        self.proxy.setSourceModel(self.model)
        self.tree = QTreeView(self)
        self.tree.setModel(self.proxy)
        self.tree.setIconSize(QSize(icon_size, icon_size))
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setAlternatingRowColors(True)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.icon_size = icon_size
        #: the colour of non-image rows and of the drawn icons
        self.grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        self.thumbs = ThumbnailIcons(icon_size, self.grey)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.progress_row)
        layout.addWidget(self.tree, 1)

        self._thumb_timer = QTimer(self)
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.setInterval(40)
        self._thumb_timer.timeout.connect(self._request_visible_thumbnails)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.tree.activated.connect(self._on_activated)
        self.tree.customContextMenuRequested.connect(self._on_context_menu)
        self.tree.expanded.connect(self._schedule_thumbnails)
        self.tree.collapsed.connect(self._schedule_thumbnails)
        self.tree.verticalScrollBar().valueChanged.connect(self._schedule_thumbnails)
        live = self._live = []  # every running job, cancelled when the widget goes away
        self.destroyed.connect(lambda *_: [r.cancel() for r in list(live)])
        self.refresh()

    # ---- public API ----------------------------------------------------------------------------
    def add_path(self, path: str | os.PathLike) -> JobRunner:
        """Scan a folder, zip, DICOMDIR or file into the index (in the background), then show it."""
        return self.scans.start([os.path.abspath(os.fspath(path))])

    def refresh(self) -> None:
        """Rebuild the tree from the index (read in the background), keeping expansion and selection."""
        if self._refresh_runner is not None:
            self._refresh_again = True
            return
        self._refresh_runner = self.run_job(contents_job(self.index), "series list", self._populate,
                                            self._refresh_failed)

    def select_series(self, key: str) -> bool:
        """Select (and show) the series with this key; applied again after a refresh in progress."""
        if self._refresh_runner is not None:
            self._select_after = key
        node = self._series_node(key)
        if node is None:
            return self._select_after == key
        index = self.proxy.mapFromSource(self._items[node].index())
        if not index.isValid():  # hidden by the filter
            self.filter_edit.clear()
            index = self.proxy.mapFromSource(self._items[node].index())
        self.tree.expand(index.parent())
        self.tree.setCurrentIndex(index)
        self.tree.scrollTo(index)
        return True

    def selected_series(self) -> SeriesInfo | None:
        info = self.tree.currentIndex().siblingAtColumn(0).data(ROLE_INFO)
        return info if isinstance(info, SeriesInfo) else None

    def open_series(self, series: SeriesInfo) -> bool:
        """Ask to open an image series; a non-image object only gets a status message."""
        if series.kind != "image":
            what = KIND_NAMES.get(series.kind, "non-image object")
            self.status.emit(f"{series.label()} is a DICOM {series.kind} ({what}), not an image series: "
                             "it cannot be opened as images")
            return False
        self.status.emit(f"Opening {series.label()} ({series.instance_count} files)")
        self.open_requested.emit(series)
        return True

    def rescan(self, info: PatientInfo | StudyInfo | SeriesInfo) -> JobRunner | None:
        """Scan again the folders holding the node's files."""
        folders = node_folders(info)
        return self.scans.start(folders) if folders else None

    def remove_from_list(self, info: PatientInfo | StudyInfo | SeriesInfo) -> JobRunner:
        """Forget the node's files in the index (the files stay on disk), then refresh."""
        refs, label = node_files(info), node_label(info)

        def removed(n: int) -> None:
            self.status.emit(f"Removed {label} from the list ({n} files; a rescan brings them back)")
            self.refresh()

        return self.run_job(forget_job(self.index, refs), f"remove {label}", removed,
                            lambda exc: self.status.emit(f"Cannot remove {label} from the list: {exc}"))

    def copy_folder(self, info: PatientInfo | StudyInfo | SeriesInfo) -> str:
        """Copy the folder holding the node's files to the clipboard; returns it."""
        folders = node_folders(info)
        folder = folders[0] if len(folders) == 1 else os.path.commonpath(folders) if folders else ""
        QGuiApplication.clipboard().setText(folder)
        self.status.emit(f"Copied {folder} to the clipboard")
        return folder

    def thumbnail(self, series: SeriesInfo) -> QIcon | None:
        """The series' thumbnail once it is loaded or made, else None."""
        return self.thumbs.icons.get(thumbnail_name(series))

    def thumbnail_error(self, series: SeriesInfo) -> str | None:
        return self.thumbs.errors.get(thumbnail_name(series))

    def cancel_scans(self) -> None:
        self.scans.cancel()

    def context_menu(self, index: QModelIndex) -> QMenu | None:
        """The context menu of a row (not shown)."""
        info = index.siblingAtColumn(0).data(ROLE_INFO)
        if info is None:
            return None
        menu = QMenu(self)
        if isinstance(info, SeriesInfo):
            act = menu.addAction("Open", lambda: self.open_series(info))
            act.setEnabled(info.kind == "image")
        menu.addAction("Rescan folder", lambda: self.rescan(info))
        menu.addAction("Remove from list", lambda: self.remove_from_list(info))
        menu.addAction("Show in folder (copy path)", lambda: self.copy_folder(info))
        return menu

    # ---- jobs ------------------------------------------------------------------------------
    def run_job(self, job: Job, name: str, on_finished=None, on_failed=None) -> JobRunner:
        """Run ``job`` on the thread pool (cancelled if the browser goes away); returns its started runner."""
        runner = JobRunner(job, name=name, parent=self)
        if on_finished is not None:
            runner.finished.connect(on_finished)
        if on_failed is not None:
            runner.failed.connect(on_failed)
        self._live.append(runner)
        runner.done.connect(lambda: self._job_done(runner))
        return runner.start()

    def _job_done(self, runner: JobRunner) -> None:
        # The runner stays a child of the browser: deleting it (deleteLater) after done() crashed
        # PySide 6.11 under pytest-qt; a finished runner holds nothing large.
        if runner in self._live:
            self._live.remove(runner)

    def show_scanned(self, results: list[ScanResult]) -> None:
        """Refresh to show what scans found: the first image series gets selected, and ``scanned`` is emitted
        for each result once the tree shows it."""
        first = next((s for r in results for s in r.all_series(images_only=True)), None)
        if first is not None:
            self._select_after = first.key
        self._scanned_results.extend(results)
        self.refresh()

    # ---- building the tree ------------------------------------------------------------------
    def _refresh_failed(self, exc: BaseException) -> None:
        self._refresh_runner = None
        self.status.emit(f"Cannot read the DICOM index {self.index.db_path}: {exc}")

    def _populate(self, contents: ScanResult) -> None:
        self._refresh_runner = None
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()
            return
        expanded = {n for n, item in self._items.items()
                    if not n.startswith("series:") and self.tree.isExpanded(self.proxy.mapFromSource(item.index()))}
        current = self.tree.currentIndex().siblingAtColumn(0).data(ROLE_NODE)
        self._pending.clear()  # what is on screen is asked for again below
        builder = TreeBuilder(self.icon_size, self.grey, self.thumbs.row_icon)
        model = builder.build(contents, self)
        self._items, self._thumb_nodes = builder.items, builder.thumb_nodes
        old = self.model
        self.model = model
        self.proxy.setSourceModel(model)
        old.deleteLater()
        if not self._populated and len(contents.patients) <= 5:
            expanded |= {n for n in self._items if n.startswith("patient:")}
        self._populated = True
        for node in expanded:
            if node in self._items:
                self.tree.expand(self.proxy.mapFromSource(self._items[node].index()))
        key, self._select_after = self._select_after, None
        if key is not None:
            self.select_series(key)
        elif current in self._items:
            self.tree.setCurrentIndex(self.proxy.mapFromSource(self._items[current].index()))
        self._schedule_thumbnails()
        self.refreshed.emit()
        results, self._scanned_results = self._scanned_results, []
        for result in results:
            self.scanned.emit(result)

    def _series_node(self, key: str) -> str | None:
        nodes = [n for n in self._items if n.startswith(f"series:{key}\x1f")]
        return next((n for n in nodes if n.endswith("\x1fimage")), nodes[0] if nodes else None)

    # ---- filter, activation, context menu ---------------------------------------------------------
    def _apply_filter(self, text: str) -> None:
        terms = text.lower().split()
        pattern = "".join(f"(?=.*{QRegularExpression.escape(t)})" for t in terms)
        self.proxy.setFilterRegularExpression(QRegularExpression(f"^{pattern}" if terms else ""))
        if terms and self.proxy.rowCount() <= 50:
            self.tree.expandAll()
        self._schedule_thumbnails()

    def _on_activated(self, index: QModelIndex) -> None:
        info = index.siblingAtColumn(0).data(ROLE_INFO)
        if isinstance(info, SeriesInfo):
            self.open_series(info)

    def _on_context_menu(self, pos: QPoint) -> None:
        menu = self.context_menu(self.tree.indexAt(pos))
        if menu is not None:
            menu.exec(self.tree.viewport().mapToGlobal(pos))
            menu.deleteLater()

    # ---- thumbnails --------------------------------------------------------------------------
    def _schedule_thumbnails(self, *_args) -> None:
        self._thumb_timer.start()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        # a narrow dock keeps the names readable: Details and Size only when there is room
        narrow = self.width() < 480
        for column in (1, 4):
            self.tree.setColumnHidden(column, narrow)
        self._schedule_thumbnails()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._schedule_thumbnails()

    def _request_visible_thumbnails(self) -> None:
        """Queue thumbnails of the image series rows on screen (not those in collapsed studies)."""
        if not self.tree.isVisible():
            return
        bottom = self.tree.viewport().height()
        index = self.tree.indexAt(QPoint(1, 1)).siblingAtColumn(0)
        while index.isValid() and self.tree.visualRect(index).top() <= bottom:
            info = index.data(ROLE_INFO)
            if isinstance(info, SeriesInfo) and info.kind == "image":
                name = thumbnail_name(info)
                if not self.thumbs.known(name):
                    self._pending[name] = info
                    self._pending.move_to_end(name, last=False)  # on screen now: first
            index = self.tree.indexBelow(index)
        self._next_thumbnails()

    def _next_thumbnails(self) -> None:
        if self._thumb_runner is not None or not self._pending:
            return
        batch = []
        while self._pending and len(batch) < BATCH:
            batch.append(self._pending.popitem(last=False))
        runner = JobRunner(thumbnail_job(batch, self.thumbnail_dir), name="thumbnails", parent=self)
        runner.progress.connect(self._thumbnail_ready)
        runner.done.connect(self._thumbnails_done)
        self._live.append(runner)
        self._thumb_runner = runner.start()

    def _thumbnails_done(self) -> None:
        if self._thumb_runner is not None:
            self._job_done(self._thumb_runner)
        self._thumb_runner = None
        self._next_thumbnails()

    def _thumbnail_ready(self, p: Progress) -> None:
        if p.preview is None:
            return
        name, image, error = p.preview
        icon = self.thumbs.add(name, image, error)
        for node in self._thumb_nodes.get(name, ()):
            item = self._items.get(node)
            if item is not None:
                item.setIcon(icon)
                if error:
                    item.setToolTip(f"{item.toolTip()}\n{error}")
