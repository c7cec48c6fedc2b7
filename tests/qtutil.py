"""Helpers for widget tests: real mouse events sent to a widget (pyqtgraph sees them as a user's)."""

from __future__ import annotations

import time

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget


def _mouse(widget: QWidget, kind, pos: QPoint, button, buttons, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    local = QPointF(pos)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def click(widget: QWidget, pos: QPoint, button=Qt.MouseButton.LeftButton, double: bool = False) -> None:
    _mouse(widget, QMouseEvent.Type.MouseButtonPress, pos, button, button)
    _mouse(widget, QMouseEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)
    if double:
        _mouse(widget, QMouseEvent.Type.MouseButtonDblClick, pos, button, button)
        _mouse(widget, QMouseEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)
    QApplication.processEvents()


def drag(widget: QWidget, start: QPoint, end: QPoint, button=Qt.MouseButton.LeftButton, steps: int = 8,
         modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """A drag at a human pace: pyqtgraph drops mouse moves less than 10 ms apart (its mouseRateLimit),
    so moves sent back to back on a fast machine would never start a drag."""
    _mouse(widget, QMouseEvent.Type.MouseButtonPress, start, button, button, modifiers)
    for i in range(1, steps + 1):
        time.sleep(0.012)
        p = QPoint(start.x() + (end.x() - start.x()) * i // steps, start.y() + (end.y() - start.y()) * i // steps)
        _mouse(widget, QMouseEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button, modifiers)
        QApplication.processEvents()
    _mouse(widget, QMouseEvent.Type.MouseButtonRelease, end, button, Qt.MouseButton.NoButton, modifiers)
    QApplication.processEvents()


def wheel(widget: QWidget, pos: QPoint, notches: int = 1, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


def open_and_wait(qtbot, window, path, series=None, timeout: int = 60_000) -> bool:
    """Open ``path`` in a MainWindow and wait until it is shown (or failed); returns whether it was."""
    with qtbot.waitSignal(window.load_finished, timeout=timeout) as sig:
        window.open_path(str(path), series)
    return sig.args[0]


def view_point(view, ijk) -> QPoint:
    """The viewport pixel of a slice view showing display index ``ijk``."""
    import numpy as np

    return view.viewport_point(np.asarray(ijk, float)).toPoint()
