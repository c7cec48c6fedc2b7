"""The worklist dock: an annotation project's cases, their status, and moving through them.

A project is a folder (``project.json``, ``labels/``); its cases point at images anywhere. Opening
a case opens its image and its labels (or empty labels with the project's label table); Save
writes the case's labels into the project. Status shortcuts: Ctrl+Alt+1 todo, 2 in progress,
3 done, 4 reviewed; Ctrl+Alt+N saves and opens the next case to do.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...workspace.project import STATUSES, Project, ProjectError
from ..widgets import tool_buttons

log = logging.getLogger(__name__)

STATUS_COLOURS = {"todo": QColor(150, 150, 150), "in progress": QColor(230, 180, 60), "done": QColor(90, 190, 90),
                  "reviewed": QColor(90, 150, 230)}


class WorklistPanel(QWidget):
    def __init__(self, controls, window) -> None:
        super().__init__(window)
        self.controls = controls
        self.window = window
        self.annotation = controls.annotation
        self.project: Project | None = None
        self._opening: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.title = QLabel("No project open")
        self.title.setWordWrap(True)
        top.addWidget(self.title, 1)
        *_, self.add_button = tool_buttons(top, (
            ("Open...", "Open an annotation project folder", self.choose_project),
            ("New...", "Make a new annotation project in an empty folder", self.choose_new),
            ("Add image", "Add the image on screen to the project as a case", self.add_current)))
        layout.addLayout(top)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Case", "Status", "Annotator", "Modified"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_case(self._case_id(row)))
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.status_buttons = {}
        for i, status in enumerate(STATUSES):
            b = QToolButton()
            b.setText(status.capitalize())
            b.setToolTip(f"Mark the open case {status}  [Ctrl+Alt+{i + 1}]")
            b.clicked.connect(lambda _=False, s=status: self.set_status(s))
            row.addWidget(b)
            self.status_buttons[status] = b
        nxt = QToolButton()
        nxt.setText("Next \N{RIGHTWARDS ARROW}")
        nxt.setToolTip("Save, then open the next case to do  [Ctrl+Alt+N]")
        nxt.clicked.connect(self.next_case)
        row.addWidget(nxt)
        row.addStretch(1)
        layout.addLayout(row)
        self.summary = QLabel("")
        layout.addWidget(self.summary)
        for i, status in enumerate(STATUSES):
            self._shortcut(f"Ctrl+Alt+{i + 1}", lambda s=status: self.set_status(s))
        self._shortcut("Ctrl+Alt+N", self.next_case)
        self.annotation.state_changed.connect(self._mark_in_progress)
        self.annotation.saved.connect(lambda _where: self.refresh())
        self.refresh()

    def _shortcut(self, key: str, slot) -> None:
        act = QAction(self.window)
        act.setShortcut(QKeySequence(key))
        act.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        act.triggered.connect(slot)
        self.window.addAction(act)

    # ---- project --------------------------------------------------------------------------
    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open annotation project", self.window.settings.last_dir or "")
        if folder:
            self.open_project(folder)

    def choose_new(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New annotation project: choose an empty folder",
                                                  self.window.settings.last_dir or "")
        if folder:
            try:
                self.set_project(Project.create(folder))
            except (ProjectError, OSError) as exc:
                self.window.report_error(str(exc))

    def open_project(self, folder: str) -> bool:
        try:
            project = Project.open(folder)
        except (ProjectError, OSError) as exc:
            self.window.report_error(str(exc))
            return False
        self.set_project(project)
        return True

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.annotation.default_table = project.table if project is not None else None
        self.refresh()
        if project is not None:
            self.controls.worklist_dock.show()
            self.controls.worklist_dock.raise_()

    def add_current(self) -> None:
        ann = self.annotation
        if self.project is None or ann.source is None:
            self.window.report_error("open a project and an image first")
            return
        path, series = ann.source
        try:
            case = self.project.add_case(path, series=series)
        except (ProjectError, OSError) as exc:
            self.window.report_error(str(exc))
            return
        self.attach_case(str(self.project.folder), case.id)
        self.refresh()

    def attach_case(self, project_folder: str, case_id: str) -> None:
        """Make the labels on screen those of ``case_id`` (after a restore, or Add image)."""
        other = self.project is None or Path(project_folder).resolve() != self.project.folder.resolve()
        if other and not self.open_project(project_folder):
            return
        self.annotation.project, self.annotation.case_id = self.project, case_id
        self.refresh()

    # ---- cases ----------------------------------------------------------------------------
    def _case_id(self, row: int) -> str | None:
        item = self.table.item(row, 0)
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def refresh(self) -> None:
        project = self.project
        self.add_button.setEnabled(project is not None)
        if project is None:
            self.title.setText("No project open: Open... or New... an annotation project")
            self.table.setRowCount(0)
            self.summary.setText("")
            return
        self.title.setText(f"<b>{project.name}</b>  ({project.folder})")
        self.table.setRowCount(len(project.cases))
        current = self.annotation.case_id if self.annotation.project is project else None
        for r, case in enumerate(project.cases):
            items = [QTableWidgetItem(case.id), QTableWidgetItem(case.status), QTableWidgetItem(case.annotator),
                     QTableWidgetItem(case.modified.replace("T", " ")[:16])]
            items[0].setData(Qt.ItemDataRole.UserRole, case.id)
            items[0].setToolTip(str(project.image_path(case)))
            items[1].setForeground(QBrush(STATUS_COLOURS[case.status]))
            if case.id == current:
                font = items[0].font()
                font.setBold(True)
                for it in items:
                    it.setFont(font)
            for c, it in enumerate(items):
                self.table.setItem(r, c, it)
        counts = {s: len(project.with_status(s)) for s in STATUSES}
        self.summary.setText("  ".join(f"{s}: {n}" for s, n in counts.items()))
        for b in self.status_buttons.values():
            b.setEnabled(current is not None)

    def open_case(self, case_id: str | None) -> None:
        if self.project is None or case_id is None:
            return
        case = self.project.case(case_id)
        image = self.project.image_path(case)
        if not image.exists():
            self.window.report_error(f"case {case.id}: its image {image} is gone")
            return
        # opening the image asks first when the labels on screen have unsaved changes
        self._opening = case.id
        self.window.open_path(str(image), case.series)

    def after_load(self, ok: bool) -> None:
        case_id, self._opening = self._opening, None
        if case_id is None or not ok or self.project is None:
            return
        case = self.project.case(case_id)
        volume = self.window.viewer.frame_volume()
        try:
            labels = self.project.load_labels(case, volume)
        except Exception as exc:  # noqa: BLE001 - shown; the case's file is left as it is
            self.window.report_error(f"case {case.id}: its labels could not be read: {exc}")
            return
        self.annotation.default_table = self.project.table
        self.annotation.set_labels(labels, target=None)
        self.annotation.project, self.annotation.case_id = self.project, case.id
        self.refresh()
        self.window.statusBar().showMessage(f"case {case.id} ({case.status})", 8000)

    def _mark_in_progress(self) -> None:
        ann = self.annotation
        if ann.project is not None and ann.case_id and ann.dirty and not ann.busy:
            case = ann.project.case(ann.case_id)
            if case.status == "todo":
                ann.project.set_status(case.id, "in progress")
                self.refresh()

    def set_status(self, status: str) -> None:
        ann = self.annotation
        if ann.project is None or not ann.case_id:
            self.window.statusBar().showMessage("no case open: open one from the worklist", 6000)
            return
        # a case is finished with its labels on disk: fine-tuning trains on what is saved
        if status in ("done", "reviewed") and ann.dirty and not ann.save(wait=True):
            return
        ann.project.set_status(ann.case_id, status)
        self.refresh()
        self.window.statusBar().showMessage(f"case {ann.case_id}: {status}", 6000)

    def next_case(self) -> None:
        if self.project is None:
            return
        ann = self.annotation
        if ann.dirty and ann.project is self.project and ann.case_id and not ann.save(wait=True):
            return
        after = ann.case_id if ann.project is self.project else None
        nxt = self.project.next_case(after)
        if nxt is None:
            self.window.statusBar().showMessage("no case left to do in this project", 8000)
            return
        self.open_case(nxt.id)
