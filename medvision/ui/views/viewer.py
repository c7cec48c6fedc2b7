"""What the views show, in one observable object: the volume, the linked cursor, the window.

The slice views, the 3D view, the status bar and the header viewer all subscribe to a
:class:`Viewer`; a click in one view sets the cursor here and the others follow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from ...core.display import DisplayGrid
from ...core.volume import Volume
from ...core.windowing import Window, initial_window

log = logging.getLogger(__name__)


@dataclass
class Layer:
    """An overlay on the volume's grid: integer ``array`` ``(z, y, x)`` coloured by ``lut``
    (``(N, 4)`` uint8 RGBA, entry 0 normally transparent).

    ``outline`` draws only the borders of each value's regions. ``image_fn(plane, index)``, when
    given, computes the layer's screen image of a slice instead (a live preview, e.g. a
    threshold); ``array`` is then only its shape's reference."""

    name: str
    array: np.ndarray
    lut: np.ndarray
    opacity: float = 0.5
    visible: bool = True
    outline: bool = False
    image_fn: Callable[[str, int], np.ndarray] | None = None


class Viewer(QObject):
    """The shared view state. Cursor positions are whole display indices (x, y, z); see
    :class:`medvision.core.display.DisplayGrid`."""

    volume_changed = Signal()
    cursor_changed = Signal(object)  # the previous cursor (np.ndarray) so views know what moved
    window_changed = Signal()
    display_changed = Signal()  # invert, interpolation, frame, layers
    data_updated = Signal()  # voxels changed in place (a volume still loading)
    #: overlay voxels changed: the box ``(z, y, x)`` slices on the volume's grid, or None for all
    layers_updated = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.volume: Volume | None = None
        self.grid: DisplayGrid | None = None
        self.cursor = np.zeros(3, dtype=int)
        self.frame = 0
        self.window = Window(0, 1)
        self.window_name = ""
        self.invert = False
        self.interpolate = False
        self.layers: list[Layer] = []
        #: things painted over every slice view (measurements, tool previews): objects with a
        #: ``paint(view, painter)`` method, called in viewport pixels after the view's own text
        self.decorations: list = []
        #: True when the last set_volume kept the grid and cursor (a reload): views keep their zoom
        self.kept_grid = False

    # ---- volume ---------------------------------------------------------------------------
    def set_volume(self, volume: Volume | None, *, window: Window | None = None, window_name: str = "custom",
                   keep_cursor: bool = False) -> None:
        old_grid = self.grid
        self.kept_grid = False
        self.volume = volume
        self.grid = DisplayGrid(volume) if volume is not None else None
        self.layers = []
        self.frame = 0
        if volume is not None:
            assert self.grid is not None
            self.kept_grid = bool(keep_cursor and old_grid is not None
                                  and np.allclose(old_grid.affine, self.grid.affine)
                                  and old_grid.shape_xyz == self.grid.shape_xyz)
            if not self.kept_grid:
                self.cursor = np.asarray(self.grid.shape_xyz) // 2
            if window is not None:
                self.window, self.window_name = window, window_name
            else:
                sample = self.frame_array()
                if volume.metadata.get("partial"):
                    # a volume still loading: only its middle slices are decoded yet
                    sample = sample[sample.shape[0] // 2]
                self.window, self.window_name = initial_window(sample, volume.metadata)
            self.invert = volume.metadata.get("photometric") == "MONOCHROME1"
        self.volume_changed.emit()

    def frame_array(self) -> np.ndarray:
        """The 3D array (on the volume's grid) of the current frame."""
        assert self.volume is not None
        return self.volume.array[self.frame] if self.volume.is_4d else self.volume.array

    def frame_volume(self) -> Volume | None:
        if self.volume is None:
            return None
        return self.volume.frame(self.frame) if self.volume.is_4d else self.volume

    def slice_source(self, ijk=None) -> tuple | None:
        """``(FileRef, frame in file, instance number)`` of the DICOM image holding the slice at
        ``ijk`` (default: the cursor) in the current frame, or None for non-DICOM volumes."""
        if self.volume is None or self.grid is None:
            return None
        meta = self.volume.metadata
        sources = meta.get("frame_slice_sources")
        sources = sources[self.frame] if sources else meta.get("slice_sources")
        if not sources:
            return None
        z = int(self.grid.to_volume_index(self.cursor if ijk is None else np.asarray(ijk))[2])
        return sources[min(max(z, 0), len(sources) - 1)]

    def set_frame(self, t: int) -> None:
        if self.volume is None or not 0 <= t < self.volume.n_frames or t == self.frame:
            return
        self.frame = t
        self.display_changed.emit()

    def notify_data_updated(self) -> None:
        self.data_updated.emit()

    # ---- cursor ---------------------------------------------------------------------------
    def set_cursor(self, ijk) -> None:
        if self.grid is None:
            return
        new = self.grid.clamp(ijk)
        if np.array_equal(new, self.cursor):
            return
        old, self.cursor = self.cursor, new
        self.cursor_changed.emit(old)

    def move_slice(self, plane: str, steps: int) -> None:
        """Move the slice of ``plane`` by ``steps`` (positive: towards the higher display index
        of its axis, i.e. left, posterior or superior)."""
        if self.grid is None:
            return
        ijk = self.cursor.copy()
        ijk[self.grid.slice_axis(plane)] += steps
        self.set_cursor(ijk)

    def set_slice(self, plane: str, index: int) -> None:
        if self.grid is None:
            return
        ijk = self.cursor.copy()
        ijk[self.grid.slice_axis(plane)] = index
        self.set_cursor(ijk)

    def cursor_world(self) -> np.ndarray | None:
        return None if self.grid is None else self.grid.world(self.cursor)

    # ---- display --------------------------------------------------------------------------
    def set_window(self, window: Window, name: str = "custom") -> None:
        if window == self.window and name == self.window_name:
            return
        self.window, self.window_name = window, name
        self.window_changed.emit()

    def set_invert(self, on: bool) -> None:
        if on != self.invert:
            self.invert = on
            self.window_changed.emit()

    def set_interpolate(self, on: bool) -> None:
        if on != self.interpolate:
            self.interpolate = on
            self.display_changed.emit()

    def add_layer(self, layer: Layer, *, below: bool = False, notify: bool = True) -> None:
        """Show ``layer`` over the image (its array on the volume's grid, one frame's shape); a layer
        of the same name is replaced. ``below``: under the other layers (drawn first)."""
        if self.volume is None or layer.array.shape != self.volume.shape[-3:]:
            raise ValueError("an overlay must lie on the volume's grid")
        self.layers = [la for la in self.layers if la.name != layer.name]
        self.layers.insert(0, layer) if below else self.layers.append(layer)
        if notify:
            self.display_changed.emit()

    def remove_layer(self, *names: str, notify: bool = True) -> None:
        """Stop showing the layers of these names (nothing for a name not shown)."""
        self.layers = [la for la in self.layers if la.name not in names]
        if notify:
            self.display_changed.emit()

    def layer(self, name: str) -> Layer | None:
        return next((la for la in self.layers if la.name == name), None)

    def notify_layers(self, box=None) -> None:
        """Overlay voxels (or a layer's colours) changed; ``box``: where, on the volume's grid."""
        self.layers_updated.emit(box)

    def array_index(self, ijk) -> np.ndarray:
        """Display index (x, y, z) -> index ``(z, y, x)`` into the volume's arrays (floats stay floats)."""
        assert self.grid is not None
        return self.grid.to_volume_index(np.asarray(ijk))[::-1].copy()

    def array_axis(self, plane: str) -> int:
        """The array axis (0 z, 1 y, 2 x) across which ``plane``'s slices are cut."""
        assert self.grid is not None
        return 2 - self.grid.perm[self.grid.slice_axis(plane)]
