"""The central area: three slice views and the 3D view in layouts 1x1, 1x3 and 2x2.

Double-clicking a view maximises it (layout 1x1 on that view); double-clicking again returns to
the previous layout. The 3D view is created after the window is shown, so that importing VTK
does not delay the window.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from .slice_view import SliceView

log = logging.getLogger(__name__)

PANES = ("axial", "coronal", "sagittal", "3d")
#: grid positions (row, column) per layout; panes not listed are hidden. 2x2 is 3D Slicer's four-up.
_POSITIONS = {
    "1x3": {"axial": (0, 0), "coronal": (0, 1), "sagittal": (0, 2)},
    "2x2": {"axial": (0, 0), "3d": (0, 1), "sagittal": (1, 0), "coronal": (1, 1)},
}


class ViewsArea(QWidget):
    layout_changed = Signal(str)
    active_changed = Signal(str)

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.grid_layout = QGridLayout(self)
        self.grid_layout.setContentsMargins(0, 0, 0, 0)
        self.grid_layout.setSpacing(2)
        self.setStyleSheet("ViewsArea { background: #202020; }")
        self.slice_views = {plane: SliceView(viewer, plane) for plane in PANES[:3]}
        for view in self.slice_views.values():
            view.double_clicked.connect(self.toggle_maximised)
        self.view3d: QWidget | None = None
        self._pane_3d: QWidget = QLabel("3D view: starting ...")
        self._pane_3d.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._pane_3d.setStyleSheet("background: black; color: #aaa;")
        self.layout_name = "2x2"
        self.maximised = "axial"
        self._before_maximise: str | None = None
        self.active = "axial"
        self.set_layout("2x2")

    def pane(self, name: str) -> QWidget:
        return self._pane_3d if name == "3d" else self.slice_views[name]

    def install_view3d(self, widget: QWidget) -> None:
        """Put the real 3D view (or a widget explaining why there is none) into the 3D pane."""
        old = self._pane_3d
        self.grid_layout.removeWidget(old)
        old.hide()
        old.deleteLater()
        self._pane_3d = widget
        self.view3d = widget
        if hasattr(widget, "double_clicked"):
            widget.double_clicked.connect(lambda: self.toggle_maximised("3d"))
        self.set_layout(self.layout_name, self.maximised)

    def set_layout(self, name: str, maximised: str | None = None) -> None:
        if name not in ("1x1", "1x3", "2x2"):
            raise ValueError(f"unknown layout {name!r}")
        if maximised is not None:
            self.maximised = maximised
        positions = {self.maximised: (0, 0)} if name == "1x1" else _POSITIONS[name]
        for pane in PANES:
            widget = self.pane(pane)
            self.grid_layout.removeWidget(widget)
        for pane in PANES:
            widget = self.pane(pane)
            if pane in positions:
                r, c = positions[pane]
                self.grid_layout.addWidget(widget, r, c)
                widget.show()
            else:
                widget.hide()
        for i in range(3):
            self.grid_layout.setRowStretch(i, 1 if i < (2 if name == "2x2" else 1) else 0)
            self.grid_layout.setColumnStretch(i, 1 if i < {"1x1": 1, "1x3": 3, "2x2": 2}[name] else 0)
        if name != "1x1":
            self._before_maximise = None
        self.layout_name = name
        self.layout_changed.emit(name)

    def toggle_maximised(self, pane: str) -> None:
        if self.layout_name == "1x1" and self._before_maximise is not None:
            self.set_layout(self._before_maximise)
        else:
            previous = self.layout_name
            self.set_layout("1x1", pane)
            self._before_maximise = previous if previous != "1x1" else None
        self.set_active(pane)

    @property
    def chosen_layout(self) -> str:
        """The layout the user works in: the one before a view was maximised (what is saved)."""
        return self._before_maximise or self.layout_name

    def set_active(self, pane: str) -> None:
        if pane in self.slice_views and pane != self.active:
            self.active = pane
            self.active_changed.emit(pane)

    def visible_panes(self) -> list[str]:
        return [p for p in PANES if self.pane(p).isVisible()]
