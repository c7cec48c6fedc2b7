"""Measurements in the slice views: ruler (mm), angle (degrees), ellipse and rectangle ROIs with the
statistics of the image inside (area mm², mean ± std, min..max; HU for CT), as in OHIF and Slicer.

A measurement belongs to the plane and slice it was drawn on and is painted only there. Its points
are display indices (x, y, z; floats); lengths and angles are taken in patient millimetres
(:meth:`~medvision.core.display.DisplayGrid.world`), so anisotropic pixels and coronal or sagittal
views across thick slices measure true. An ROI's pixels are those whose centres lie inside its
shape; its area is the shape's own (pi a b for an ellipse). All measurements of a viewer live in
one :class:`Measurements`, a decoration of the viewer that every slice view paints: they stay when
the tool changes and go when another volume opens.

Tools: click the points one by one, or drag (a ruler from end to end, the first arm of an angle,
an ROI's bounding box). Escape cancels a measurement in progress, Backspace/Delete takes back its
last point, or, with none in progress, removes the last measurement shown in the view.
"""

from __future__ import annotations

import itertools
import logging
import math
import weakref
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen

from ..annotate.statistics import region_statistics
from .tools import Tool

log = logging.getLogger(__name__)

__all__ = ["KINDS", "AngleTool", "EllipseTool", "Measurement", "Measurements", "RectangleTool", "RulerTool",
           "angle_degrees", "measurement_tools", "roi_pixels", "ruler_length"]

KINDS = ("ruler", "angle", "ellipse", "rectangle")
ROI_KINDS = ("ellipse", "rectangle")
#: points a measurement of each kind needs
N_POINTS = {"ruler": 2, "angle": 3, "ellipse": 2, "rectangle": 2}
#: header of :meth:`Measurements.as_rows`
ROW_HEADER = ("kind", "plane", "slice", "value")

COLOUR = QColor(90, 225, 255)  # apart from the crosshair colours (red, green, yellow) and labels
_SHADOW = QColor(0, 0, 0, 200)
_MIN_DRAG_PX = 3  # a release closer than this to the last point is no point of its own


# ---- geometry (no Qt) -----------------------------------------------------------------------
def ruler_length(grid, a, b) -> float:
    """Distance in millimetres between display indices ``a`` and ``b``."""
    return float(np.linalg.norm(grid.world(b) - grid.world(a)))


def angle_degrees(grid, a, vertex, b) -> float | None:
    """The angle at ``vertex`` between the arms to ``a`` and ``b``, in patient space (None when an
    arm has no length)."""
    u, v = grid.world(a) - grid.world(vertex), grid.world(b) - grid.world(vertex)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < 1e-9 or nv < 1e-9:
        return None
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def _screen_box(grid, plane: str, a, b) -> tuple[float, float, float, float]:
    pa, pb = grid.to_screen(plane, a), grid.to_screen(plane, b)
    return min(pa.row, pb.row), max(pa.row, pb.row), min(pa.col, pb.col), max(pa.col, pb.col)


def roi_area(grid, plane: str, kind: str, a, b) -> float:
    """The area in mm² of the ellipse or rectangle whose bounding box has corners ``a`` and ``b``."""
    r0, r1, c0, c1 = _screen_box(grid, plane, a, b)
    rh, cw = grid.pixel_size(plane)
    area = (r1 - r0) * rh * (c1 - c0) * cw
    return float(area * math.pi / 4 if kind == "ellipse" else area)


def roi_pixels(grid, plane: str, kind: str, a, b) -> tuple[slice, slice, np.ndarray] | None:
    """The pixels of the plane's screen image whose centres lie inside the ellipse or rectangle with
    bounding-box corners ``a`` and ``b``: ``(rows, cols, mask)``, the mask over
    ``image[rows, cols]``; None when none does."""
    r0, r1, c0, c1 = _screen_box(grid, plane, a, b)
    n_rows, n_cols = grid.image_shape(plane)
    eps = 1e-6
    lo_r, hi_r = max(math.ceil(r0 - eps), 0), min(math.floor(r1 + eps), n_rows - 1)
    lo_c, hi_c = max(math.ceil(c0 - eps), 0), min(math.floor(c1 + eps), n_cols - 1)
    if lo_r > hi_r or lo_c > hi_c:
        return None
    rr = np.arange(lo_r, hi_r + 1, dtype=float)[:, None]
    cc = np.arange(lo_c, hi_c + 1, dtype=float)[None, :]
    if kind == "ellipse":
        ra, ca = (r1 - r0) / 2, (c1 - c0) / 2
        if ra < eps or ca < eps:
            return None
        mask = ((rr - (r0 + r1) / 2) / ra) ** 2 + ((cc - (c0 + c1) / 2) / ca) ** 2 <= 1 + eps
    else:
        mask = np.ones((rr.size, cc.size), bool)
    if not mask.any():
        return None
    return slice(lo_r, hi_r + 1), slice(lo_c, hi_c + 1), mask


def _num(v: float) -> str:
    if v == 0 or 0.1 <= abs(v) < 1e5:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _whole(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else _num(v)


# ---- the measurements of a viewer ---------------------------------------------------------------
@dataclass(eq=False)
class Measurement:
    """One measurement: its ``kind`` (see :data:`KINDS`), where it was drawn (``plane`` and
    ``slice`` index, 0-based), its ``points`` (display indices) and computed ``values``:
    ``length_mm`` (ruler), ``angle_deg`` (angle), or ``area_mm2``, ``pixels``, ``mean``, ``std``
    (sample), ``min``, ``max`` (ROIs; the statistics None when no pixel centre lies inside).
    ``unit`` is the intensity unit ("HU" for CT with the rescale applied, else ""); ``length_unit``
    is "mm", or "px" when the file gives no pixel size."""

    kind: str
    plane: str
    slice: int
    points: list[np.ndarray]
    values: dict = field(default_factory=dict)
    unit: str = ""
    length_unit: str = "mm"

    @property
    def value(self) -> float | None:
        """The main value: length (mm), angle (degrees) or area (mm²)."""
        key = {"ruler": "length_mm", "angle": "angle_deg"}.get(self.kind, "area_mm2")
        return self.values.get(key)

    def visible_in(self, view) -> bool:
        """Whether ``view`` shows this measurement's plane and slice."""
        grid = view.viewer.grid
        return grid is not None and view.plane == self.plane and view.current_slice() == self.slice

    def lines(self) -> list[str]:
        """The label's lines, e.g. ``["12.3 mm"]`` or ``["area 85.1 mm²", "45.2 ± 12.1 (-3..80) HU"]``."""
        v = self.values
        if self.kind == "ruler":
            return [f"{v['length_mm']:.1f} {self.length_unit}"]
        if self.kind == "angle":
            return [f"{v['angle_deg']:.1f}\N{DEGREE SIGN}" if v.get("angle_deg") is not None else "-"]
        lines = [f"area {v['area_mm2']:.1f} {self.length_unit}\N{SUPERSCRIPT TWO}"]
        if v.get("mean") is None:
            lines.append("no pixel inside")
        else:
            unit = f" {self.unit}" if self.unit else ""
            lines.append(f"{_num(v['mean'])} \N{PLUS-MINUS SIGN} {_num(v['std'])} "
                         f"({_whole(v['min'])}..{_whole(v['max'])}){unit}")
        return lines

    def text(self) -> str:
        return ", ".join(self.lines())


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
        viewer, grid = self.viewer, self.viewer.grid
        if kind not in KINDS:
            raise ValueError(f"unknown measurement kind {kind!r}")
        points = [np.asarray(p, float) for p in points]
        if grid is None or len(points) != N_POINTS[kind]:
            return None
        meta = viewer.volume.metadata
        m = Measurement(kind, plane, int(slice_index), points,
                        unit="HU" if meta.get("modality") == "CT" and meta.get("rescale_applied") else "",
                        length_unit="mm" if meta.get("spacing_known", True) else "px")
        if kind == "ruler":
            m.values = {"length_mm": ruler_length(grid, *points)}
        elif kind == "angle":
            m.values = {"angle_deg": angle_degrees(grid, *points)}
        else:
            m.values = {"area_mm2": roi_area(grid, plane, kind, *points), **self._statistics(m)}
        return m

    def _statistics(self, m: Measurement) -> dict:
        grid = self.viewer.grid
        found = roi_pixels(grid, m.plane, m.kind, *m.points)
        if found is None:
            return {"pixels": 0, "mean": None, "std": None, "min": None, "max": None}
        rows, cols, mask = found
        image = grid.image(m.plane, m.slice, self.viewer.frame_array())[rows, cols]
        rh, cw = grid.pixel_size(m.plane)
        stats = region_statistics(image, mask, rh * cw)
        return {"pixels": stats["voxels"], "mean": stats["mean"], "std": stats["std"], "min": stats["min"],
                "max": stats["max"]}

    def recompute(self) -> None:
        """Statistics again from the image (another frame shown, or voxels changed)."""
        if self.viewer.grid is None:
            return
        for m in self.items:
            if m.kind in ROI_KINDS:
                m.values.update(self._statistics(m))
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
        return [(m.kind, m.plane, m.slice + 1, m.text()) for m in self.items]

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
