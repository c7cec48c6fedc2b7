"""The Box tool: drag a rectangle on a slice view; it fills the active label on that slice, or through a
depth in millimetres centred on it (a box in 3D: the region an inpainting model fills, a block to erase
burned-in text, a crop to label). Ctrl while releasing erases instead. One drag is one undo step."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

from ...annotate.rules import paint
from .tools import Tool

__all__ = ["BoxTool"]


class BoxTool(Tool):
    """Drag a rectangle: the active label fills it, on this slice or through the depth set (Ctrl: erase)."""

    name = "box"
    title = "Box"

    def __init__(self, annotation) -> None:
        super().__init__(annotation)
        self.depth_mm = 0.0  # 0: the slice drawn on alone
        self.view = None
        self.corners: list[np.ndarray] = []
        self.erase = False

    def _reset(self) -> None:
        view, self.view, self.corners = self.view, None, []
        if view is not None:
            view.viewport().update()

    def deactivate(self) -> None:
        self._reset()

    def press(self, view, ijk, modifiers) -> bool:
        self._reset()
        self.view = view
        self.corners = [np.asarray(ijk, float), np.asarray(ijk, float)]
        self.erase = bool(modifiers & Qt.KeyboardModifier.ControlModifier)
        return True

    def drag(self, view, ijk) -> None:
        if view is self.view and self.corners:
            self.corners[1] = np.asarray(ijk, float)
            view.viewport().update()

    def release(self, view, ijk) -> None:
        if view is self.view and self.corners:
            self.corners[1] = np.asarray(ijk, float)
        self.apply()

    def key(self, view, ev) -> bool:
        if self.corners and ev.key() == Qt.Key.Key_Escape:
            self._reset()
            return True
        return False

    def box(self, view, a, b) -> tuple[slice, slice, slice] | None:
        """The (z, y, x) box of the rectangle from display index ``a`` to ``b`` on ``view``, through the depth."""
        volume = self.viewer.volume
        if volume is None:
            return None
        za, zb = self.viewer.array_index(a), self.viewer.array_index(b)
        lo = np.floor(np.minimum(za, zb) + 0.5).astype(int)
        hi = np.floor(np.maximum(za, zb) + 0.5).astype(int)
        axis = self.viewer.array_axis(view.plane)
        spacing = volume.spacing[::-1]  # (z, y, x) mm
        half = int(np.floor(self.depth_mm / 2 / spacing[axis] + 1e-6))
        centre = int(round(float(za[axis])))
        lo[axis], hi[axis] = centre - half, centre + half
        shape = volume.shape[-3:]
        lo, hi = np.maximum(lo, 0), np.minimum(hi, np.asarray(shape) - 1)
        if np.any(hi < lo):
            return None
        return tuple(slice(int(p), int(q) + 1) for p, q in zip(lo, hi, strict=True))  # type: ignore[return-value]

    def apply(self) -> bool:
        """Fill (or erase) the box drawn; returns whether labels changed."""
        view, corners, erase = self.view, self.corners, self.erase
        self._reset()
        ann = self.annotation
        if view is None or len(corners) < 2 or not ann.can_edit():
            return False
        box = self.box(view, *corners)
        value = 0 if erase else ann.paint_value()
        labels = ann.ensure_labels()
        if box is None or value is None or labels is None:
            return False
        mask = np.ones(tuple(s.stop - s.start for s in box), bool)
        return paint(ann.history, labels, box, mask, value, ann.rules, ann.image,
                     description="erase box" if erase else "fill box")

    def paint(self, view, painter: QPainter) -> None:
        if view is not self.view or len(self.corners) < 2:
            return
        a, b = (view.viewport_point(c) for c in self.corners)
        rect = QRectF(a, b).normalized()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
        painter.drawRect(rect)
        painter.setPen(QPen(QColor(255, 80, 80) if self.erase else self._colour(), 1.5))
        painter.drawRect(rect)
