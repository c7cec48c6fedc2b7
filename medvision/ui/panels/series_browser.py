"""The series browser: patients -> studies -> series of the DICOM index, with lazy thumbnails.

Everything slow runs on the thread pool: reading the index (``DicomIndex.contents``), scanning
folders (``DicomIndex.scan``) and making thumbnails (only for series rows on screen). Thumbnails
are cached in memory and as PNG files in ``cache_dir()/thumbnails``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPoint, QRegularExpression, QSize, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QGuiApplication,
    QIcon,
    QImage,
    QPainter,
    QPalette,
    QPixmap,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLineEdit,
    QMenu,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ...core.atomic import private_dir, write_via
from ...core.jobs import Job, Progress
from ...io.dicom.files import FileRef
from ...io.dicom.index import DicomIndex, PatientInfo, ScanResult, SeriesInfo, StudyInfo
from ...io.dicom.thumbnail import series_thumbnail
from ...io.errors import MedvisionIOError
from ...paths import cache_dir
from ..job_status import JobStatus
from ..jobs import JobRunner

log = logging.getLogger(__name__)

__all__ = ["SeriesBrowser", "thumbnail_name", "thumbnail_job", "KIND_NAMES"]

ROLE_NODE = Qt.ItemDataRole.UserRole + 1  # "patient:..", "study:..", "series:.." (stable across refreshes)
ROLE_INFO = Qt.ItemDataRole.UserRole + 2  # the PatientInfo / StudyInfo / SeriesInfo
ROLE_SEARCH = Qt.ItemDataRole.UserRole + 3  # lower-case text the filter matches

COLUMNS = ("Patient / study / series", "Details", "Modality", "Images", "Size")
KIND_NAMES = {
    "SEG": "segmentation", "RTSTRUCT": "RT structure set", "SR": "structured report", "KO": "key object selection",
    "PR": "presentation state", "DOC": "encapsulated document", "RAW": "raw data", "RTPLAN": "RT plan",
    "REG": "registration", "FID": "fiducials", "RTRECORD": "RT treatment record", "ECG": "waveform",
    "OTHER": "non-image object",
}
THUMB_SIZE = 96  # pixels of the cached image; shown at ``icon_size``
_BATCH = 16  # thumbnails per background job
_MEMORY_CACHE = 4000


# ---- thumbnails (run on a worker thread: QImage only, never QPixmap) -------------------------
def thumbnail_name(series: SeriesInfo, size: int = THUMB_SIZE) -> str:
    """The cache file name of a series' thumbnail: a hash of its key, kind, size and files."""
    h = hashlib.sha1(f"{size}\x1f{series.key}\x1f{series.kind}".encode())
    for ref in series.files:
        h.update(b"\x1e" + str(ref).encode("utf-8", "surrogateescape"))
    return h.hexdigest() + ".png"


def _load_or_make(path: Path, series: SeriesInfo, size: int) -> tuple[QImage | None, str | None]:
    if path.is_file():
        image = QImage(str(path))
        if not image.isNull():
            return image, None
    try:
        array = series_thumbnail(series, size)
    except MedvisionIOError as exc:
        return None, str(exc)
    except Exception as exc:
        log.warning("thumbnail of %s failed", series.label(), exc_info=True)
        return None, f"{series.label()}: no preview ({type(exc).__name__}: {exc})"
    h, w = array.shape
    data = array.tobytes()  # must outlive the QImage that wraps it until copy() returns
    image = QImage(data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    try:
        write_via(path, lambda tmp: image.save(str(tmp), "PNG"), private=True)
    except OSError as exc:
        log.warning("cannot write the thumbnail cache file %s: %s", path, exc)
    return image, None


def thumbnail_job(requests: list[tuple[str, SeriesInfo]], folder: Path, size: int = THUMB_SIZE) -> Job[int]:
    """Load (disk cache) or make each thumbnail; every record's preview is ``(name, QImage|None, error|None)``."""
    private_dir(folder)
    yield Progress("thumbnails", 0, len(requests))
    for i, (name, series) in enumerate(requests):
        image, error = _load_or_make(folder / name, series, size)
        yield Progress("thumbnails", i + 1, len(requests), preview=(name, image, error))
    return len(requests)


def _contents_job(index: DicomIndex) -> Job[ScanResult]:
    yield Progress("reading the index")
    return index.contents()


def _forget_job(index: DicomIndex, refs: list[FileRef]) -> Job[int]:
    yield Progress("removing from the list", 0, len(refs))
    return index.forget(*refs)


def _scan_job(index: DicomIndex, paths: list[str]) -> Job[list[ScanResult]]:
    results = []
    for path in paths:
        results.append((yield from index.scan(path)))  # noqa: PERF401 - a job: no `yield from` in a comprehension
    return results


# ---- text helpers ------------------------------------------------------------------------------
def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _person(name: str) -> str:
    parts = [p.strip() for p in name.split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:] if p)
    return f"{family}, {given}" if family and given else (family or given or "(no name)")


def _files(info: PatientInfo | StudyInfo | SeriesInfo) -> list[FileRef]:
    if isinstance(info, SeriesInfo):
        return list(info.files)
    studies = info.studies if isinstance(info, PatientInfo) else [info]
    return [f for st in studies for s in st.series for f in s.files]


def _folders(info: PatientInfo | StudyInfo | SeriesInfo) -> list[str]:
    """The fewest folders (or zip files) that hold every file of the node."""
    places = sorted({f.path if f.member else os.path.dirname(f.path) for f in _files(info)})
    out: list[str] = []
    for p in places:
        if not out or not (p + os.sep).startswith(out[-1].rstrip(os.sep) + os.sep):
            out.append(p)
    return out


def _label(info: PatientInfo | StudyInfo | SeriesInfo) -> str:
    if isinstance(info, PatientInfo):
        return f"{_person(info.name)} ({info.id or 'no ID'})"
    if isinstance(info, StudyInfo):
        return f"{_date(info.date) or 'no date'}  {info.description or '(no description)'}"
    num = f"#{info.number} " if info.number is not None else ""
    return f"{num}{info.description or '(no description)'}"


def _glyph(text: str, size: int, colour: QColor) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    if text:
        p = QPainter(pix)
        p.setPen(colour)
        p.drawRoundedRect(2, 2, size - 5, size - 5, 4, 4)
        font = p.font()
        font.setPixelSize(max(8, size // (3 + len(text) // 3)))
        font.setBold(True)
        p.setFont(font)
        p.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, text)
        p.end()
    return QIcon(pix)


# ---- the widget ----------------------------------------------------------------------------------
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
        self._icons: OrderedDict[str, QIcon] = OrderedDict()  # thumbnail name -> icon (memory cache)
        self._thumb_errors: dict[str, str] = {}
        self._pending: OrderedDict[str, SeriesInfo] = OrderedDict()
        self._thumb_runner: JobRunner | None = None
        self._refresh_runner: JobRunner | None = None
        self._refresh_again = False
        self._select_after: str | None = None
        self._scanned_results: list[ScanResult] = []
        self._scans: list[JobRunner] = []
        self._populated = False

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter: patient name or ID, description, modality")
        self.filter_edit.setClearButtonEnabled(True)
        # the scans running (one row for all; Cancel cancels every scan)
        self.progress_row = JobStatus(self, label=True, own_cancel=True)
        self.progress_row.cancel_requested.connect(self.cancel_scans)

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
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
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        self._grey = grey
        self._placeholder = _glyph("", icon_size, grey)
        self._failed_icon = _glyph("?", icon_size, grey)

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
        return self._start_scan([os.path.abspath(os.fspath(path))])

    def refresh(self) -> None:
        """Rebuild the tree from the index (read in the background), keeping expansion and selection."""
        if self._refresh_runner is not None:
            self._refresh_again = True
            return
        self._refresh_runner = self._run(_contents_job(self.index), "series list", self._populate,
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
        folders = _folders(info)
        return self._start_scan(folders) if folders else None

    def remove_from_list(self, info: PatientInfo | StudyInfo | SeriesInfo) -> JobRunner:
        """Forget the node's files in the index (the files stay on disk), then refresh."""
        refs, label = _files(info), _label(info)

        def removed(n: int) -> None:
            self.status.emit(f"Removed {label} from the list ({n} files; a rescan brings them back)")
            self.refresh()

        return self._run(_forget_job(self.index, refs), f"remove {label}", removed,
                         lambda exc: self.status.emit(f"Cannot remove {label} from the list: {exc}"))

    def copy_folder(self, info: PatientInfo | StudyInfo | SeriesInfo) -> str:
        """Copy the folder holding the node's files to the clipboard; returns it."""
        folders = _folders(info)
        folder = folders[0] if len(folders) == 1 else os.path.commonpath(folders) if folders else ""
        QGuiApplication.clipboard().setText(folder)
        self.status.emit(f"Copied {folder} to the clipboard")
        return folder

    def thumbnail(self, series: SeriesInfo) -> QIcon | None:
        """The series' thumbnail once it is loaded or made, else None."""
        return self._icons.get(thumbnail_name(series))

    def thumbnail_error(self, series: SeriesInfo) -> str | None:
        return self._thumb_errors.get(thumbnail_name(series))

    def cancel_scans(self) -> None:
        for runner in self._scans:
            runner.cancel()

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
    def _run(self, job: Job, name: str, on_finished=None, on_failed=None) -> JobRunner:
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

    def _start_scan(self, paths: list[str]) -> JobRunner:
        what = paths[0] if len(paths) == 1 else f"{len(paths)} folders"
        runner = self._run(_scan_job(self.index, paths), f"scan {what}",
                           lambda results: self._scan_finished(runner, what, results),
                           lambda exc: self._scan_failed(runner, what, exc))
        runner.progress.connect(lambda p: self._scan_progress(what, p))
        runner.cancelled.connect(lambda: self._scan_cancelled(runner, what))
        self._scans.append(runner)
        self.progress_row.start(f"Scanning {os.path.basename(what) or what}")
        return runner

    def _scan_progress(self, what: str, p: Progress) -> None:
        self.progress_row.show_progress(p, prefix=f"{os.path.basename(what) or what}: ")

    def _scan_ended(self, runner: JobRunner) -> None:
        """Hide the progress row (on finished/failed/cancelled: done() may come after the refresh)."""
        if runner in self._scans:
            self._scans.remove(runner)
        if not self._scans:
            self.progress_row.finish()

    def _scan_cancelled(self, runner: JobRunner, what: str) -> None:
        self._scan_ended(runner)
        self.status.emit(f"Scan of {what} cancelled")

    def _scan_failed(self, runner: JobRunner, what: str, exc: BaseException) -> None:
        self._scan_ended(runner)
        text = str(exc) or type(exc).__name__
        self.status.emit(f"Scan failed: {text}" if what in text else f"Scan of {what} failed: {text}")

    def _scan_finished(self, runner: JobRunner, what: str, results: list[ScanResult]) -> None:
        self._scan_ended(runner)
        for result in results:
            self.status.emit(_scan_summary(result))
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
        model = QStandardItemModel(0, len(COLUMNS), self)
        model.setHorizontalHeaderLabels(list(COLUMNS))
        self._items, self._thumb_nodes = {}, {}
        self._pending.clear()  # what is on screen is asked for again below
        patients = sorted(contents.patients, key=lambda p: (p.name.lower(), p.id))
        for patient in patients:
            model.appendRow(self._patient_row(patient))
        old = self.model
        self.model = model
        self.proxy.setSourceModel(model)
        old.deleteLater()
        if not self._populated and len(patients) <= 5:
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

    def _row(self, node: str, info, search: str, cells: list[str]) -> list[QStandardItem]:
        items = [QStandardItem(text) for text in cells]
        items[0].setData(node, ROLE_NODE)
        items[0].setData(info, ROLE_INFO)
        items[0].setData(search.lower(), ROLE_SEARCH)
        self._items[node] = items[0]
        return items

    def _patient_row(self, p: PatientInfo) -> list[QStandardItem]:
        search = f"{p.name.replace('^', ' ')} {p.id}"
        details = ", ".join(x for x in (p.sex, f"born {_date(p.birth_date)}" if p.birth_date else "") if x)
        row = self._row(f"patient:{p.id}\x1f{p.name}", p, search,
                        [_label(p), details, "", f"{len(p.studies)} studies" if len(p.studies) != 1 else "1 study", ""])
        font = row[0].font()
        font.setBold(True)
        row[0].setFont(font)
        for study in sorted(p.studies, key=lambda s: (s.date, s.time), reverse=True):
            row[0].appendRow(self._study_row(study, search))
        return row

    def _study_row(self, st: StudyInfo, search: str) -> list[QStandardItem]:
        search = f"{search} {st.description}"
        modalities = ", ".join(sorted({s.modality for s in st.series if s.modality}))
        n = len(st.series)
        row = self._row(f"study:{st.key}", st, search,
                        [_label(st), f"Acc. {st.accession}" if st.accession else "", modalities,
                         f"{n} series", ""])
        for series in sorted(st.series, key=lambda s: (s.number is None, s.number or 0, s.description)):
            row[0].appendRow(self._series_row(series, search))
        return row

    def _series_row(self, s: SeriesInfo, search: str) -> list[QStandardItem]:
        image = s.kind == "image"
        n = s.instance_count
        if not image:
            count = f"{n} object{'s' if n != 1 else ''}"
        elif s.frames and s.frames != n:
            count = f"{n} file{'s' if n != 1 else ''}, {s.frames} frames"
        else:
            count = f"{n} image{'s' if n != 1 else ''}"
        if len(s.files) > n:  # the same images indexed in more than one folder (a copy)
            count += f" ({len(s.files)} files)"
        details = s.body_part if image else f"{s.kind}: {KIND_NAMES.get(s.kind, 'non-image object')}"
        size = f"{s.rows} x {s.columns}" if image and s.rows and s.columns else ""
        node = f"series:{s.key}\x1f{s.kind}"
        row = self._row(node, s, f"{search} {s.description} {s.modality} {s.kind}",
                        [_label(s), details, s.modality, count, size])
        first = s.files[0] if s.files else None
        row[0].setToolTip(f"{s.label()}\nSeries UID {s.uid or '(empty)'}\n{n} files"
                          + (f" in {os.path.dirname(first.path) if not first.member else first.path}" if first else ""))
        if image:
            name = thumbnail_name(s)
            self._thumb_nodes.setdefault(name, []).append(node)
            icon = self._icons.get(name)
            row[0].setIcon(icon or (self._failed_icon if name in self._thumb_errors else self._placeholder))
        else:
            row[0].setIcon(_glyph(s.kind, self.icon_size, self._grey))
            for item in row:
                item.setForeground(self._grey)
        return row

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
                if name not in self._icons and name not in self._thumb_errors:
                    self._pending[name] = info
                    self._pending.move_to_end(name, last=False)  # on screen now: first
            index = self.tree.indexBelow(index)
        self._next_thumbnails()

    def _next_thumbnails(self) -> None:
        if self._thumb_runner is not None or not self._pending:
            return
        batch = []
        while self._pending and len(batch) < _BATCH:
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
        if image is None:
            self._thumb_errors[name] = error or "no preview"
            icon = self._failed_icon
        else:
            icon = QIcon(QPixmap.fromImage(image))
            self._icons[name] = icon
            while len(self._icons) > _MEMORY_CACHE:
                self._icons.popitem(last=False)
        for node in self._thumb_nodes.get(name, ()):
            item = self._items.get(node)
            if item is not None:
                item.setIcon(icon)
                if error:
                    item.setToolTip(f"{item.toolTip()}\n{error}")


def _scan_summary(result: ScanResult) -> str:
    path = result.root
    series = result.all_series()
    images = [s for s in series if s.kind == "image"]
    skipped = (f"; {len(result.problems)} files skipped, e.g. {result.problems[0]}" if result.problems else "")
    if not series:
        if not result.files_seen:
            return f"No DICOM files in {path}: it holds no files"
        return f"No DICOM images in {path}: none of its {result.files_seen} files is readable DICOM{skipped}"
    if not images:
        kinds = ", ".join(sorted({s.kind for s in series}))
        return f"No image series in {path}: only non-image objects ({kinds})"
    patients = len(result.patients)
    return (f"{path}: {len(images)} image series of {patients} patient{'s' if patients != 1 else ''} "
            f"({result.files_seen} files, {result.files_read} read){skipped}")
