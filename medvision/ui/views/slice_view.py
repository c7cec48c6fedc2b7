"""A 2D slice view (pyqtgraph): one plane of the :class:`~medvision.ui.views.viewer.Viewer`'s volume.

Mouse: left click/drag moves the linked crosshair, right drag sets window (horizontal) and level
(vertical), middle drag pans, wheel scrolls slices, Ctrl+wheel zooms, double click maximises.
Keys: Up/Down and PageUp/PageDown scroll, Home/End jump, +/- zoom, R resets, C toggles the
crosshair. Painted over the image: orientation letters, slice number, window, scale bar.

With an annotation tool chosen, the left button is the tool's (Shift+left still moves the
crosshair). Tools: B paint, E erase, P polygon, T threshold, G grow, K islands, Escape navigate;
Shift+wheel or [ ] brush size; Ctrl+Z / Ctrl+Shift+Z undo and redo.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy

from ...core.windowing import WindowMapper
from ...io.derived import synthetic_label
from ...io.dicom.scaling import scaling_label
from .slice_mouse import SliceViewBox
from .slice_paint import PLANE_COLOURS, paint_annotations

__all__ = ["SliceView", "NEXT_SLICE"]

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

#: in each plane's view: the plane drawn as the vertical and as the horizontal crosshair line
_CROSS = {"axial": ("sagittal", "coronal"), "coronal": ("sagittal", "axial"), "sagittal": ("coronal", "axial")}


#: the display-index direction of the "next" slice per view (display indices grow towards left,
#: posterior and superior; the next slice is superior, anterior, right, as in 3D Slicer)
NEXT_SLICE = {"axial": 1, "coronal": -1, "sagittal": -1}


class SliceView(pg.GraphicsView):
    """One plane (``"axial"``, ``"coronal"`` or ``"sagittal"``) of a Viewer."""

    double_clicked = Signal(str)
    hovered = Signal(object)  # display index (np.ndarray of floats) under the mouse, or None
    painted = Signal()

    def __init__(self, viewer, plane: str, parent=None) -> None:
        super().__init__(parent, background="k")
        self.viewer = viewer
        self.plane = plane
        self.mapper = WindowMapper()
        self.show_crosshair = True
        self.show_annotations = True
        self._annotation_key: tuple | None = None
        self._annotation_image: QImage | None = None
        self.last_paint = 0.0
        self._wheel_rest = 0
        self._shown_slice: int | None = None
        #: the annotation tool taking left-button events, wheel with modifiers and keys (or None)
        self.tool = None
        self.mouse_scene_pos: QPointF | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)

        self.vb = SliceViewBox(self)
        self.setCentralItem(self.vb)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.overlays: list[pg.ImageItem] = []
        vertical, horizontal = _CROSS[plane]
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(PLANE_COLOURS[vertical], width=1))
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(PLANE_COLOURS[horizontal], width=1))
        for line in (self.vline, self.hline):
            line.setZValue(20)
            self.vb.addItem(line, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

        viewer.volume_changed.connect(self._on_volume_changed)
        viewer.cursor_changed.connect(self._on_cursor_changed)
        viewer.window_changed.connect(self.refresh_image)
        viewer.display_changed.connect(self._on_display_changed)
        viewer.data_updated.connect(self.refresh_image)
        viewer.layers_updated.connect(self._on_layers_updated)
        self._on_volume_changed()

    # ---- rendering ------------------------------------------------------------------------
    def _on_volume_changed(self) -> None:
        grid = self.viewer.grid
        self._shown_slice = None
        self._annotation_key = None
        for item in self.overlays:
            self.vb.removeItem(item)
        self.overlays = []
        if grid is None:
            self.image.clear()
            self.vline.hide()
            self.hline.hide()
            self.viewport().update()
            return
        self.refresh_image()
        if not self.viewer.kept_grid:
            self.reset_view()

    def _on_display_changed(self) -> None:
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.viewer.interpolate)
        self.refresh_image()

    def _on_cursor_changed(self, old) -> None:
        grid = self.viewer.grid
        if grid is None:
            return
        if self.viewer.cursor[grid.slice_axis(self.plane)] != self._shown_slice:
            self.refresh_image()
        else:
            self.place_crosshair()

    def image_rect(self) -> QRectF:
        grid = self.viewer.grid
        rows, cols = grid.image_shape(self.plane)
        rh, cw = grid.pixel_size(self.plane)
        return QRectF(0, 0, cols * cw, rows * rh)

    def refresh_image(self) -> None:
        """Re-render this view's slice (image and overlays) and crosshair."""
        viewer, grid = self.viewer, self.viewer.grid
        if grid is None:
            return
        index = int(viewer.cursor[grid.slice_axis(self.plane)])
        data = viewer.frame_array()
        grey = self.mapper.map(grid.image(self.plane, index, data), viewer.window, viewer.invert)
        rect = self.image_rect()
        self.image.setImage(grey, autoLevels=False, levels=(0, 255))
        self.image.setRect(rect)
        self._refresh_overlays(index, rect)
        self._shown_slice = index
        self.place_crosshair()
        # the painted annotations (slice number, window) change too: the whole view repaints, in
        # the same pass as the changed items (a separate viewport update would paint twice)
        self.scene().update()

    def _on_layers_updated(self, box) -> None:
        grid = self.viewer.grid
        if grid is None or self._shown_slice is None:
            return
        if box is not None:
            axis = self.viewer.array_axis(self.plane)
            k = int(self.viewer.array_index(self.viewer.cursor)[axis])
            if not box[axis].start <= k < box[axis].stop:
                return  # the change is on other slices
        self._refresh_overlays(self._shown_slice, self.image_rect())
        self.scene().update()

    def _refresh_overlays(self, index: int, rect: QRectF) -> None:
        layers = [la for la in self.viewer.layers if la.visible]
        while len(self.overlays) < len(layers):
            item = pg.ImageItem(axisOrder="row-major")
            item.setZValue(10)
            self.vb.addItem(item)
            self.overlays.append(item)
        for item, layer in zip(self.overlays, layers, strict=False):
            if layer.image_fn is not None:
                labels = np.ascontiguousarray(layer.image_fn(self.plane, index))
            else:
                labels = np.ascontiguousarray(self.viewer.grid.image(self.plane, index, layer.array))
            if layer.outline:
                labels = _outline(labels)
            item.setImage(labels, lut=layer.lut, levels=(0, len(layer.lut) - 1), autoLevels=False)
            item.setRect(rect)
            item.setOpacity(layer.opacity)
            item.show()
        for item in self.overlays[len(layers):]:
            item.hide()

    def place_crosshair(self) -> None:
        """Move the crosshair lines to the viewer's cursor."""
        grid = self.viewer.grid
        point = grid.to_screen(self.plane, self.viewer.cursor)
        rh, cw = grid.pixel_size(self.plane)
        self.vline.setPos((point.col + 0.5) * cw)
        self.hline.setPos((point.row + 0.5) * rh)
        self.vline.setVisible(self.show_crosshair)
        self.hline.setVisible(self.show_crosshair)

    def reset_view(self) -> None:
        """Fit the whole slice in the view."""
        if self.viewer.grid is not None:
            self.vb.setRange(rect=self.image_rect(), padding=0.02)
            self.viewport().update()

    def zoom(self, factor: float) -> None:
        self.vb.scaleBy((1 / factor, 1 / factor))
        self.viewport().update()

    # ---- mouse ----------------------------------------------------------------------------
    def screen_index(self, pos: QPointF):
        """The display index (x, y, z; floats) at ``pos`` in the view box's coordinates (mm of the plane's
        image), on the current slice."""
        grid = self.viewer.grid
        rh, cw = grid.pixel_size(self.plane)
        row, col = pos.y() / rh - 0.5, pos.x() / cw - 0.5
        slice_index = self.viewer.cursor[grid.slice_axis(self.plane)]
        return grid.from_screen(self.plane, slice_index, row, col)

    def set_cursor_at(self, pos: QPointF) -> None:
        """Move the linked crosshair to ``pos`` in the view box's coordinates."""
        if self.viewer.grid is not None:
            self.viewer.set_cursor(self.screen_index(pos))

    def index_at(self, scene_pos) -> np.ndarray:
        """The display index (x, y, z; floats, pixel centres whole) under a scene position."""
        return self.screen_index(self.vb.mapSceneToView(scene_pos))

    def viewport_point(self, ijk) -> QPointF:
        """Where the display index ``ijk`` (its in-plane position) lies in viewport pixels."""
        grid = self.viewer.grid
        point = grid.to_screen(self.plane, ijk)
        rh, cw = grid.pixel_size(self.plane)
        scene = self.vb.mapViewToScene(QPointF((point.col + 0.5) * cw, (point.row + 0.5) * rh))
        return self.viewportTransform().map(scene)  # exact (mapFromScene rounds to whole pixels)

    def pixels_per_mm(self) -> float:
        size = self.vb.viewPixelSize()[0]
        return 1.0 / size if size and math.isfinite(size) else 1.0

    def current_slice(self) -> int:
        return int(self.viewer.cursor[self.viewer.grid.slice_axis(self.plane)])

    def _on_mouse_moved(self, scene_pos) -> None:
        if self.viewer.grid is None:
            return
        self.mouse_scene_pos = QPointF(scene_pos)
        ijk = self.screen_index(self.vb.mapSceneToView(scene_pos))
        if self.tool is not None:
            self.tool.hover(self, ijk)
        inside = np.all(ijk > -0.5) and np.all(ijk < np.asarray(self.viewer.grid.shape_xyz) - 0.5)
        self.hovered.emit(np.rint(ijk).astype(int) if inside else None)

    def drag_window(self, origin, dx: float, dy: float) -> None:
        """Set the window for a right drag of (dx, dy) pixels that started at window ``origin``."""
        # horizontal: width; vertical: level (drag up = brighter image = lower level)
        scale = max(origin.width, 1.0) / 300.0
        self.viewer.set_window(origin.dragged(d_center=dy * scale, d_width=dx * scale * 2), "custom")

    def next_slice(self, steps: int = 1) -> None:
        """Move ``steps`` slices on (negative: back), as 3D Slicer does: towards superior in axial,
        anterior in coronal, right in sagittal (wheel forward, Up, Right, Page Up)."""
        self.viewer.move_slice(self.plane, steps * NEXT_SLICE[self.plane])

    def leaveEvent(self, ev) -> None:
        super().leaveEvent(ev)
        self.mouse_scene_pos = None
        if self.tool is not None:
            self.tool.hover(self, None)
        self.hovered.emit(None)  # the status bar goes back to the cursor's position and value

    def wheel_steps(self, delta: int) -> int:
        """Whole slice steps for a wheel turn of ``delta`` (1/8 degrees); the rest is kept for the next."""
        self._wheel_rest += delta
        steps = int(self._wheel_rest / 120)
        self._wheel_rest -= steps * 120
        return steps

    def keyPressEvent(self, ev) -> None:
        grid = self.viewer.grid
        key = ev.key()
        if grid is None:
            return super().keyPressEvent(ev)
        if self.tool is not None and self.tool.key(self, ev):
            return None
        page = max(1, grid.n_slices(self.plane) // 10)
        moves = {Qt.Key.Key_Up: 1, Qt.Key.Key_Right: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_Left: -1,
                 Qt.Key.Key_PageUp: page, Qt.Key.Key_PageDown: -page}
        last = grid.n_slices(self.plane) - 1
        if key in moves:
            self.next_slice(moves[key])
        elif key == Qt.Key.Key_Home:  # the last slice in the "next" direction (superior, anterior, right)
            self.viewer.set_slice(self.plane, last if NEXT_SLICE[self.plane] > 0 else 0)
        elif key == Qt.Key.Key_End:
            self.viewer.set_slice(self.plane, 0 if NEXT_SLICE[self.plane] > 0 else last)
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom(0.8)
        elif key == Qt.Key.Key_R:
            self.reset_view()
        elif key == Qt.Key.Key_C:
            self.show_crosshair = not self.show_crosshair
            self.place_crosshair()
        else:
            super().keyPressEvent(ev)

    # ---- painting -------------------------------------------------------------------------
    def paintEvent(self, ev) -> None:
        super().paintEvent(ev)
        self.last_paint = time.perf_counter()
        self.painted.emit()

    def drawForeground(self, painter: QPainter, rect) -> None:
        grid = self.viewer.grid
        if grid is None:
            if self.plane == "axial":  # an empty window says how to fill it
                painter.save()
                painter.resetTransform()
                painter.setPen(QColor(150, 150, 150))
                painter.drawText(QRectF(0, 0, self.viewport().width(), self.viewport().height()),
                                 Qt.AlignmentFlag.AlignCenter,
                                 "Open a study: File \N{RIGHTWARDS ARROW} Open, or drop a folder or file here")
                painter.restore()
            return
        if self.viewer.decorations or self.tool is not None:
            painter.save()
            painter.resetTransform()
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            for item in self.viewer.decorations:
                item.paint(self, painter)
            if self.tool is not None:
                self.tool.paint(self, painter)
            painter.restore()
        if not self.show_annotations:
            return
        # The annotations are painted once into an image and reused while they do not change: a
        # crosshair moved from another view repaints this one, and its text is the same
        viewer = self.viewer
        w, h = self.viewport().width(), self.viewport().height()
        dpr = self.viewport().devicePixelRatioF()
        key = (w, h, dpr, id(viewer.volume), id(grid), int(viewer.cursor[grid.slice_axis(self.plane)]),
               viewer.frame, viewer.window, viewer.window_name, viewer.invert,
               round(float(self.vb.viewPixelSize()[0]), 9), self.font().key())
        if key != self._annotation_key or self._annotation_image is None:
            image = QImage(max(1, round(w * dpr)), max(1, round(h * dpr)), QImage.Format.Format_ARGB32_Premultiplied)
            image.setDevicePixelRatio(dpr)
            image.fill(Qt.GlobalColor.transparent)
            target = QPainter(image)
            target.setRenderHint(QPainter.RenderHint.TextAntialiasing)
            paint_annotations(self, target, grid, w, h)
            target.end()
            self._annotation_image, self._annotation_key = image, key
        painter.save()
        painter.resetTransform()
        painter.drawImage(0, 0, self._annotation_image)
        painter.restore()

    def info_lines(self) -> list[str]:
        """The overlay's top-left lines: plane, slice (and image number), frame, value scale, obliquity."""
        viewer, grid = self.viewer, self.viewer.grid
        meta = viewer.volume.metadata
        index = int(viewer.cursor[grid.slice_axis(self.plane)])
        position = f"{index + 1}/{grid.n_slices(self.plane)}"
        source = viewer.slice_source() if self.plane == grid.acquisition_plane else None
        if source is not None and source[2] is not None:
            position = f"Im {source[2]}  ({position})"  # the image's InstanceNumber, as PACS shows it
        lines = [self.plane.capitalize(), position]
        if viewer.volume.is_4d:
            frame = f"Frame {viewer.frame + 1}/{viewer.volume.n_frames}"
            diffusion = meta.get("diffusion")
            if diffusion and viewer.frame < len(diffusion):
                frame += f"  b={diffusion[viewer.frame]['b']:g}"
            lines.append(frame)
        if meta.get("philips_scaling"):  # which of Philips' two value scales the pixels are in
            lines.append(scaling_label(meta["philips_scaling"]))
        if grid.obliquity_deg > 1.0 and meta.get("orientation_known", True):
            lines.append(f"oblique {grid.obliquity_deg:.0f}\N{DEGREE SIGN}")
        synthetic = synthetic_label(meta)
        if synthetic:  # an image a model made is never taken for an acquired one
            lines.insert(1, synthetic)
        return lines


def _outline(labels: np.ndarray) -> np.ndarray:
    """Only the border pixels of each value's regions (a pixel whose 4-neighbour differs)."""
    edge = np.zeros(labels.shape, bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return np.where(edge, labels, 0)

