"""Annotation tools in the slice views: brush, polygon/lasso, threshold, region growing, islands.

A tool receives the left-button events of every slice view (Shift+left still moves the
crosshair), the wheel with Shift (brush size) and keys, and paints its own cursor or outline over
the views. Positions arrive as display indices (x, y, z; floats) and go to the label arrays as
``(z, y, x)`` indices through the viewer. Every edit goes through
:mod:`medvision.annotate` and the :class:`~medvision.ui.annotating.annotation.Annotation`'s history: one
mouse drag or one click is one undo step.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF

from ...annotate import contours, regions
from ...annotate.brush import BrushShape, Stroke
from ..views.viewer import Layer

log = logging.getLogger(__name__)

PREVIEW_LAYER = "threshold preview"


class Tool(QObject):
    """Base: does nothing (the navigation bindings stay)."""

    name = "navigate"
    title = "Navigate"
    changed = Signal()  # options changed (the panel refreshes)

    def __init__(self, annotation) -> None:
        super().__init__(annotation)
        self.annotation = annotation
        self.viewer = annotation.viewer

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def press(self, view, ijk, modifiers) -> bool:
        return False

    def drag(self, view, ijk) -> None:
        pass

    def release(self, view, ijk) -> None:
        pass

    def click(self, view, ijk, modifiers, double: bool) -> bool:
        return False

    def hover(self, view, ijk) -> None:
        pass

    def wheel(self, view, delta: int, modifiers) -> bool:
        return False

    def key(self, view, ev) -> bool:
        return False

    def paint(self, view, painter: QPainter) -> None:
        pass

    # helpers
    def _inside(self, ijk) -> bool:
        grid = self.viewer.grid
        return grid is not None and bool(np.all(ijk > -0.5) and np.all(ijk < np.asarray(grid.shape_xyz) - 0.5))

    def _colour(self) -> QColor:
        labels = self.annotation.labels
        if labels is not None and self.annotation.active in labels.table:
            r, g, b, _ = labels.table[self.annotation.active].color
            return QColor(r, g, b)
        return QColor(255, 255, 0)


class BrushTool(Tool):
    """Paint (or erase) a disk in the view's slice, or a ball in 3D; radius in millimetres.
    Shift+wheel or [ and ] change the size."""

    name = "paint"
    title = "Paint"

    def __init__(self, annotation, erase: bool = False) -> None:
        super().__init__(annotation)
        self.erase = erase
        if erase:
            self.name, self.title = "erase", "Erase"
        self.radius_mm = 5.0
        self.sphere = False
        self.erase_active_only = False
        self._stroke: Stroke | None = None
        self._hover_view = None

    def set_radius(self, mm: float) -> None:
        self.radius_mm = float(min(max(mm, 0.1), 200.0))
        self.changed.emit()
        if self._hover_view is not None:
            self._hover_view.viewport().update()

    def shape(self, view) -> BrushShape:
        return BrushShape(self.radius_mm, None if self.sphere else self.viewer.array_axis(view.plane))

    def _begin(self, view) -> bool:
        ann = self.annotation
        if not ann.can_edit():
            return False
        if self.erase:
            labels = ann.ensure_labels()
            value, erase_only = 0, (ann.active if self.erase_active_only else None)
        else:
            value = ann.paint_value()
            labels, erase_only = ann.labels, None
        if labels is None or value is None:
            return False
        self._stroke = Stroke(ann.history, labels, self.shape(view), value, ann.rules, ann.image, erase_only=erase_only)
        return True

    def _dab(self, ijk) -> None:
        if self._stroke is None:
            return
        self._stroke.dab(self.viewer.array_index(ijk))

    def _finish(self) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke is not None:
            stroke.finish()  # one undo step; the history tells the annotation (and so the window)

    def press(self, view, ijk, modifiers) -> bool:
        if not self._begin(view):
            return True  # the drag is still the tool's: it must not move the crosshair instead
        self._dab(ijk)
        return True

    def drag(self, view, ijk) -> None:
        self._hover_view = view
        self._dab(ijk)

    def release(self, view, ijk) -> None:
        self._finish()

    def click(self, view, ijk, modifiers, double: bool) -> bool:
        if double:
            return True
        if self._begin(view):
            self._dab(ijk)
            self._finish()
        return True

    def hover(self, view, ijk) -> None:
        self._hover_view = view if ijk is not None else None
        view.viewport().update()

    def wheel(self, view, delta: int, modifiers) -> bool:
        if not modifiers & Qt.KeyboardModifier.ShiftModifier:
            return False
        self.set_radius(self.radius_mm * (1.15 if delta > 0 else 1 / 1.15))
        return True

    def key(self, view, ev) -> bool:
        if ev.key() == Qt.Key.Key_BracketRight:
            self.set_radius(self.radius_mm * 1.2)
            return True
        if ev.key() == Qt.Key.Key_BracketLeft:
            self.set_radius(self.radius_mm / 1.2)
            return True
        return False

    def paint(self, view, painter: QPainter) -> None:
        if view is not self._hover_view or view.mouse_scene_pos is None:
            return
        centre = QPointF(view.mapFromScene(view.mouse_scene_pos))
        r = self.radius_mm * view.pixels_per_mm()
        colour = QColor(255, 255, 255) if self.erase else self._colour()
        painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(centre, r, r)
        pen = QPen(colour, 1.5)
        if self.erase:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawEllipse(centre, r, r)


class PolygonTool(Tool):
    """Click points and double-click (or Enter, or click the first point) to fill the polygon;
    or drag a freehand lasso. Ctrl while closing erases instead. Escape or Backspace edit."""

    name = "polygon"
    title = "Polygon"

    def __init__(self, annotation) -> None:
        super().__init__(annotation)
        self.points: list[np.ndarray] = []
        self.view = None
        self.erase = False
        self._mouse = None

    def _reset(self) -> None:
        view, self.view, self.points = self.view, None, []
        if view is not None:
            view.viewport().update()

    def deactivate(self) -> None:
        self._reset()

    def _start_on(self, view) -> None:
        if self.view is not view or (self.points and view.current_slice() != self._slice):
            self._reset()
            self.view = view
            self._slice = view.current_slice()

    def click(self, view, ijk, modifiers, double: bool) -> bool:
        self._start_on(view)
        if double:
            self.close(erase=bool(modifiers & Qt.KeyboardModifier.ControlModifier))
            return True
        if len(self.points) >= 3:
            first = view.viewport_point(self.points[0])
            here = view.viewport_point(ijk)
            if (first - here).manhattanLength() < 8:
                self.close(erase=bool(modifiers & Qt.KeyboardModifier.ControlModifier))
                return True
        self.points.append(np.asarray(ijk, float))
        view.viewport().update()
        return True

    def press(self, view, ijk, modifiers) -> bool:
        self._reset()
        self._start_on(view)
        self.erase = bool(modifiers & Qt.KeyboardModifier.ControlModifier)
        self.points = [np.asarray(ijk, float)]
        return True

    def drag(self, view, ijk) -> None:
        if self.view is view:
            last = view.viewport_point(self.points[-1])
            if (view.viewport_point(ijk) - last).manhattanLength() >= 2:
                self.points.append(np.asarray(ijk, float))
                view.viewport().update()

    def release(self, view, ijk) -> None:
        self.close(erase=self.erase)

    def hover(self, view, ijk) -> None:
        self._mouse = (view, ijk)
        if self.view is view and self.points:
            view.viewport().update()

    def key(self, view, ev) -> bool:
        if not self.points:
            return False
        if ev.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.close(erase=bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier))
            return True
        if ev.key() == Qt.Key.Key_Escape:
            self._reset()
            return True
        if ev.key() == Qt.Key.Key_Backspace:
            self.points.pop()
            view.viewport().update()
            return True
        return False

    def close(self, erase: bool = False) -> bool:
        """Fill (or erase) the polygon drawn so far; returns whether labels changed."""
        view, points = self.view, self.points
        self._reset()
        if view is None or len(points) < 3:
            return False
        ann = self.annotation
        if not ann.can_edit():
            return False
        value = 0 if erase else ann.paint_value()
        labels = ann.ensure_labels()
        if value is None or labels is None:
            return False
        axis = self.viewer.array_axis(view.plane)
        zyx = np.array([self.viewer.array_index(p) for p in points])
        index = int(round(zyx[0, axis]))
        rc = np.delete(zyx, axis, axis=1)
        return contours.fill_polygon(ann.history, labels, axis, index, rc, value, ann.rules, ann.image)

    def paint(self, view, painter: QPainter) -> None:
        if view is not self.view or not self.points:
            return
        pts = [view.viewport_point(p) for p in self.points]
        if self._mouse is not None and self._mouse[0] is view and self._mouse[1] is not None:
            pts.append(view.viewport_point(self._mouse[1]))
        poly = QPolygonF(pts)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
        painter.drawPolyline(poly)
        painter.setPen(QPen(self._colour(), 1.5))
        painter.drawPolyline(poly)
        for p in pts[:1]:
            painter.drawEllipse(p, 4, 4)


class ThresholdTool(Tool):
    """Shows the voxels inside an intensity range live in every view; Apply sets the active label
    there (within the masking rules), for the whole volume."""

    name = "threshold"
    title = "Threshold"

    def __init__(self, annotation) -> None:
        super().__init__(annotation)
        self.low, self.high = 0.0, 1.0
        self._for_volume = None

    def suggest_range(self) -> None:
        """A first range for a new image: from the window on screen (what the user looks at)."""
        volume = self.viewer.volume
        if volume is None or self._for_volume is volume:
            return
        self._for_volume = volume
        w = self.viewer.window
        self.low, self.high = float(w.center), float(w.center + w.width / 2)
        self.changed.emit()

    def set_range(self, low: float, high: float) -> None:
        self.low, self.high = float(min(low, high)), float(max(low, high))
        self.changed.emit()
        self.viewer.notify_layers(None)

    def activate(self) -> None:
        if self.viewer.volume is None:
            return
        self.suggest_range()
        layer = Layer(PREVIEW_LAYER, self.viewer.frame_array(), self._lut(), 0.45, image_fn=self._preview)
        self.viewer.add_layer(layer)

    def deactivate(self) -> None:
        if self.viewer.layer(PREVIEW_LAYER) is not None:
            self.viewer.remove_layer(PREVIEW_LAYER)

    def _lut(self) -> np.ndarray:
        lut = np.zeros((2, 4), np.uint8)
        c = self._colour()
        lut[1] = (c.red(), c.green(), c.blue(), 255)
        return lut

    def _preview(self, plane: str, index: int) -> np.ndarray:
        image = self.viewer.grid.image(plane, index, self.viewer.frame_array())
        return ((image >= self.low) & (image <= self.high)).astype(np.uint8)

    def apply(self) -> bool:
        ann = self.annotation
        value = ann.paint_value()
        if value is None:
            return False
        labels, image, rules, low, high = ann.labels, ann.image, ann.rules, self.low, self.high

        def work():
            mask = regions.threshold_mask(image, low, high)
            return regions.apply_mask(ann.history, labels, mask, value, rules, image,
                                      description=f"threshold {low:g}..{high:g}")

        return ann.run("threshold", work, lambda ok: ok is False and ann.message.emit("threshold: nothing to change"))


class GrowTool(Tool):
    """Click a seed: the connected region around it joins the active label (one undo step).
    Connected threshold grows within the range; confidence connected learns the range from the
    seed's neighbourhood (mean +- multiplier x standard deviation, refined a few times)."""

    name = "grow"
    title = "Grow"

    def __init__(self, annotation, threshold: ThresholdTool) -> None:
        super().__init__(annotation)
        self.threshold = threshold
        self.method = "confidence"
        self.multiplier = 2.5
        self.iterations = 3
        self.seeds: list[tuple[np.ndarray, int]] = []

    def click(self, view, ijk, modifiers, double: bool) -> bool:
        if double or not self._inside(ijk):
            return True
        self.grow_from(self.viewer.array_index(np.rint(ijk)))
        return True

    def grow_from(self, seed_zyx) -> bool:
        ann = self.annotation
        value = ann.paint_value()
        if value is None or not ann.can_edit():
            return False
        seed = [int(round(v)) for v in seed_zyx]
        image, labels, rules = ann.image, ann.labels, ann.rules
        method, low, high = self.method, self.threshold.low, self.threshold.high
        multiplier, iterations = self.multiplier, self.iterations
        self.seeds.append((np.asarray(seed), value))

        def work():
            if method == "connected":
                mask = regions.grow_connected(image, [seed], low, high)
            else:
                mask = regions.grow_confidence(image, [seed], multiplier, iterations)
            return regions.apply_mask(ann.history, labels, mask, value, rules, image,
                                      description=f"grow ({method})")

        def done(ok) -> None:
            if ok is False:
                ann.message.emit("grow: nothing to add (the seed's region is empty, locked or masked)")

        return ann.run("region growing", work, done)


class IslandsTool(Tool):
    """Click a region: only that connected island of its label is kept."""

    name = "islands"
    title = "Islands"

    def click(self, view, ijk, modifiers, double: bool) -> bool:
        ann = self.annotation
        if double or not self._inside(ijk) or ann.labels is None or not ann.can_edit():
            return True
        point = [int(v) for v in self.viewer.array_index(np.rint(ijk))]
        if not ann.labels.array[tuple(point)]:
            ann.message.emit("islands: click inside a labelled region to keep it")
            return True
        labels, rules = ann.labels, ann.rules
        ann.run("keep island", lambda: regions.keep_island_at(ann.history, labels, point, rules))
        return True
