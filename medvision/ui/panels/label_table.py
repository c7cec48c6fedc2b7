"""The label table of the working labels: add, rename, recolour, hide, lock, terminology codes,
and statistics per label (voxels, mL, intensity; HU for CT)."""

from __future__ import annotations

import csv
import io
import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core import terminology
from ..widgets import tool_buttons

log = logging.getLogger(__name__)

COL_COLOUR, COL_VALUE, COL_NAME, COL_SHOW, COL_LOCK, COL_CODE = range(6)


class LabelTableWidget(QWidget):
    """Rows of the annotation's label table; the selected row is the active label."""

    statistics_requested = Signal()

    def __init__(self, annotation, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.annotation = annotation
        self._filling = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["", "#", "Name", "Show", "Lock", "Terminology"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        header = self.table.horizontalHeader()
        fit = QHeaderView.ResizeMode.ResizeToContents
        for col, mode in ((COL_COLOUR, QHeaderView.ResizeMode.Fixed), (COL_VALUE, fit),
                          (COL_NAME, QHeaderView.ResizeMode.Stretch), (COL_SHOW, fit), (COL_LOCK, fit),
                          (COL_CODE, fit)):
            header.setSectionResizeMode(col, mode)
        self.table.setColumnWidth(COL_COLOUR, 26)
        self.table.setMinimumHeight(140)
        self.table.itemChanged.connect(self._item_changed)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellDoubleClicked.connect(self._double_clicked)
        layout.addWidget(self.table)

        buttons = QHBoxLayout()
        self.add_button, self.remove_button, self.colour_button, self.code_button, self.stats_button = tool_buttons(
            buttons, (("Add", "Add a label (it becomes the active one)", self.add_label),
                      ("Delete", "Delete the selected label and its voxels (undoable)", self.remove_label),
                      ("Colour...", "Change the selected label's colour", self.choose_colour),
                      ("Terminology...", "DICOM category and type (SNOMED CT) of the label", self.choose_code),
                      ("Statistics", "Voxels, volume and intensity per label", self.statistics_requested.emit)))
        buttons.addStretch(1)
        layout.addLayout(buttons)

        annotation.labels_replaced.connect(self.refresh)
        annotation.table_changed.connect(self.refresh)
        annotation.active_changed.connect(self._select_active)
        self.refresh()

    # ---- filling --------------------------------------------------------------------------
    def refresh(self) -> None:
        labels = self.annotation.labels
        self._filling = True
        try:
            rows = list(labels.table) if labels is not None else []
            self.table.setRowCount(len(rows))
            for r, la in enumerate(rows):
                swatch = QTableWidgetItem("")
                swatch.setBackground(QBrush(QColor(*la.color[:3])))
                swatch.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                swatch.setToolTip("double-click to change the colour")
                value = QTableWidgetItem(str(la.value))
                value.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                value.setData(Qt.ItemDataRole.UserRole, la.value)
                name = QTableWidgetItem(la.name)
                show = QTableWidgetItem("")
                show.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                              | Qt.ItemFlag.ItemIsUserCheckable)
                show.setCheckState(Qt.CheckState.Checked if la.visible else Qt.CheckState.Unchecked)
                lock = QTableWidgetItem("")
                lock.setFlags(show.flags())
                lock.setCheckState(Qt.CheckState.Checked if la.locked else Qt.CheckState.Unchecked)
                category, type_ = terminology.codes_for(la)
                own = la.type is not None
                code = QTableWidgetItem(f"{type_.meaning}" + ("" if own else " (guess)"))
                code.setToolTip(f"category {category.meaning} ({category.scheme} {category.value}); "
                                f"type {type_.meaning} ({type_.scheme} {type_.value})"
                                + ("" if own else "\nfrom the label's name; set it with Terminology..."))
                code.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                for col, item in ((COL_COLOUR, swatch), (COL_VALUE, value), (COL_NAME, name), (COL_SHOW, show),
                                  (COL_LOCK, lock), (COL_CODE, code)):
                    self.table.setItem(r, col, item)
        finally:
            self._filling = False
        self._select_active(self.annotation.active)
        has = labels is not None and len(labels.table) > 0
        for b in (self.remove_button, self.colour_button, self.code_button):
            b.setEnabled(has)
        self.stats_button.setEnabled(labels is not None)
        self.add_button.setEnabled(self.annotation.editable)

    def _row_value(self, row: int) -> int | None:
        item = self.table.item(row, COL_VALUE)
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def _select_active(self, value: int) -> None:
        for r in range(self.table.rowCount()):
            if self._row_value(r) == value:
                if self.table.currentRow() != r:
                    self.table.selectRow(r)
                return

    def selected_value(self) -> int | None:
        row = self.table.currentRow()
        return None if row < 0 else self._row_value(row)

    # ---- edits ----------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        value = self.selected_value()
        if value is not None and not self._filling:
            self.annotation.set_active(value)

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or self.annotation.labels is None:
            return
        value = self._row_value(item.row())
        table = self.annotation.labels.table
        if value not in table:
            return
        label = table[value]
        if item.column() == COL_NAME:
            name = item.text().strip()
            if not name or name == label.name:
                self.refresh()
                return
            label.name = name
            if label.type is None:  # a name the bundled terminology knows gets its codes
                entry = terminology.lookup(name)
                if entry is not None:
                    label.category, label.type = entry.category, entry.type
        elif item.column() == COL_SHOW:
            label.visible = item.checkState() == Qt.CheckState.Checked
        elif item.column() == COL_LOCK:
            label.locked = item.checkState() == Qt.CheckState.Checked
        else:
            return
        self.annotation.table_edited()

    def _double_clicked(self, row: int, col: int) -> None:
        if col == COL_COLOUR:
            self.choose_colour()
        elif col == COL_CODE:
            self.choose_code()

    def add_label(self) -> None:
        if self.annotation.add_label() is not None:
            row = self.table.rowCount() - 1
            self.table.setCurrentCell(row, COL_NAME)

    def remove_label(self) -> None:
        value = self.selected_value()
        if value is not None and self.annotation.can_edit():
            self.annotation.remove_label(value)

    def choose_colour(self) -> None:
        value = self.selected_value()
        labels = self.annotation.labels
        if value is None or labels is None:
            return
        label = labels.table[value]
        colour = QColorDialog.getColor(QColor(*label.color[:3]), self, f"Colour of {label.name}")
        if colour.isValid():
            label.color = (colour.red(), colour.green(), colour.blue(), 255)
            self.annotation.table_edited()

    def choose_code(self) -> None:
        value = self.selected_value()
        labels = self.annotation.labels
        if value is None or labels is None:
            return
        dialog = TerminologyDialog(labels.table[value], self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.chosen is not None:
            label = labels.table[value]
            label.category, label.type = dialog.chosen.category, dialog.chosen.type
            if dialog.rename.isChecked():
                label.name = dialog.chosen.type.meaning
            self.annotation.table_edited()


class TerminologyDialog(QDialog):
    """Choose a label's DICOM category and type from the bundled SNOMED CT subset."""

    def __init__(self, label, parent=None) -> None:
        super().__init__(parent)
        from PySide6.QtWidgets import QCheckBox

        self.setWindowTitle(f"Terminology of {label.name}")
        self.chosen = None
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Type (SNOMED CT); DICOM SEG files carry it for other tools to read:"))
        self.combo = QComboBox()
        self.entries = sorted(terminology.entries(), key=lambda e: e.type.meaning.lower())
        for e in self.entries:
            self.combo.addItem(f"{e.type.meaning}  ({e.category.meaning}, SCT {e.type.value})")
        current = label.type or (terminology.lookup(label.name).type if terminology.lookup(label.name) else None)
        for i, e in enumerate(self.entries):
            if current is not None and e.type.value == current.value:
                self.combo.setCurrentIndex(i)
        layout.addWidget(self.combo)
        self.rename = QCheckBox("Also name the label after it")
        layout.addWidget(self.rename)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _accept(self) -> None:
        self.chosen = self.entries[self.combo.currentIndex()]
        self.accept()


class StatisticsDialog(QDialog):
    """Statistics of every label: voxels, volume (mL), mean/std/min/max intensity (HU for CT)."""

    def __init__(self, stats, unit: str, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Label statistics")
        self.resize(760, 360)
        layout = QVBoxLayout(self)
        u = f" ({unit})" if unit else ""
        headers = ["#", "Name", "Voxels", "Volume (mL)", f"Mean{u}", f"Std{u}", f"Min{u}", f"Max{u}"]
        self.rows = [[s.value, s.name, s.voxels, s.volume_ml, s.mean, s.std, s.min, s.max] for s in stats]
        self.headers = headers
        table = QTableWidget(len(self.rows), len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.verticalHeader().hide()
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for r, row in enumerate(self.rows):
            for c, v in enumerate(row):
                text = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
                if c == 3 and v is not None:
                    text = f"{v:.3f}"
                item = QTableWidgetItem(text)
                if c != 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(r, c, item)
        table.resizeColumnsToContents()
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(table)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy as CSV")
        copy.clicked.connect(self.copy_csv)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.headers)
        writer.writerows(self.rows)
        return out.getvalue()

    def copy_csv(self) -> None:
        QGuiApplication.clipboard().setText(self.csv_text())
