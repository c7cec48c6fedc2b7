"""The mouse bindings of a slice view (:class:`~medvision.ui.views.slice_view.SliceView`): a pyqtgraph
view box whose left click or drag moves the linked crosshair, right drag sets the window, middle drag
pans, wheel scrolls slices and Ctrl+wheel zooms; with an annotation tool chosen, the left button and
the wheel with modifiers are the tool's first (Shift+left still moves the crosshair).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt

__all__ = ["SliceViewBox"]


class SliceViewBox(pg.ViewBox):
    """ViewBox with radiology mouse bindings; reports to its SliceView."""

    def __init__(self, owner) -> None:  # owner: the SliceView
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, enableMouse=True)
        self.owner = owner
        self._wl_origin = None
        self._tool_drag = False

    def _tool(self, ev):
        """The annotation tool when it takes this left-button event (Shift+left is the crosshair)."""
        tool = self.owner.tool
        if (tool is None or ev.button() != Qt.MouseButton.LeftButton or self.owner.viewer.grid is None
                or ev.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            return None
        return tool

    def mouseClickEvent(self, ev) -> None:
        tool = self._tool(ev)
        if tool is not None and tool.click(self.owner, self.owner.index_at(ev.scenePos()), ev.modifiers(),
                                           ev.double()):
            ev.accept()
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            if ev.double():
                self.owner.double_clicked.emit(self.owner.plane)
            else:
                self.owner.set_cursor_at(self.mapSceneToView(ev.scenePos()))
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:
        button = ev.button()
        tool = self._tool(ev)
        if tool is not None:
            if ev.isStart():
                self._tool_drag = tool.press(self.owner, self.owner.index_at(ev.buttonDownScenePos()), ev.modifiers())
            if self._tool_drag:
                ev.accept()
                tool.drag(self.owner, self.owner.index_at(ev.scenePos()))
                if ev.isFinish():
                    self._tool_drag = False
                    tool.release(self.owner, self.owner.index_at(ev.scenePos()))
                return
        if button == Qt.MouseButton.LeftButton:
            ev.accept()
            self.owner.set_cursor_at(self.mapSceneToView(ev.scenePos()))
        elif button == Qt.MouseButton.RightButton:
            ev.accept()
            if ev.isStart():
                self._wl_origin = self.owner.viewer.window
            if self._wl_origin is not None:
                delta = ev.screenPos() - ev.buttonDownScreenPos()
                self.owner.drag_window(self._wl_origin, delta.x(), delta.y())
            if ev.isFinish():
                self._wl_origin = None
        elif button == Qt.MouseButton.MiddleButton:
            ev.accept()
            tr = self.mapToView(ev.pos()) - self.mapToView(ev.lastPos())
            self.translateBy(x=-tr.x(), y=-tr.y())
        else:
            ev.ignore()

    def wheelEvent(self, ev, axis=None) -> None:
        tool = self.owner.tool
        if tool is not None and tool.wheel(self.owner, ev.delta(), ev.modifiers()):
            ev.accept()
            return
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            self.owner.viewport().update()
            return
        ev.accept()
        steps = self.owner.wheel_steps(ev.delta())
        if steps:
            self.owner.next_slice(steps)

