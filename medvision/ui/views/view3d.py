"""The 3D view: VTK volume rendering of the current volume and surfaces of its labels, painted as
an image into a QWidget.

VTK renders into an offscreen window (EGL without X, GLX on an X display) sized to the widget;
each frame is read back into a QImage and painted in ``paintEvent``. No QVTKRenderWindowInteractor:
this works under a real display and under ``QT_QPA_PLATFORM=offscreen`` alike.

Mouse: left drag rotates, right drag or wheel zooms, middle drag pans (at reduced quality while
dragging), double click maximises the pane (``double_clicked``). Key R resets the camera.
The world is LPS millimetres; the default camera looks at the patient from anterior, superior up,
so the patient's right is on the screen's left (as 3D Slicer's anterior view).

Label surfaces (3D Slicer's "Show 3D"): :meth:`View3D.set_labels` shows a smooth closed surface per
label present in a :class:`LabelMap` (surface nets), in its table colour, placed by the label map's
own affine in LPS; they are made on a worker thread for big maps, and :meth:`View3D.update_labels`
remakes only the labels whose voxels changed since the last surfaces (all of it done by a
:class:`~medvision.ui.views.surface_control.LabelSurfaceController`, which the view owns).

The camera and the mouse's navigation are a :class:`~medvision.ui.views.view3d_camera.CameraNavigator`'s,
the painting (frame and overlay text) is :func:`~medvision.ui.views.view3d_overlay.paint_view`'s, the
volume's preparation is a :class:`~medvision.ui.views.volume_control.VolumeController`'s (its grids from
:mod:`medvision.ui.views.volume_prep`), the presets in
:mod:`medvision.ui.views.volume_presets` and the VTK scene in :mod:`medvision.ui.views.vtk_support`.

Importing this module imports VTK: the main window imports it once it is on screen.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from ...core.labels import LabelMap
from ...core.volume import Volume
from . import vtk_support
from .label_surfaces import LABELS_MAX_DIM, LabelSurfaces
from .surface_control import LabelSurfaceController
from .view3d_camera import CameraNavigator
from .view3d_overlay import paint_view
from .volume_control import VolumeController
from .volume_prep import DEFAULT_MAX_DIM, PreparedVolume
from .volume_presets import ALL_PRESET_NAMES, CT_PRESET_NAMES, default_preset, presets_for
from .vtk_support import DRAG_LEVELS, STILL_LEVELS, Scene, adapt_level, apply_preset

__all__ = ["View3D"]

log = logging.getLogger(__name__)
log.info("VTK modules imported in %.0f ms", vtk_support.IMPORT_SECONDS * 1000)


class View3D(QWidget):
    """Volume rendering of one 3D :class:`Volume` in LPS world space.

    Signals: ``status(str)`` for messages, ``double_clicked()``, ``preset_changed(str)``,
    ``ready()`` once a volume passed to :meth:`set_volume` (or ``None``) is in the scene, and
    ``labels_ready()`` once label surfaces asked for by :meth:`set_labels` or
    :meth:`update_labels` are in the scene.
    """

    status = Signal(str)
    double_clicked = Signal()
    preset_changed = Signal(str)
    ready = Signal()
    labels_ready = Signal()

    def __init__(self, parent: QWidget | None = None, *, max_dim: int = DEFAULT_MAX_DIM) -> None:
        super().__init__(parent)
        self.max_dim = max_dim
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)
        self._scene: Scene | None = None
        self._error: str | None = None
        self._prepared: PreparedVolume | None = None
        self._preset = ""
        self._wanted_presets: dict[bool, str] = {}  # the caller's choice for CT (True) and other modalities
        self._volume_ctl = VolumeController(self)  # the job preparing the volume's grid
        self._nav = CameraNavigator(self)  # the camera's side, its fitting and the mouse's moves
        self._cursor: np.ndarray | None = None
        self._frame: QImage | None = None
        self._dirty = True
        #: frame-time budgets (ms) that set the quality level; None: always the finest level
        self.still_budget_ms: float | None = 500.0
        self.drag_budget_ms: float | None = 90.0
        self._still_level = 0
        self._drag_level = 1
        self._adapt_next = False  # the first frame after a new volume or preset uploads/compiles: not timed
        self._resize_timer = QTimer(self, singleShot=True, interval=200)
        self._resize_timer.timeout.connect(self.request_render)
        # crosshair moves (many per second while the user drags in a slice view) are coalesced: a
        # quick frame once they pause, a full-quality frame once they stop
        self._quick_next = False
        self._cursor_timer = QTimer(self, singleShot=True, interval=150)
        self._cursor_timer.timeout.connect(self._quick_render)
        self._settle_timer = QTimer(self, singleShot=True, interval=800)
        self._settle_timer.timeout.connect(self.request_render)
        self.last_frame_ms = 0.0
        self.last_frame_interactive = False
        # label surfaces
        #: longest axis of the label grid surfaces are made on (larger label maps are sampled down)
        self.labels_max_dim = LABELS_MAX_DIM
        self._label_ctl = LabelSurfaceController(self)
        #: milliseconds the GUI thread spent putting the last surfaces into the scene
        self.last_labels_install_ms = 0.0
        try:
            self._scene = Scene()
            log.info("3D view renders with %s", self._scene.window_class)
            scene = self._scene
            self.destroyed.connect(lambda *_: scene.close())  # free the GL context and textures now
        except Exception as exc:  # noqa: BLE001 - no OpenGL: say so in the pane, keep the window alive
            self._fail(str(exc) or type(exc).__name__)

    # ---- state --------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False when no OpenGL context could be made (the pane then shows why)."""
        return self._scene is not None

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def prepared(self) -> PreparedVolume | None:
        """The grid being rendered (after downsampling and reorientation), or None."""
        return self._prepared

    @property
    def is_preparing(self) -> bool:
        return self._volume_ctl.is_preparing

    @property
    def preset(self) -> str:
        return self._preset

    @property
    def view_direction(self) -> str:
        return self._nav.view

    @property
    def labels(self) -> LabelMap | None:
        return self._label_ctl.labels

    @property
    def label_surfaces(self) -> LabelSurfaces | None:
        """The label surfaces in the scene (meshes by value, the grid they were made on), or None."""
        return self._label_ctl.surfaces

    @property
    def is_computing_labels(self) -> bool:
        return self._label_ctl.is_computing

    @property
    def show_labels(self) -> bool:
        return self._label_ctl.show

    @property
    def labels_opacity(self) -> float:
        """Opacity of the label surfaces, 0..1 (times each label's own alpha); 1 by default."""
        return self._label_ctl.opacity

    @labels_opacity.setter
    def labels_opacity(self, value: float) -> None:
        self.set_labels_opacity(value)

    @property
    def camera(self):
        """The vtkCamera (for tests and the main window's state; change it through the methods)."""
        return self._scene.camera if self._scene is not None else None

    @property
    def frame_image(self) -> QImage | None:
        """The last rendered frame (device pixels, without the overlay text), or None."""
        return self._frame

    def _fail(self, reason: str) -> None:
        self._error = f"3D rendering unavailable: {reason}"
        log.error("%s", self._error)
        self.status.emit(self._error)
        self._scene = None
        self.update()

    # ---- volume (prepared by self._volume_ctl) -------------------------------------------
    def set_volume(self, volume: Volume | None) -> None:
        """Show ``volume`` (3D; a 4D volume shows its first frame), or nothing for None.

        Large volumes are block-averaged down to ``max_dim`` voxels per axis on a worker thread; the
        view renders when they are ready (``ready`` is emitted then).
        """
        self._volume_ctl.set_volume(volume)

    def install_volume(self, prepared: PreparedVolume | None, *, announce: bool = True,
                       keep_camera: bool = False) -> None:
        """Put a prepared grid (or none) into the scene; ``keep_camera``: another frame of the same grid."""
        self._prepared = prepared
        if self._scene is None:
            return
        self._scene.set_volume(prepared)
        self._adapt_next = False
        if prepared is not None:
            names = [p.name for p in presets_for(prepared)]
            wanted = self._wanted_presets.get(prepared.modality == "CT")
            name = wanted if wanted in names else default_preset(prepared)
            self._apply_preset(name)
            self._scene.set_cursor(self._cursor)
            if not keep_camera:
                self._nav.fit_pending = True
            if prepared.factors != (1, 1, 1) and not keep_camera:
                src = "x".join(str(n) for n in prepared.source_shape[::-1])
                dst = "x".join(str(n) for n in prepared.array.shape[::-1])
                self.status.emit(f"3D view: {src} voxels shown at {dst} for interactivity")
        self.request_render()
        if announce:
            self.ready.emit()

    # ---- label surfaces (made and shown by self._label_ctl) -----------------------------
    def set_labels(self, labels: LabelMap | None) -> None:
        """Show a surface for each label present in ``labels`` (visible ones, in their table colour),
        or none for None. Big label maps get their surfaces made on a worker thread
        (``labels_ready`` is emitted once they are in the scene). The same map again is an update."""
        self._label_ctl.set_labels(labels)

    def update_labels(self) -> None:
        """Remake the surfaces after the label map's voxels changed (only labels whose voxels
        changed are remade). The caller debounces edits; a call while surfaces are being made
        starts another job when that one ends."""
        self._label_ctl.update_labels()

    def refresh_label_display(self) -> None:
        """Apply the label table's colours and visibility (and the opacity) to the surfaces
        without remaking them."""
        self._label_ctl.refresh_display()

    def set_show_labels(self, show: bool) -> None:
        """Show (True, the default) or hide the label surfaces."""
        self._label_ctl.set_show(show)

    def set_labels_opacity(self, opacity: float) -> None:
        """Opacity of all label surfaces, 0 (hidden) to 1 (opaque, the default)."""
        self._label_ctl.set_opacity(opacity)

    # ---- presets -------------------------------------------------------------------------
    def presets(self) -> list[str]:
        """Preset names for the current volume's modality (CT's in HU; "MR ..." otherwise)."""
        return [p.name for p in presets_for(self._prepared)]

    def set_preset(self, name: str) -> None:
        """Choose a transfer function by name; later volumes of the same kind (CT or not) keep it."""
        allowed = self.presets() if self._prepared is not None else ALL_PRESET_NAMES
        if name not in allowed:
            raise ValueError(f"unknown 3D preset {name!r}; choose one of: {', '.join(allowed)}")
        self._wanted_presets[name in CT_PRESET_NAMES] = name
        if self._prepared is not None:
            self._apply_preset(name)
            self.request_render()

    def _apply_preset(self, name: str) -> None:
        assert self._scene is not None
        preset = next(p for p in presets_for(self._prepared) if p.name == name)
        apply_preset(preset, self._scene.property, self._scene.mapper)
        self._adapt_next = False  # the next frame compiles shaders
        if name != self._preset:
            self._preset = name
            self.preset_changed.emit(name)

    # ---- camera -----------------------------------------------------------------------------
    def reset_camera(self) -> None:
        """The default view: from anterior, superior up, the whole volume in the frame."""
        self.set_view("A")

    def set_view(self, direction: str) -> None:
        """Look at the patient from side ``direction`` (one of A, P, L, R, S, I), volume fitted."""
        self._nav.set_view(direction)

    def set_parallel_projection(self, parallel: bool) -> None:
        """Orthographic (True) or perspective (False, the default) projection; the view refits."""
        self._nav.set_parallel_projection(parallel)

    def set_cursor(self, lps: np.ndarray | None) -> None:
        """Show the linked crosshair point (LPS mm) as three short axis lines; None hides it."""
        self._cursor = None if lps is None else np.asarray(lps, dtype=float).reshape(3).copy()
        if self._scene is not None:
            self._scene.set_cursor(self._cursor)
            self._dirty = True
            self._settle_timer.stop()
            self._cursor_timer.start()

    def screen_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """LPS unit vectors pointing to the screen's right and up for the current camera."""
        return self._nav.screen_axes()

    def rotate(self, dx: float, dy: float) -> None:
        """Trackball rotation for a drag of (dx, dy) widget pixels (x right, y down)."""
        self._nav.rotate(dx, dy)

    def zoom(self, factor: float) -> None:
        """Move the camera towards the focal point (``factor`` > 1 magnifies)."""
        self._nav.zoom(factor)

    def pan(self, dx: float, dy: float) -> None:
        """Move the scene with the mouse by (dx, dy) widget pixels."""
        self._nav.pan(dx, dy)

    # ---- rendering --------------------------------------------------------------------------
    @property
    def scene(self) -> Scene | None:
        """The VTK scene (None before the view is shown, or where VTK cannot render)."""
        return self._scene

    def request_render(self) -> None:
        """Render a new frame at the next paint."""
        self._dirty = True
        self.update()

    def request_fit(self) -> None:
        """Fit the camera to what the scene shows at the next render."""
        self._nav.fit_pending = True

    def _quick_render(self) -> None:
        self._quick_next = True
        self.request_render()
        self._settle_timer.start()

    def pixel_size(self) -> tuple[int, int, float]:
        """The widget's width and height in device pixels (at least 1) and its device pixel ratio."""
        dpr = self.devicePixelRatioF()
        return max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr)), dpr

    def _render_frame(self, *, interactive: bool = False) -> None:
        """Render a frame: at a drag quality level when ``interactive`` or dragging."""
        scene = self._scene
        if scene is None:
            return
        width, height, dpr = self.pixel_size()
        self._nav.fit_if_pending(width / height)
        interactive = interactive or self._nav.drag is not None
        if self.still_budget_ms is None:
            self._still_level = 0
        levels, index = (DRAG_LEVELS, self._drag_level) if interactive else (STILL_LEVELS, self._still_level)
        scene.set_quality(*levels[index])
        n_errors = len(scene.errors)
        start = time.perf_counter()
        pixels = scene.render(width, height)
        self.last_frame_ms = (time.perf_counter() - start) * 1000
        self.last_frame_interactive = interactive
        if len(scene.errors) > n_errors:
            self.status.emit(f"3D rendering problem: {scene.errors[-1]}")
        if self._adapt_next and self._prepared is not None:
            if interactive:
                self._drag_level = adapt_level(levels, index, self.last_frame_ms, self.drag_budget_ms)
            else:
                self._still_level = adapt_level(levels, index, self.last_frame_ms, self.still_budget_ms)
        self._adapt_next = self._prepared is not None
        image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
        image.setDevicePixelRatio(dpr)
        self._frame = image
        self._dirty = False

    def render_image(self, *, overlay: bool = True) -> QImage:
        """The current frame at the widget's size (device pixels), with the overlay text unless
        ``overlay`` is False; renders first when the frame is out of date."""
        width, height, dpr = self.pixel_size()
        if self._scene is not None and (self._dirty or self._frame is None or self._frame.size().toTuple()
                                         != (width, height)):
            self._render_frame()
        image = QImage(width, height, QImage.Format.Format_RGB32)
        image.setDevicePixelRatio(dpr)
        painter = QPainter(image)
        paint_view(self, painter, overlay=overlay)
        painter.end()
        return image

    def paintEvent(self, event) -> None:
        if self._scene is not None and self._dirty:
            self._render_frame(interactive=self._resize_timer.isActive() or self._quick_next)
            self._quick_next = False
        painter = QPainter(self)
        paint_view(self, painter, overlay=True)
        painter.end()

    def resizeEvent(self, event) -> None:
        self._nav.on_resize()
        if self.isVisible():  # a splitter or layout change: fast frames until it settles
            self._resize_timer.start()
        self.request_render()
        super().resizeEvent(event)

    # ---- interaction (the navigator's) ------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        self._nav.mouse_press(event)

    def mouseMoveEvent(self, event) -> None:
        self._nav.mouse_move(event)

    def mouseReleaseEvent(self, event) -> None:
        self._nav.mouse_release(event)

    def mouseDoubleClickEvent(self, event) -> None:
        self._nav.mouse_double_click(event)

    def wheelEvent(self, event) -> None:
        self._nav.wheel(event)

    def keyPressEvent(self, event) -> None:
        if not self._nav.key_press(event):
            super().keyPressEvent(event)

    @property
    def is_dragging(self) -> bool:
        """True while a mouse drag moves the camera."""
        return self._nav.drag is not None

    def closeEvent(self, event) -> None:
        self._volume_ctl.cancel()
        self._label_ctl.cancel()
        super().closeEvent(event)
