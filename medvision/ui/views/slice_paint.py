"""What a slice view (:class:`~medvision.ui.views.slice_view.SliceView`) paints over its image, in
viewport pixels: the orientation letters at the edges, the plane, slice and frame lines, the window,
and a scale bar, each with a dark shadow so it reads on bright anatomy as on air.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen

__all__ = ["PLANE_COLOURS", "SYNTHETIC_COLOUR", "paint_annotations", "draw_scale_bar", "shadowed_text"]

#: plane colours as in 3D Slicer (axial red, coronal green, sagittal yellow)
PLANE_COLOURS = {"axial": QColor(230, 80, 80), "coronal": QColor(100, 200, 100), "sagittal": QColor(230, 210, 80)}
#: the line that says an image was made by a model
SYNTHETIC_COLOUR = QColor(255, 120, 255)


def paint_annotations(view, painter: QPainter, grid, w: int, h: int) -> None:
    """Orientation labels, slice number, frame, window and scale bar of the slice view ``view`` (showing
    ``grid``), in viewport pixels (``w`` x ``h``)."""
    painter.save()
    font = QFont(view.font())
    font.setPointSizeF(max(8.0, font.pointSizeF()))
    painter.setFont(font)
    fm = painter.fontMetrics()
    meta = view.viewer.volume.metadata
    compact = w < 260 or h < 200  # a small pane: the essentials only, nothing overlapping
    if meta.get("orientation_known", True):  # files without an orientation get no invented labels
        labels = grid.edge_labels(view.plane)
        colour = QColor(255, 220, 120)
        left = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
        right = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight
        top = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
        bottom = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom
        shadowed_text(painter, QRectF(4, 0, w - 8, h), left, labels["left"], colour)
        shadowed_text(painter, QRectF(4, 0, w - 8, h), right, labels["right"], colour)
        shadowed_text(painter, QRectF(0, 2, w, h - 4), top, labels["top"], colour)
        shadowed_text(painter, QRectF(0, 2, w, h - 4), bottom, labels["bottom"], colour)
    viewer = view.viewer
    lines = view.info_lines()
    if compact:
        lines = lines[:2]
    grey = QColor(230, 230, 230)
    for i, line in enumerate(lines):
        colour = PLANE_COLOURS[view.plane] if i == 0 else SYNTHETIC_COLOUR if line.startswith("SYNTHETIC") else grey
        shadowed_text(painter, QPointF(6, 4 + fm.ascent() + i * fm.height()), None, line, colour)
    if not compact:
        win = viewer.window
        wl = f"W {win.width:.0f}  L {win.center:.0f}" + (f"  ({viewer.window_name})" if viewer.window_name else "")
        if viewer.invert:
            wl += "  inverted"
        shadowed_text(painter, QPointF(6, h - 6 - fm.descent()), None, wl, grey)
        if meta.get("spacing_known", True):  # no ruler from an invented pixel size
            draw_scale_bar(painter, view.vb.viewPixelSize()[0], w, h, fm)
    painter.restore()


def draw_scale_bar(painter: QPainter, mm_per_px: float, w: int, h: int, fm) -> None:
    """A scale bar of a round length (about a fifth of the width ``w``) in the bottom right corner, for a
    view showing ``mm_per_px`` millimetres a viewport pixel."""
    px_per_mm = mm_per_px
    if not px_per_mm or not math.isfinite(px_per_mm):
        return
    px_per_mm = 1.0 / px_per_mm
    target_mm = (w * 0.2) / px_per_mm
    if target_mm <= 0:
        return
    exp = 10 ** math.floor(math.log10(target_mm))
    length_mm = max(m * exp for m in (1, 2, 5) if m * exp <= target_mm) if target_mm >= exp else exp
    length_px = length_mm * px_per_mm
    x1 = w - 12
    x0 = x1 - length_px
    y = h - 10 - fm.height()
    for colour, d in ((QColor(0, 0, 0, 200), 1.0), (QColor(230, 230, 230), 0.0)):  # shadow, then bar
        painter.setPen(QPen(colour, 2))
        painter.drawLine(QPointF(x0 + d, y + d), QPointF(x1 + d, y + d))
        painter.drawLine(QPointF(x0 + d, y - 4 + d), QPointF(x0 + d, y + 4 + d))
        painter.drawLine(QPointF(x1 + d, y - 4 + d), QPointF(x1 + d, y + 4 + d))
    text = f"{length_mm:g} mm" if length_mm < 10 else f"{length_mm / 10:g} cm"
    shadowed_text(painter, QRectF(x0 - 40, y + 3, length_px + 40, fm.height() + 4),
                  Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, text, QColor(230, 230, 230))


_SHADOW = QColor(0, 0, 0, 220)


def shadowed_text(painter: QPainter, where, flags, text: str, colour: QColor) -> None:
    """Overlay text with a dark shadow, readable on bright anatomy (bone, contrast) as on air."""
    for pen, d in ((_SHADOW, 1.0), (colour, 0.0)):
        painter.setPen(pen)
        if flags is None:
            painter.drawText(where + QPointF(d, d), text)
        else:
            painter.drawText(where.translated(d, d), flags, text)
