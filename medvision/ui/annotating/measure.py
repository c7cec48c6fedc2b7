"""Measurements in the slice views: ruler (mm), angle (degrees), ellipse and rectangle ROIs with the
statistics of the image inside (area mm², mean ± std, min..max; HU for CT), as in OHIF and Slicer.

A measurement belongs to the plane and slice it was drawn on and is painted only there. Its points
are display indices (x, y, z; floats); lengths and angles are taken in patient millimetres
(:meth:`~medvision.core.display.DisplayGrid.world`), so anisotropic pixels and coronal or sagittal
views across thick slices measure true. An ROI's pixels are those whose centres lie inside its
shape; its area is the shape's own (pi a b for an ellipse). All measurements of a viewer live in
one :class:`Measurements`, a decoration of the viewer that every slice view paints: they stay when
the tool changes and go when another volume opens. The numbers (geometry and statistics) come from
:mod:`medvision.core.measure`; this module draws measurements, keeps their list and makes the tools.

Tools: click the points one by one, or drag (a ruler from end to end, the first arm of an angle,
an ROI's bounding box). Escape cancels a measurement in progress, Backspace/Delete takes back its
last point, or, with none in progress, removes the last measurement shown in the view.
"""

from __future__ import annotations

import itertools
import logging
import math
import weakref

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen

from ...core.measure import KINDS, N_POINTS, ROI_KINDS, Measurement, measure, roi_values
from .tools import Tool

log = logging.getLogger(__name__)

__all__ = ["AngleTool", "EllipseTool", "Measurements", "RectangleTool", "RulerTool", "draw_measurement",
           "measurement_tools"]

COLOUR = QColor(90, 225, 255)  # apart from the crosshair colours (red, green, yellow) and labels
_SHADOW = QColor(0, 0, 0, 200)
_MIN_DRAG_PX = 3  # a release closer than this to the last point is no point of its own


# ---- the measurements of a viewer ---------------------------------------------------------------
class Measurements(QObject):
    """All measurements of a viewer, painted by every slice view showing their plane and slice.

    Appends itself to ``viewer.decorations``; cleared when the viewer's volume changes; ROI
    statistics follow the frame shown (4D) and voxels still arriving (a loading volume)."""

    changed = Signal()

    def __init__(self, viewer) -> None:
        super().__init__(viewer)
        self.viewer = viewer
        self.items: list[Measurement] = []
        self._views: weakref.WeakSet = weakref.WeakSet()  # the views that painted us: to repaint
        self._frame = viewer.frame
        viewer.decorations.append(self)
        viewer.volume_changed.connect(self.clear)
        viewer.display_changed.connect(self._on_display_changed)
        viewer.data_updated.connect(self.recompute)

    # ---- computing ----------------------------------------------------------------------------
    def measure(self, kind: str, plane: str, slice_index: int, points) -> Measurement | None:
        """A measurement of ``kind`` from its points on the current volume (not added); None
        without a volume or with too few points."""
        viewer = self.viewer
        if kind not in KINDS:
            raise ValueError(f"unknown measurement kind {kind!r}")
        if viewer.grid is None:
            return None
        return measure(viewer.grid, viewer.volume.metadata, viewer.frame_array(), kind, plane, slice_index, points)

    def recompute(self) -> None:
        """Statistics again from the image (another frame shown, or voxels changed)."""
        if self.viewer.grid is None:
            return
        for m in self.items:
            if m.kind in ROI_KINDS:
                m.values.update(roi_values(self.viewer.grid, m, self.viewer.frame_array()))
        if self.items:
            self._changed()

    def _on_display_changed(self) -> None:
        if self.viewer.frame != self._frame:
            self._frame = self.viewer.frame
            self.recompute()

    # ---- the list -----------------------------------------------------------------------------
    def add(self, kind: str, plane: str, slice_index: int, points) -> Measurement | None:
        """Measure and keep; returns the measurement (None when it could not be made)."""
        m = self.measure(kind, plane, slice_index, points)
        if m is not None:
            self.items.append(m)
            log.info("%s on %s slice %d: %s", kind, plane, slice_index + 1, m.text())
            self._changed()
        return m

    def remove(self, m: Measurement) -> None:
        self.items.remove(m)
        self._changed()

    def remove_last(self, view=None) -> Measurement | None:
        """Remove the last measurement (with ``view``: the last one shown there); returns it."""
        for m in reversed(self.items):
            if view is None or m.visible_in(view):
                self.remove(m)
                return m
        return None

    def clear(self) -> None:
        self._frame = self.viewer.frame
        if self.items:
            self.items = []
            self._changed()

    def visible(self, view) -> list[Measurement]:
        """The measurements ``view`` shows (its plane and slice)."""
        return [m for m in self.items if m.visible_in(view)]

    def as_rows(self) -> list[tuple[str, str, int, str]]:
        """One row per measurement for a table or CSV (columns :data:`ROW_HEADER`): kind, plane,
        slice number as the view shows it (1-based), value text."""
        return [m.row() for m in self.items]

    def _changed(self) -> None:
        self.changed.emit()
        for view in list(self._views):
            view.viewport().update()

    # ---- painting -----------------------------------------------------------------------------
    def paint(self, view, painter: QPainter) -> None:
        self._views.add(view)
        for m in self.visible(view):
            draw_measurement(view, painter, m)


# ---- drawing (viewport pixels) ----------------------------------------------------------------
def _stroke(painter: QPainter, colour: QColor, draw) -> None:
    """Draw twice: a dark wide line under a thin coloured one, readable on bone as on air."""
    painter.setBrush(Qt.BrushStyle.NoBrush)
    for pen in (QPen(_SHADOW, 3.5), QPen(colour, 1.5)):
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        draw()


def _unit(p: QPointF) -> QPointF:
    n = math.hypot(p.x(), p.y())
    return QPointF(p.x() / n, p.y() / n) if n > 1e-9 else QPointF(0, 0)


def _label(view, painter: QPainter, anchor: QPointF, lines: list[str], colour: QColor,
           left: bool = False) -> None:
    """Text lines beside ``anchor`` (to its left with ``left``), with a dark outline, kept inside
    the viewport."""
    font = QFont(view.font())
    font.setPointSizeF(max(9.5, font.pointSizeF()))
    font.setBold(True)
    painter.setFont(font)
    fm = painter.fontMetrics()
    width = max(fm.horizontalAdvance(s) for s in lines)
    height = fm.height() * len(lines)
    vw, vh = view.viewport().width(), view.viewport().height()
    x = anchor.x() - width if left else anchor.x()
    if x + width > vw - 4:
        x = anchor.x() - width - 12
    x = min(max(x, 4), max(vw - width - 4, 4))
    y = min(max(anchor.y() - height / 2, 4), max(vh - height - 4, 4))
    for i, text in enumerate(lines):
        base = QPointF(x, y + fm.ascent() + i * fm.height())
        painter.setPen(_SHADOW)
        for dx, dy in ((1, 1), (-1, -1), (1, -1), (-1, 1), (0, 1.5)):
            painter.drawText(base + QPointF(dx, dy), text)
        painter.setPen(colour)
        painter.drawText(base, text)


def draw_measurement(view, painter: QPainter, m: Measurement, colour: QColor = COLOUR) -> None:
    """Draw ``m`` (or a preview of one in progress) in ``view``, in viewport pixels."""
    pts = [view.viewport_point(p) for p in m.points]
    if m.kind == "ruler":
        a, b = pts
        n = _unit(b - a)
        tick = QPointF(-n.y(), n.x()) * 6

        def ruler() -> None:
            painter.drawLine(a, b)
            for p in (a, b):
                painter.drawLine(p - tick, p + tick)

        _stroke(painter, colour, ruler)
        # the label beyond the end more to the right, so it never sits on the line
        end, other = (b, a) if b.x() >= a.x() else (a, b)
        _label(view, painter, end + _unit(end - other) * 10 + QPointF(4, 0), m.lines(), colour)
    elif m.kind == "angle":
        a, v, b = pts
        ua, ub = _unit(a - v), _unit(b - v)
        radius = min(22.0, 0.4 * min(math.dist(a.toTuple(), v.toTuple()), math.dist(b.toTuple(), v.toTuple())))
        start = math.degrees(math.atan2(-ua.y(), ua.x()))
        span = (math.degrees(math.atan2(-ub.y(), ub.x())) - start + 180) % 360 - 180

        def angle() -> None:
            painter.drawLine(v, a)
            painter.drawLine(v, b)
            if radius > 3:
                painter.drawArc(QRectF(v.x() - radius, v.y() - radius, 2 * radius, 2 * radius),
                                round(start * 16), round(span * 16))

        _stroke(painter, colour, angle)
        away = _unit(-(ua + ub)) if (ua + ub).manhattanLength() > 1e-3 else QPointF(-ua.y(), ua.x())
        anchor = v + away * 16
        _label(view, painter, anchor, m.lines(), colour, left=away.x() < 0)
    else:
        box = QRectF(pts[0], pts[1]).normalized()
        _stroke(painter, colour, lambda: painter.drawEllipse(box) if m.kind == "ellipse" else painter.drawRect(box))
        _label(view, painter, QPointF(box.right() + 8, box.center().y()), m.lines(), colour)


# ---- tools ------------------------------------------------------------------------------------
class _MeasureTool(Tool):
    """Click the points one by one, or drag from one to the next; the measurement previews live
    and is kept (in the :class:`Measurements`) with its last point."""

    kind = "ruler"

    def __init__(self, annotation, measurements: Measurements) -> None:
        super().__init__(annotation)
        self.measurements = measurements
        self.view = None
        self.slice: int | None = None
        self.points: list[np.ndarray] = []
        self.live: np.ndarray | None = None  # the mouse: the next point while it moves
        self.viewer.volume_changed.connect(self.cancel)

    @property
    def in_progress(self) -> bool:
        return bool(self.points)

    def cancel(self) -> None:
        """Drop the measurement in progress."""
        view, self.view, self.slice, self.points, self.live = self.view, None, None, [], None
        if view is not None:
            view.removeEventFilter(self)
            view.viewport().update()

    def deactivate(self) -> None:
        self.cancel()

    def _start_on(self, view) -> None:
        if self.view is not view or view.current_slice() != self.slice:
            self.cancel()
            self.view, self.slice = view, view.current_slice()
            view.installEventFilter(self)

    def eventFilter(self, obj, ev) -> bool:
        # Escape is also the views' shortcut back to navigating: while a measurement is in
        # progress the key is ours (it cancels the measurement; pressed again, it leaves the tool)
        if (ev.type() == QEvent.Type.ShortcutOverride and obj is self.view and self.points
                and ev.key() == Qt.Key.Key_Escape):
            ev.accept()
            return True
        return False

    def _far_enough(self, view, ijk) -> bool:
        return not self.points or (view.viewport_point(ijk) - view.viewport_point(self.points[-1])
                                   ).manhattanLength() >= _MIN_DRAG_PX

    def _add(self, view, ijk) -> None:
        self.points.append(np.asarray(ijk, float))
        self.live = None
        if len(self.points) >= N_POINTS[self.kind]:
            self._commit()
        else:
            view.viewport().update()

    def _commit(self) -> None:
        view, plane, index, points = self.view, self.view.plane, self.slice, self.points
        self.cancel()
        m = self.measurements.add(self.kind, plane, index, points)
        if m is not None:
            self.annotation.message.emit(f"{self.title}: {m.text()}")
        view.viewport().update()

    def preview(self) -> Measurement | None:
        """The measurement in progress as it would be with the mouse as its last point (None
        while more points are missing)."""
        if self.view is None or not self.points:
            return None
        points = self.points + ([self.live] if self.live is not None else [])
        if len(points) != N_POINTS[self.kind]:
            return None
        return self.measurements.measure(self.kind, self.view.plane, self.slice, points)

    # ---- events -------------------------------------------------------------------------------
    def click(self, view, ijk, modifiers, double: bool) -> bool:
        if double:
            return True  # the click before it placed the point
        self._start_on(view)
        if self._far_enough(view, ijk):
            self._add(view, ijk)
        return True

    def press(self, view, ijk, modifiers) -> bool:
        self._start_on(view)
        if not self.points:
            self.points.append(np.asarray(ijk, float))
        self.live = np.asarray(ijk, float)
        return True

    def drag(self, view, ijk) -> None:
        if view is self.view and self.points:
            self.live = np.asarray(ijk, float)
            view.viewport().update()

    def release(self, view, ijk) -> None:
        if view is not self.view or not self.points:
            return
        if self._far_enough(view, ijk):
            self._add(view, ijk)
        else:
            self.live = None  # a drag back to where it began: go on point by point
            view.viewport().update()

    def hover(self, view, ijk) -> None:
        if view is self.view and self.points:
            self.live = None if ijk is None else np.asarray(ijk, float)
            view.viewport().update()

    def key(self, view, ev) -> bool:
        key = ev.key()
        if key == Qt.Key.Key_Escape:
            if not self.points:
                return False
            self.cancel()
            return True
        if key in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete):
            if self.points:
                self.points.pop()
                if not self.points:
                    self.cancel()
                view.viewport().update()
                return True
            removed = self.measurements.remove_last(view)
            if removed is not None:
                self.annotation.message.emit(f"removed {removed.kind} ({removed.text()})")
            return removed is not None
        return False

    def paint(self, view, painter: QPainter) -> None:
        if view is not self.view or not self.points or view.current_slice() != self.slice:
            return
        m = self.preview()
        if m is not None:
            draw_measurement(view, painter, m)
            return
        points = self.points + ([self.live] if self.live is not None else [])
        pts = [view.viewport_point(p) for p in points]  # not all points yet: dots and an arm

        def partial() -> None:
            for a, b in itertools.pairwise(pts):
                painter.drawLine(a, b)
            for c in pts[:len(self.points)]:
                painter.drawEllipse(c, 3, 3)

        _stroke(painter, COLOUR, partial)


class RulerTool(_MeasureTool):
    """A distance in millimetres: drag from end to end, or click both ends."""

    name = "ruler"
    title = "Ruler"
    kind = "ruler"


class AngleTool(_MeasureTool):
    """An angle in degrees: click an arm's end, the vertex, the other arm's end (or drag the first
    arm, then click)."""

    name = "angle"
    title = "Angle"
    kind = "angle"


class EllipseTool(_MeasureTool):
    """An elliptical ROI: drag its bounding box; area and the statistics of the pixels inside."""

    name = "ellipse"
    title = "Ellipse ROI"
    kind = "ellipse"


class RectangleTool(_MeasureTool):
    """A rectangular ROI: drag its corners; area and the statistics of the pixels inside."""

    name = "rectangle"
    title = "Rectangle ROI"
    kind = "rectangle"


def measurement_tools(annotation, measurements: Measurements) -> list[Tool]:
    """The measurement tools, sharing ``measurements``: ruler, angle, ellipse, rectangle."""
    return [cls(annotation, measurements) for cls in (RulerTool, AngleTool, EllipseTool, RectangleTool)]
