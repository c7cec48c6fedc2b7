"""The label surfaces of the 3D view: which label map they show, the jobs that make them and their
colours in the view's scene (3D Slicer's "Show 3D"). The meshes themselves come from
:mod:`medvision.ui.views.label_surfaces`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from ...core.jobs import run_job
from ...core.labels import LabelMap
from ..jobs import JobRunner, run_in_thread
from .label_surfaces import SYNC_LABEL_VOXELS, LabelSurfaces, label_surfaces_job

__all__ = ["LabelSurfaceController", "SurfaceHost"]

log = logging.getLogger(__name__)


class SurfaceHost(Protocol):
    """What the controller needs of its view (:class:`~medvision.ui.views.view3d.View3D` is one)."""

    status: Any  # Signal(str)
    labels_ready: Any  # Signal()
    labels_max_dim: int
    last_labels_install_ms: float
    prepared: Any

    @property
    def scene(self) -> Any: ...  # the VTK scene, None before it exists or when VTK cannot render

    def request_render(self) -> None: ...

    def request_fit(self) -> None: ...  # fit the camera to the scene at the next render

    def update(self) -> None: ...


class LabelSurfaceController:
    """The label surfaces of a :class:`~medvision.ui.views.view3d.View3D`: the label map they show, the
    jobs that make them (in the GUI thread for small maps, on a worker thread for big ones) and
    their colours in the view's scene. The view owns one and delegates its label methods to it
    (their documentation is the view's); it emits the view's ``status`` and ``labels_ready``."""

    def __init__(self, view: SurfaceHost) -> None:
        self._view = view
        self.labels: LabelMap | None = None
        self.surfaces: LabelSurfaces | None = None  # the surfaces in the scene and what they were made from
        self.show = True
        self.opacity = 1.0
        self._runner: JobRunner | None = None
        self._token = 0
        self._pending = False  # an update was asked for while a job ran
        self._stale = False  # the labels changed while hidden

    @property
    def is_computing(self) -> bool:
        return self._runner is not None

    def cancel(self) -> None:
        """Stop the job making surfaces, if one runs."""
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None

    def set_labels(self, labels: LabelMap | None) -> None:
        """:meth:`View3D.set_labels`."""
        if labels is not None and labels is self.labels:
            self.update_labels()
            return
        self._token += 1
        self.cancel()
        self.labels = labels
        self._pending = False
        self._stale = False
        self.surfaces = None
        view = self._view
        if view.scene is not None:
            view.scene.set_label_meshes({})
            view.request_render()
        if labels is None:
            view.labels_ready.emit()
            return
        self.update_labels()

    def update_labels(self) -> None:
        """:meth:`View3D.update_labels`."""
        view = self._view
        if self.labels is None or view.scene is None:
            return
        if not self.show:
            self._stale = True  # made when shown again
            return
        if self._runner is not None:
            self._pending = True
            return
        self._stale = False
        labels, token = self.labels, self._token
        job = label_surfaces_job(labels.array, labels.affine, view.labels_max_dim, self.surfaces)
        if labels.array.size <= SYNC_LABEL_VOXELS:
            try:
                surfaces = run_job(job)
            except (ValueError, MemoryError) as exc:
                self._on_failed(token, exc)
                return
            self._install(surfaces)
            return
        self._runner = run_in_thread(
            job, parent=view, name="3D label surfaces",
            on_finished=lambda surfaces: self._on_made(token, surfaces),
            on_failed=lambda exc: self._on_failed(token, exc))
        view.update()

    def _on_made(self, token: int, surfaces: LabelSurfaces) -> None:
        if token != self._token:
            return
        self._runner = None
        self._install(surfaces)
        if self._pending:
            self._pending = False
            self.update_labels()

    def _on_failed(self, token: int, exc: BaseException) -> None:
        if token != self._token:
            return
        self._runner = None
        self._pending = False
        message = f"3D view: cannot show these labels: {exc}"
        log.warning("%s", message)
        self._view.status.emit(message)
        self._view.update()

    def _install(self, surfaces: LabelSurfaces) -> None:
        view = self._view
        start = time.perf_counter()
        first = self.surfaces is None
        changed = first or bool(surfaces.rebuilt) or surfaces.meshes.keys() != self.surfaces.meshes.keys()
        self.surfaces = surfaces
        if view.scene is None:
            return
        view.scene.set_label_meshes(surfaces.meshes)
        self.refresh_display()
        view.last_labels_install_ms = (time.perf_counter() - start) * 1000
        log.debug("label surfaces: %d remade in %.0f ms, installed in %.1f ms", len(surfaces.rebuilt),
                  surfaces.seconds * 1000, view.last_labels_install_ms)
        if changed:
            message = f"3D: {len(surfaces.meshes)} label surfaces"
            if surfaces.factors != (1, 1, 1):
                z, y, x = surfaces.snapshot.shape
                message += f" (labels sampled to {x}x{y}x{z})"
            view.status.emit(message)
        if view.prepared is None and first:
            view.request_fit()
        view.labels_ready.emit()

    def refresh_display(self) -> None:
        """:meth:`View3D.refresh_label_display`."""
        scene = self._view.scene
        if scene is None:
            return
        colours: dict[int, tuple[int, int, int, int]] = {}
        if self.labels is not None and self.show:
            table = self.labels.table
            for value in scene.label_actors:
                label = table.labels.get(value)
                if label is not None and label.visible:
                    colours[value] = tuple(label.color)
        scene.set_label_display(colours, self.opacity)
        self._view.request_render()

    def set_show(self, show: bool) -> None:
        """:meth:`View3D.set_show_labels`."""
        self.show = bool(show)
        if self.show and self._stale:
            self.update_labels()
        self.refresh_display()

    def set_opacity(self, opacity: float) -> None:
        """:meth:`View3D.set_labels_opacity`."""
        self.opacity = min(max(float(opacity), 0.0), 1.0)
        self.refresh_display()
