"""The list of measurements made in the slice views: value per row, delete, clear, copy as CSV."""

from __future__ import annotations

import csv
import io

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.measure import ROW_HEADER
from ..annotating.measure import Measurements
from ..widgets import tool_buttons


class MeasurementList(QWidget):
    def __init__(self, measurements: Measurements, viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.measurements = measurements
        self.viewer = viewer
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, len(ROW_HEADER))
        self.table.setHorizontalHeaderLabels([h.capitalize() for h in ROW_HEADER])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(len(ROW_HEADER) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(90)
        self.table.cellDoubleClicked.connect(self.go_to)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        tool_buttons(row, (("Delete", "Delete the selected measurement", self.delete_selected),
                           ("Clear", "Delete every measurement", measurements.clear),
                           ("Copy as CSV", "Copy the list to the clipboard", self.copy_csv)))
        row.addStretch(1)
        layout.addLayout(row)
        measurements.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        rows = self.measurements.as_rows()
        self.table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, v in enumerate(values):
                item = QTableWidgetItem(str(v))
                item.setToolTip(str(v))
                self.table.setItem(r, c, item)

    def go_to(self, row: int, _col: int = 0) -> None:
        """Show the slice a measurement was made on."""
        if 0 <= row < len(self.measurements.items):
            m = self.measurements.items[row]
            self.viewer.set_slice(m.plane, m.slice)

    def delete_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        for r in rows:
            if 0 <= r < len(self.measurements.items):
                self.measurements.remove(self.measurements.items[r])

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(ROW_HEADER)
        writer.writerows(self.measurements.as_rows())
        return out.getvalue()

    def copy_csv(self) -> None:
        QGuiApplication.clipboard().setText(self.csv_text())

