"""What the 3D view paints: its last rendered frame, or why it cannot render, and over the frame the
overlay text (the preset's name, the patient-direction letters at the edges, and what is being
prepared). Used by :class:`~medvision.ui.views.view3d.View3D` for the screen and for its images.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter

from .view3d_camera import view_letters

__all__ = ["OverlayHost", "paint_view"]


class OverlayHost(Protocol):
    """What the painting needs of its view (:class:`~medvision.ui.views.view3d.View3D` is one)."""

    @property
    def available(self) -> bool: ...

    @property
    def error(self) -> str | None: ...

    @property
    def frame_image(self) -> QImage | None: ...

    @property
    def is_preparing(self) -> bool: ...

    @property
    def is_computing_labels(self) -> bool: ...

    @property
    def prepared(self) -> Any: ...

    @property
    def preset(self) -> str: ...

    def screen_axes(self) -> tuple[np.ndarray, np.ndarray]: ...

    def width(self) -> int: ...

    def height(self) -> int: ...


def paint_view(view: OverlayHost, painter: QPainter, *, overlay: bool) -> None:
    """Paint ``view``'s frame (or its error) over black, with the overlay text unless ``overlay`` is False."""
    rect = QRect(0, 0, view.width(), view.height())
    painter.fillRect(rect, QColor(0, 0, 0))
    font = QFont(painter.font())
    font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
    painter.setFont(font)
    if view.error is not None:
        painter.setPen(QColor(220, 140, 140))
        painter.drawText(rect.adjusted(12, 12, -12, -12),
                         int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextWordWrap), view.error)
        return
    if view.frame_image is not None:
        painter.drawImage(rect, view.frame_image)
    if not overlay:
        return
    painter.setPen(QColor(230, 230, 230))
    if view.is_preparing:
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "Preparing the 3D view ...")
    if view.is_computing_labels:
        corner = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom)
        painter.drawText(rect.adjusted(6, 6, -6, -6), corner, "Making label surfaces ...")
    if view.prepared is None or not view.available:
        return
    margin = 6
    inner = rect.adjusted(margin, margin, -margin, -margin)
    painter.drawText(inner, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), view.preset)
    right, up = view.screen_axes()
    painter.setPen(QColor(240, 200, 90))
    for vector, align in ((right, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                          (-right, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                          (up, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter),
                          (-up, Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter)):
        painter.drawText(inner, int(align), view_letters(vector))
