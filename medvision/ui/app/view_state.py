"""The main window following the viewer: the position and value under the cursor or the mouse (status
bar), the DICOM header of the slice on screen, the active view following the keyboard focus, and the
layout: a single image fills the window until the next volume."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

__all__ = ["ViewState"]


class ViewState:
    """Keeps the status bar, the DICOM header dock and the layout of a
    :class:`~medvision.ui.app.main_window.MainWindow` in step with its viewer."""

    def __init__(self, window) -> None:
        self.window = window
        self.viewer = window.viewer
        self.views = window.views
        self._shown_frame = 0
        self._auto_maximised = False

    # ---- layout and focus ------------------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        """The layout the user chose (``1x1``, ``1x3``, ``2x2``), remembered in the settings."""
        settings = self.window.settings
        self._auto_maximised = False
        self.views.set_layout(name)
        settings.layout = name
        settings.maximised_pane = self.views.maximised

    def fit_layout(self) -> None:
        """A single image (radiograph, ultrasound frame, one slice) fills the window; the layout
        chosen comes back with the next volume."""
        volume, views = self.viewer.volume, self.views
        single = volume is not None and volume.shape[-3] == 1
        if single and views.layout_name != "1x1":
            views.toggle_maximised(self.viewer.grid.acquisition_plane)
            self._auto_maximised = True
        elif not single and self._auto_maximised:
            self._auto_maximised = False
            if views.layout_name == "1x1" and views.chosen_layout != "1x1":
                views.toggle_maximised(views.maximised)

    def focus_changed(self, _old, new) -> None:
        for plane, view in self.views.slice_views.items():
            if new is view:
                self.views.set_active(plane)

    # ---- following the viewer --------------------------------------------------------------------
    def note_frame(self) -> None:
        """A new volume: its frame is the one shown."""
        self._shown_frame = self.viewer.frame

    def cursor_changed(self, old) -> None:
        if self.viewer.grid is None:
            return
        if self.window.header_dock.isVisible() and self.viewer.slice_source(old) != self.viewer.slice_source():
            self.update_header()
        self.show_position(self.viewer.cursor, "cursor")

    def display_changed(self) -> None:
        if self.viewer.volume is not None and self.viewer.volume.is_4d and self.viewer.frame != self._shown_frame:
            self._shown_frame = self.viewer.frame  # a new 4D frame: its own images and values
            self.update_header()
            self.show_position(self.viewer.cursor, "cursor")

    # ---- the DICOM header ------------------------------------------------------------------------
    def header_visibility(self, visible: bool) -> None:
        w = self.window
        if not visible:
            return
        if w.header_dock.width() < 520 and not w.header_dock.isFloating():
            # wide enough for tag, name, VR and the start of the value
            w.resizeDocks([w.header_dock], [560], Qt.Orientation.Horizontal)
        self.update_header()

    def update_header(self) -> None:
        """The header dock (while shown) shows the header of the slice at the cursor."""
        w = self.window
        if not w.header_dock.isVisible():
            return
        source = self.viewer.slice_source()
        if source is None:
            w.header_view.set_source(None, title="no DICOM header (not a DICOM series)")
            return
        ref, frame, instance = source
        grid = self.viewer.grid
        plane = grid.acquisition_plane
        k = int(self.viewer.cursor[grid.slice_axis(plane)]) + 1
        parts = [f"Im {instance}" if instance is not None else "", f"{plane} {k}/{grid.n_slices(plane)}"]
        if self.viewer.volume.is_4d:
            parts.append(f"frame {self.viewer.frame + 1}/{self.viewer.volume.n_frames}")
        w.header_view.set_source(ref, frame, title=", ".join(p for p in parts if p))

    # ---- position and value --------------------------------------------------------------------
    def show_hover(self, ijk) -> None:
        if ijk is None:
            self.show_position(self.viewer.cursor, "cursor")
        else:
            self.show_position(ijk, "mouse")

    def show_position(self, ijk, what: str) -> None:
        """The status bar: voxel and patient position of ``ijk`` (the ``what``: cursor or mouse), its value."""
        w = self.window
        grid, volume = self.viewer.grid, self.viewer.volume
        if grid is None:
            w.position_label.setText("")
            w.value_label.setText("")
            return
        vx, vy, vz = grid.to_volume_index(np.asarray(ijk, dtype=int))
        lps = grid.world(ijk)
        where = (f"   LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm"
                 if volume.metadata.get("orientation_known", True) else "   (no patient position in the file)")
        w.position_label.setText(f"{what}: voxel ({vx}, {vy}, {vz}){where}")
        value = grid.value_at(np.asarray(ijk), self.viewer.frame)
        unit = " HU" if volume.metadata.get("modality") == "CT" and volume.metadata.get("rescale_applied") else ""
        if value is None:
            w.value_label.setText("")
        elif isinstance(value, float):
            w.value_label.setText(f"value {value:.4g}{unit}")
        else:
            w.value_label.setText(f"value {value}{unit}")
