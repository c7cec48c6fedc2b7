"""The volume of the 3D view: the job that prepares the grid it renders (in the GUI thread for small
volumes, on a worker thread for big ones), and which of several asked-for volumes wins. The grids
themselves come from :mod:`medvision.ui.views.volume_prep`; the view puts them into its scene.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ...core.volume import Volume
from ..jobs import JobRunner, run_in_thread
from .volume_prep import PreparedVolume, needs_worker, prepare_job, prepare_volume

__all__ = ["VolumeController", "VolumeHost"]

log = logging.getLogger(__name__)


class VolumeHost(Protocol):
    """What the controller needs of its view (:class:`~medvision.ui.views.view3d.View3D` is one)."""

    status: Any  # Signal(str)
    max_dim: int

    @property
    def available(self) -> bool: ...  # False where VTK cannot render

    def install_volume(self, prepared: PreparedVolume | None, *, announce: bool = True,
                       keep_camera: bool = False) -> None: ...

    def update(self) -> None: ...


class VolumeController:
    """The volume preparation of a :class:`~medvision.ui.views.view3d.View3D`. The view owns one and
    delegates :meth:`View3D.set_volume` to it; it emits the view's ``status`` and hands each prepared
    grid to the view's :meth:`~View3D.install_volume`."""

    def __init__(self, view: VolumeHost) -> None:
        self._view = view
        self._runner: JobRunner | None = None
        self._token = 0
        self._grid: tuple | None = None  # shape and affine of the last volume set

    @property
    def is_preparing(self) -> bool:
        return self._runner is not None

    def cancel(self) -> None:
        """Stop the job preparing a volume, if one runs."""
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None

    def set_volume(self, volume: Volume | None) -> None:
        """:meth:`View3D.set_volume`."""
        view = self._view
        self._token += 1
        self.cancel()
        grid = None if volume is None else (volume.shape, volume.affine.round(4).tobytes())
        same_grid = grid is not None and grid == self._grid
        self._grid = grid
        if not same_grid:  # another frame of the same series stays on screen until the next is ready
            view.install_volume(None, announce=volume is None)
        if volume is None or not view.available:
            return
        token = self._token
        if needs_worker(volume):
            view.status.emit("Preparing the 3D view ...")
            self._runner = run_in_thread(
                prepare_job(volume, view.max_dim), parent=view, name="3D view preparation",
                on_finished=lambda prepared: self._on_prepared(token, prepared, same_grid),
                on_failed=lambda exc: self._on_failed(token, exc))
            view.update()
            return
        try:
            prepared = prepare_volume(volume, view.max_dim)
        except (ValueError, MemoryError) as exc:
            self._on_failed(token, exc)
            return
        view.install_volume(prepared, keep_camera=same_grid)

    def _on_prepared(self, token: int, prepared: PreparedVolume, same_grid: bool) -> None:
        if token != self._token:
            return
        self._runner = None
        self._view.install_volume(prepared, keep_camera=same_grid)

    def _on_failed(self, token: int, exc: BaseException) -> None:
        if token != self._token:
            return
        self._runner = None
        message = f"3D view: cannot show this volume: {exc}"
        log.warning("%s", message)
        self._view.status.emit(message)
        self._view.update()
