"""The 3D view's camera: the side of the patient it looks from, fitting the scene in the frame, and
the mouse's navigation (left drag rotates, right drag or wheel zooms, middle drag pans, double click
maximises the pane, key R resets).

No VTK import: the camera is the host's vtkCamera, used through its methods. The host is the view
(:class:`~medvision.ui.views.view3d.View3D`), which owns a :class:`CameraNavigator` and passes its
mouse and key events on to it.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QPointF, Qt

__all__ = ["VIEWS", "view_letters", "NavigationHost", "CameraNavigator"]

#: view direction -> (the side of the patient the camera is on, view up), in LPS
VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "A": ((0, -1, 0), (0, 0, 1)),
    "P": ((0, 1, 0), (0, 0, 1)),
    "L": ((1, 0, 0), (0, 0, 1)),
    "R": ((-1, 0, 0), (0, 0, 1)),
    "S": ((0, 0, 1), (0, -1, 0)),
    "I": ((0, 0, -1), (0, -1, 0)),
}
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative, positive) along LPS x, y, z


def view_letters(vector: np.ndarray) -> str:
    """Patient-direction letters of a screen direction, strongest first (e.g. ``"L"``, ``"SA"``)."""
    order = np.argsort(-np.abs(vector))
    out = [_LETTERS[i][1 if vector[i] > 0 else 0] for i in order[:2] if abs(vector[i]) > 0.35]
    return "".join(out)


class NavigationHost(Protocol):
    """What the navigator needs of its view (:class:`~medvision.ui.views.view3d.View3D` is one)."""

    double_clicked: Any  # Signal()

    @property
    def available(self) -> bool: ...  # False where VTK cannot render

    @property
    def camera(self) -> Any: ...  # the vtkCamera, None where VTK cannot render

    @property
    def prepared(self) -> Any: ...  # the volume's grid in the scene (its corners()), or None

    @property
    def label_surfaces(self) -> Any: ...  # the label surfaces in the scene (their corners()), or None

    def pixel_size(self) -> tuple[int, int, float]: ...  # width and height in device pixels, the ratio

    def width(self) -> int: ...

    def height(self) -> int: ...

    def request_render(self) -> None: ...

    def reset_camera(self) -> None: ...


class CameraNavigator:
    """The camera of a :class:`~medvision.ui.views.view3d.View3D`: the side it looks from, when it is
    fitted to the scene, and the mouse drag moving it. The view delegates its camera methods to it
    (their documentation is the view's) and passes its mouse and key events on."""

    def __init__(self, host: NavigationHost) -> None:
        self._host = host
        #: the side of the patient the camera looks from (a key of :data:`VIEWS`)
        self.view = "A"
        #: fit the camera to the scene before the next frame
        self.fit_pending = True
        #: the camera refits on resizes until the user moves it
        self.untouched = True
        #: the mouse button dragging and the last position, or None
        self.drag: tuple[Qt.MouseButton, QPointF] | None = None

    # ---- the camera ---------------------------------------------------------------------------
    def has_content(self) -> bool:
        """True when there is something to look at and turn: a scene with a volume or label surfaces."""
        host = self._host
        return host.available and (host.prepared is not None or host.label_surfaces is not None)

    def set_view(self, direction: str) -> None:
        """:meth:`View3D.set_view`."""
        key = direction.strip().upper()
        if key not in VIEWS:
            raise ValueError(f"unknown view direction {direction!r}; use one of {', '.join(VIEWS)}")
        self.view = key
        self.fit_pending = True
        self.untouched = True
        self._host.request_render()

    def set_parallel_projection(self, parallel: bool) -> None:
        """:meth:`View3D.set_parallel_projection`."""
        if not self._host.available:
            return
        self._host.camera.SetParallelProjection(bool(parallel))
        self.fit_pending = True
        self.untouched = True
        self._host.request_render()

    def fit_if_pending(self, aspect: float) -> None:
        """Fit the camera when a fit is pending and there is something to frame."""
        host = self._host
        if self.fit_pending and (host.prepared is not None or host.label_surfaces is not None):
            self.fit(aspect)
            self.fit_pending = False

    def fit(self, aspect: float) -> None:
        """Put the camera on the current view side so the scene's box just fills the frame."""
        side, up = (np.asarray(v, dtype=float) for v in VIEWS[self.view])
        corners = self._scene_corners()
        if corners is None:
            return
        centre = corners.mean(axis=0)
        rel = corners - centre
        right = np.cross(-side, up)
        half_w, half_h, half_d = (float(np.abs(rel @ v).max()) for v in (right, up, side))
        camera = self._host.camera
        aspect = max(aspect, 1e-3)
        t = math.tan(math.radians(camera.GetViewAngle() / 2))
        distance = 1.08 * max(half_h / t, half_w / (t * aspect), 1.0) + half_d
        camera.SetParallelScale(1.08 * max(half_h, half_w / aspect, 1.0))
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(centre + side * distance))
        camera.SetViewUp(*up)
        camera.OrthogonalizeViewUp()

    def _scene_corners(self) -> np.ndarray | None:
        """LPS corners of what the camera frames: the volume's grid, else the labels' grid."""
        if self._host.prepared is not None:
            return self._host.prepared.corners()
        if self._host.label_surfaces is not None:
            return self._host.label_surfaces.corners()
        return None

    def screen_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`View3D.screen_axes`."""
        camera = self._host.camera
        up = np.asarray(camera.GetViewUp(), dtype=float)
        right = np.cross(np.asarray(camera.GetDirectionOfProjection(), dtype=float), up)
        return right / np.linalg.norm(right), up / np.linalg.norm(up)

    def on_resize(self) -> None:
        """The view was resized: the camera refits unless the user moved it (or is moving it)."""
        if self.drag is None and self.untouched:
            self.fit_pending = True

    # ---- moves -----------------------------------------------------------------------------------
    def rotate(self, dx: float, dy: float) -> None:
        """:meth:`View3D.rotate`."""
        if not self.has_content():
            return
        host = self._host
        camera = host.camera
        camera.Azimuth(-200.0 * dx / max(host.width(), 1))
        camera.Elevation(200.0 * dy / max(host.height(), 1))
        camera.OrthogonalizeViewUp()
        self.untouched = False
        host.request_render()

    def zoom(self, factor: float) -> None:
        """:meth:`View3D.zoom`."""
        if not self.has_content() or factor <= 0:
            return
        camera = self._host.camera
        if camera.GetParallelProjection():
            camera.Zoom(factor)
        else:
            camera.Dolly(factor)
        self.untouched = False
        self._host.request_render()

    def pan(self, dx: float, dy: float) -> None:
        """:meth:`View3D.pan`."""
        if not self.has_content():
            return
        host = self._host
        camera = host.camera
        right, up = self.screen_axes()
        if camera.GetParallelProjection():
            height_mm = 2 * camera.GetParallelScale()
        else:
            height_mm = 2 * camera.GetDistance() * math.tan(math.radians(camera.GetViewAngle() / 2))
        shift = (-dx * right + dy * up) * height_mm / max(host.height(), 1)
        camera.SetFocalPoint(*(np.asarray(camera.GetFocalPoint()) + shift))
        camera.SetPosition(*(np.asarray(camera.GetPosition()) + shift))
        self.untouched = False
        host.request_render()

    # ---- mouse and keys ----------------------------------------------------------------------------
    def mouse_press(self, event) -> None:
        if not self.has_content() or self.drag is not None:
            event.ignore()
            return
        if self.fit_pending:  # place the camera before the first move
            width, height, _ = self._host.pixel_size()
            self.fit(width / height)
            self.fit_pending = False
        self.drag = (event.button(), event.position())
        self.untouched = False
        event.accept()

    def mouse_move(self, event) -> None:
        if self.drag is None:
            event.ignore()
            return
        button, last = self.drag
        pos = event.position()
        dx, dy = pos.x() - last.x(), pos.y() - last.y()
        self.drag = (button, pos)
        if button == Qt.MouseButton.LeftButton:
            self.rotate(dx, dy)
        elif button == Qt.MouseButton.RightButton:
            self.zoom(1.1 ** (-20.0 * dy / max(self._host.height(), 1)))
        elif button == Qt.MouseButton.MiddleButton:
            self.pan(dx, dy)
        event.accept()

    def mouse_release(self, event) -> None:
        if self.drag is None or event.button() != self.drag[0]:
            event.ignore()
            return
        self.drag = None
        self._host.request_render()  # full quality
        event.accept()

    def mouse_double_click(self, event) -> None:
        self.drag = None
        self._host.double_clicked.emit()
        event.accept()

    def wheel(self, event) -> None:
        if not self.has_content():
            event.ignore()
            return
        self.zoom(1.1 ** (event.angleDelta().y() / 120.0))
        event.accept()

    def key_press(self, event) -> bool:
        """Handle key R (reset the camera); False for other keys (the view passes them on)."""
        if event.key() == Qt.Key.Key_R and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            self._host.reset_camera()
            event.accept()
            return True
        return False
