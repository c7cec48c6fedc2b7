"""Searchable DICOM header viewer: a tree of (Tag, Name, VR, Value) rows for one file.

The main window calls :meth:`DicomHeaderView.set_source` whenever the slice under the crosshair
changes, so headers are cached (a small LRU by file) and the model is a thin Python tree model
that resets in constant time; search filtering runs over a flat list of precomputed lower-case
texts. Big files are read on a worker thread.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QAbstractItemModel, QItemSelectionModel, QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QFont, QFontDatabase, QFontMetrics, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QSizePolicy,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ...io.dicom.files import FileRef
from ...io.dicom.header import HeaderNode, HeaderRow, HeaderTree, header_rows, normalize_query, read_header_job
from ..jobs import JobRunner, run_in_thread

log = logging.getLogger(__name__)

COLUMNS = ("Tag", "Name", "VR", "Value")
_FRAME_BACKGROUND = QColor(255, 200, 60, 70)


class HeaderModel(QAbstractItemModel):
    """Qt tree model over a :class:`HeaderTree` (only the rows its search shows)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tree = HeaderTree([])
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._bold = QFont()
        self._bold.setBold(True)

    @property
    def tree(self) -> HeaderTree:
        return self._tree

    @property
    def query(self) -> str:
        return self._tree.query

    @property
    def match_count(self) -> int:
        return self._tree.match_count

    def set_tree(self, tree: HeaderTree, frame: int | None = None) -> None:
        """Show ``tree`` with ``frame`` marked, filtered by the current query."""
        self.beginResetModel()
        query = self._tree.query
        self._tree.mark_frame(None)  # trees are cached and shared: leave no mark behind
        self._tree = tree
        tree.mark_frame(frame)
        if query or tree.query:
            tree.filter(query)
        self.endResetModel()

    def set_query(self, query: str) -> int:
        """Filter by ``query`` (normalised, see :func:`normalize_query`); returns the match count."""
        self.beginResetModel()
        self._tree.filter(query)
        self.endResetModel()
        return self._tree.match_count

    def node(self, index: QModelIndex) -> HeaderNode:
        return index.internalPointer() if index.isValid() else self._tree.root

    def index_of(self, node: HeaderNode | None, column: int = 0) -> QModelIndex:
        if node is None or node.parent is None or not node.visible:
            return QModelIndex()
        return self.createIndex(node.pos, column, node)

    def find(self, path: tuple[str, ...]) -> QModelIndex:
        return self.index_of(self._tree.find(path))

    # -- QAbstractItemModel ------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        node = self.node(parent)
        if parent.isValid() and parent.column() != 0:
            return QModelIndex()
        if 0 <= row < len(node.shown) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, node.shown[row])
        return QModelIndex()

    def parent(self, index: QModelIndex | None = None):  # type: ignore[override]
        if index is None:
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        node: HeaderNode = index.internalPointer()
        up = node.parent
        if up is None or up.parent is None:
            return QModelIndex()
        return self.createIndex(up.pos, 0, up)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).shown)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def hasChildren(self, parent: QModelIndex = QModelIndex()) -> bool:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return False
        return bool(self.node(parent).shown)

    def headerData(self, section: int, orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        node: HeaderNode = index.internalPointer()
        row = node.row
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (row.tag, node.name, row.vr, row.value)[col]
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 3 and row.value:
                text = row.copy_value
                return text if len(text) <= 2000 else text[:2000] + f"... ({len(text)} chars)"
            if col in (0, 1) and row.keyword:
                return row.keyword
            return None
        if role == Qt.ItemDataRole.FontRole:
            if self._tree.query and node.match:
                return self._bold
            if col == 0:
                return self._mono
            return None
        if role == Qt.ItemDataRole.BackgroundRole and node is self._tree.frame_node:
            return _FRAME_BACKGROUND
        if role == Qt.ItemDataRole.ForegroundRole and self._tree.query and not node.match:
            return QColor(128, 128, 128)
        return None


class _TreeView(QTreeView):
    copy_requested = Signal(bool)  # True: whole rows

    def keyPressEvent(self, event) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_requested.emit(False)
            event.accept()
            return
        if (event.key() == Qt.Key.Key_C and event.modifiers()
                == (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)):
            self.copy_requested.emit(True)
            event.accept()
            return
        super().keyPressEvent(event)


class DicomHeaderView(QWidget):
    """The header of one DICOM file, with search and copy."""

    CACHE_SIZE = 8
    #: files at least this big are read on a worker thread (their headers can be big, too)
    async_min_bytes = 2 * 1024 * 1024
    #: headers with more rows than this filter after a short pause in typing, not at every key
    debounce_rows = 3000

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cache: OrderedDict[FileRef, HeaderTree | str] = OrderedDict()
        self._ref: FileRef | None = None
        self._frame: int | None = None
        self._shown_ref: FileRef | None = None  # the file whose header the tree shows
        self._shown_frame: int | None = None
        self._runner: JobRunner | None = None
        self._loading: FileRef | None = None

        self.title_label = QLabel()
        self.title_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        font = self.title_label.font()
        font.setBold(True)
        self.title_label.setFont(font)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search tag, keyword, name or value")
        self.search_edit.setClearButtonEnabled(True)
        self.count_label = QLabel()
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.message_label.setContentsMargins(6, 6, 6, 6)
        self.message_label.hide()

        self.model = HeaderModel(self)
        self.tree = _TreeView()
        self.tree.setModel(self.model)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.setIndentation(14)
        header = self.tree.header()
        header.setStretchLastSection(True)
        metrics = self.tree.fontMetrics()
        self.tree.setTreePosition(1)  # nesting is shown in the Name column; tags stay aligned
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.tree.setColumnWidth(0, QFontMetrics(mono).horizontalAdvance("(0000,0000)") + 16)
        self.tree.setColumnWidth(1, metrics.horizontalAdvance("Media Storage SOP Instance UID") + 3 * 14 + 12)
        self.tree.setColumnWidth(2, metrics.horizontalAdvance("VR") + 16)

        self.copy_value_action = QAction("Copy value", self)
        self.copy_value_action.setShortcut(QKeySequence.StandardKey.Copy)
        self.copy_value_action.triggered.connect(lambda: self.copy_selection(rows=False))
        self.copy_row_action = QAction("Copy row", self)
        self.copy_row_action.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.copy_row_action.triggered.connect(lambda: self.copy_selection(rows=True))
        for action in (self.copy_value_action, self.copy_row_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)  # keys go through _TreeView
        self.tree.copy_requested.connect(lambda rows: self.copy_selection(rows=rows))
        self.tree.customContextMenuRequested.connect(self._context_menu)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._apply_query)
        self.search_edit.textChanged.connect(self._on_text_changed)
        self.search_edit.returnPressed.connect(self._apply_query)

        search_row = QHBoxLayout()
        search_row.setContentsMargins(0, 0, 0, 0)
        search_row.addWidget(self.search_edit, 1)
        search_row.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.title_label)
        layout.addLayout(search_row)
        layout.addWidget(self.message_label, 1)
        layout.addWidget(self.tree, 1)
        self._show_message("No image.")

    # -- public ------------------------------------------------------------------------------------
    def set_source(self, ref: FileRef | None, frame: int | None = None, title: str = "") -> None:
        """Show the header of ``ref`` (``frame``, 0-based, marks that frame's functional group item)."""
        self._ref, self._frame = ref, frame
        if ref is None:
            self.title_label.setText("")
            self.title_label.setToolTip("")
            self._shown_ref = None
            self.model.set_tree(HeaderTree([]))
            self._show_message(title or "No image.")
            return
        self.title_label.setText(f"{ref.name} \u2014 {title}" if title else ref.name)
        self.title_label.setToolTip(str(ref))
        if ref == self._shown_ref and frame == self._shown_frame:
            return  # the same file and frame again (the crosshair moved within the slice)
        cached = self._cache.get(ref)
        if cached is not None:
            self._cache.move_to_end(ref)
            self._display(ref, cached)
            return
        if self._big(ref):
            self._shown_ref = None
            self.model.set_tree(HeaderTree([]))
            self._show_message(f"Reading the header of {ref.name}\u2026")
            if self._loading is None:
                self._start_loading(ref)
            return
        try:
            result: HeaderTree | str = HeaderTree(header_rows(ref))
        except Exception as exc:  # noqa: BLE001 - any unreadable file: a message in the view, never a crash
            result = self._error_text(ref, exc)
        self._remember(ref, result)
        self._display(ref, result)

    def current_ref(self) -> FileRef | None:
        """The file whose header was last asked for (None when there is none)."""
        return self._ref

    def search(self, text: str) -> int:
        """Set the search text and filter now; returns the number of matching rows."""
        self.search_edit.blockSignals(True)
        self.search_edit.setText(text)
        self.search_edit.blockSignals(False)
        self._apply_query()
        return self.model.match_count

    @property
    def match_count(self) -> int:
        return self.model.match_count

    @property
    def message(self) -> str:
        """The message shown instead of the header ("" while a header is shown)."""
        return self.message_label.text() if not self.message_label.isHidden() else ""

    @property
    def is_loading(self) -> bool:
        return self._loading is not None

    def select(self, index: QModelIndex) -> None:
        """Make ``index`` the current and only selected row, opening its ancestors."""
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.tree.selectionModel().setCurrentIndex(index, flags)
        up = index.parent()
        while up.isValid():
            self.tree.expand(up)
            up = up.parent()

    def selected_rows(self) -> list[HeaderRow]:
        indexes = self.tree.selectionModel().selectedRows(0)
        if not indexes and self.tree.currentIndex().isValid():
            indexes = [self.tree.currentIndex().siblingAtColumn(0)]
        indexes.sort(key=lambda i: self.tree.visualRect(i).top())
        return [self.model.node(i).row for i in indexes if i.isValid()]

    def copy_selection(self, *, rows: bool = False) -> str:
        """Copy the selected rows' values (or whole rows, tab-separated) to the clipboard."""
        lines = []
        for row in self.selected_rows():
            if rows:
                lines.append("\t".join((row.tag, row.name, row.vr, row.copy_value)))
            else:
                lines.append(row.copy_value)
        text = "\n".join(lines)
        if lines:
            QGuiApplication.clipboard().setText(text)
        return text

    # -- loading -------------------------------------------------------------------------------------
    def _big(self, ref: FileRef) -> bool:
        try:
            return os.path.getsize(ref.path) >= self.async_min_bytes
        except OSError:
            return False  # reading it will report the problem

    def _start_loading(self, ref: FileRef) -> None:
        self._loading = ref
        self._runner = run_in_thread(
            read_header_job(ref), parent=self, name=f"header of {ref.name}",
            on_finished=lambda rows, r=ref: self._loaded(r, rows),
            on_failed=lambda exc, r=ref: self._loaded(r, self._error_text(r, exc)))

    def _loaded(self, ref: FileRef, result) -> None:
        self._loading = None
        self._runner = None
        tree = result if isinstance(result, str) else HeaderTree(result)
        self._remember(ref, tree)
        want = self._ref
        if want == ref:
            self._display(ref, tree)
        elif want is not None and want not in self._cache and self._big(want):
            self._start_loading(want)

    def _remember(self, ref: FileRef, result: HeaderTree | str) -> None:
        self._cache[ref] = result
        self._cache.move_to_end(ref)
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)

    @staticmethod
    def _error_text(ref: FileRef, exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        if str(ref) not in text:
            text = f"{ref}: {text}"
        log.info("header not shown: %s", text)
        return f"Cannot show the DICOM header.\n{text}"

    # -- display -------------------------------------------------------------------------------------
    def _display(self, ref: FileRef, result: HeaderTree | str) -> None:
        if isinstance(result, str):
            self._shown_ref = None
            self.model.set_tree(HeaderTree([]))
            self._show_message(result)
            return
        state = self._view_state() if self._shown_ref is not None else None
        self.model.set_tree(result, self._frame)
        self._shown_ref, self._shown_frame = ref, self._frame
        self.message_label.hide()
        self.tree.show()
        self._apply_query(state=state)
        frame_node = self.model.tree.frame_node
        if frame_node is not None and frame_node.parent is not None:
            parent_index = self.model.index_of(frame_node.parent)
            if parent_index.isValid() and self.tree.isExpanded(parent_index):
                self.tree.scrollTo(self.model.index_of(frame_node))

    def _show_message(self, text: str) -> None:
        self.message_label.setText(text)
        self.message_label.show()
        self.tree.hide()
        self.count_label.setText("")

    def _on_text_changed(self, _text: str) -> None:
        if len(self.model.tree) > self.debounce_rows:
            self._timer.start()
        else:
            self._apply_query()

    def _apply_query(self, state: _ViewState | None = None) -> None:
        """Filter by the search text; ``state`` (after a change of file) is restored, else the
        current row stays current (and is revealed) and a cleared search collapses everything."""
        self._timer.stop()
        query = normalize_query(self.search_edit.text())
        if state is None:
            if query == self.model.query:
                return
            state = self._view_state()
            state.scroll = None
        count = self.model.set_query(query) if query != self.model.query else self.model.match_count
        if query:
            self.tree.expandAll()  # every visible row with children is an ancestor of a match
            self.count_label.setText(f"{count} match" + ("" if count == 1 else "es"))
        else:
            self.count_label.setText("")
            self._restore_expanded(state.expanded)
        self._restore_selection(state)

    # -- view state across files ---------------------------------------------------------------------
    def _view_state(self) -> _ViewState:
        current = self.tree.currentIndex()
        path = self.model.node(current).path if current.isValid() else ()
        expanded: list[tuple[str, ...]] = []
        if not self.model.query:
            stack = [self.model.tree.root]
            while stack:
                node = stack.pop()
                for child in node.shown:
                    if child.shown and self.tree.isExpanded(self.model.index_of(child)):
                        expanded.append(child.path)
                        stack.append(child)
        return _ViewState(path, expanded, self.tree.verticalScrollBar().value())

    def _restore_expanded(self, paths: list[tuple[str, ...]]) -> None:
        for path in paths:
            index = self.model.find(path)
            if index.isValid():
                self.tree.expand(index)

    def _restore_selection(self, state: _ViewState) -> None:
        index = self.model.find(state.current) if state.current else QModelIndex()
        if index.isValid():
            self.select(index)
        if state.scroll is not None:
            self.tree.verticalScrollBar().setValue(state.scroll)
        elif index.isValid():
            self.tree.scrollTo(index)

    def context_menu_at(self, pos) -> QMenu | None:
        """The context menu for a click at ``pos`` (viewport coordinates); selects the row under it."""
        index = self.tree.indexAt(pos)
        if index.isValid() and not self.tree.selectionModel().isSelected(index):
            self.select(index)
        if not self.selected_rows():
            return None
        menu = QMenu(self)
        menu.addAction(self.copy_value_action)
        menu.addAction(self.copy_row_action)
        return menu

    def _context_menu(self, pos) -> None:
        menu = self.context_menu_at(pos)
        if menu is not None:
            menu.exec(self.tree.viewport().mapToGlobal(pos))
            menu.deleteLater()


@dataclass(slots=True)
class _ViewState:
    current: tuple[str, ...]
    expanded: list[tuple[str, ...]]  # open rows (only recorded while no search is active)
    scroll: int | None

