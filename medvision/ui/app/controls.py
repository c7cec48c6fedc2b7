"""The main window's toolbar and view actions: window presets, invert, interpolation, crosshair,
cine, 4D frame, 3D presets."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QInputDialog, QLabel, QSlider, QToolBar

from ...core.windowing import CT_PRESETS, Window, auto_window, initial_window

log = logging.getLogger(__name__)

AUTO = "Automatic (percentiles)"
DICOM = "DICOM (from the file)"


class ViewControls:
    """Builds and drives the toolbar of a :class:`~medvision.ui.app.main_window.MainWindow`."""

    def __init__(self, window) -> None:
        self.window = window
        self.viewer = window.viewer
        self.view3d = None
        self.cine_timer = QTimer(window)
        self.cine_timer.timeout.connect(self._cine_step)

    # ---- construction ---------------------------------------------------------------------
    def build(self) -> None:
        w, viewer = self.window, self.viewer
        bar = QToolBar("View", w)
        bar.setObjectName("toolbar-view")
        w.addToolBar(bar)
        self.toolbar = bar
        bar.addAction("Open folder", w.choose_folder)
        bar.addAction("Open file", w.choose_file)
        bar.addSeparator()
        for name in ("1x1", "1x3", "2x2"):
            bar.addAction(name, lambda n=name: w.set_layout(n)).setToolTip(f"Layout {name}")
        bar.addSeparator()
        bar.addWidget(QLabel(" Window "))
        self.preset_combo = QComboBox()
        self.preset_combo.setMinimumWidth(170)
        self.preset_combo.setToolTip("Window/level preset (right-drag in a view adjusts it)")
        self.preset_combo.activated.connect(lambda i: self.apply_preset(self.preset_combo.itemText(i)))
        bar.addWidget(self.preset_combo)

        self.action_invert = self._toggle("Invert", "I", viewer.set_invert)
        self.action_interpolate = self._toggle("Interpolate", "Shift+I", viewer.set_interpolate)
        self.action_crosshair = self._toggle("Crosshair", "C", self._set_crosshair)
        self.action_crosshair.setChecked(True)
        self.action_reset = QAction("Reset views", w)
        self.action_reset.setShortcut(QKeySequence("R"))
        self.action_reset.triggered.connect(self.reset_views)
        self.action_cine = self._toggle("Cine", "Space", self.set_cine)
        for act in (self.action_invert, self.action_interpolate, self.action_crosshair, self.action_reset,
                    self.action_cine):
            bar.addAction(act)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(1, 60)
        self.fps.setSuffix(" fps")
        self.fps.setValue(w.settings.cine_fps)
        self.fps.valueChanged.connect(lambda v: self.cine_timer.setInterval(int(1000 / v)))
        bar.addWidget(self.fps)
        self.frame_label = QLabel(" Frame ")
        self.frame_slider = QSlider(Qt.Orientation.Horizontal)
        self.frame_slider.setMaximumWidth(200)
        self.frame_slider.valueChanged.connect(viewer.set_frame)
        self._frame_actions = [bar.addWidget(self.frame_label), bar.addWidget(self.frame_slider)]
        bar.addSeparator()
        self.label_3d = QLabel(" 3D ")
        self.preset3d_combo = QComboBox()
        self.preset3d_combo.setMinimumWidth(150)
        self.preset3d_combo.setEnabled(False)
        self.preset3d_combo.activated.connect(lambda i: self._set_preset3d(self.preset3d_combo.itemText(i)))
        bar.addWidget(self.label_3d)
        bar.addWidget(self.preset3d_combo)
        viewer.window_changed.connect(self._sync_preset_combo)
        viewer.display_changed.connect(self._sync_toggles)
        self.volume_changed()

    def _toggle(self, text: str, shortcut: str, slot) -> QAction:
        act = QAction(text, self.window)
        act.setCheckable(True)
        act.setShortcut(QKeySequence(shortcut))
        act.toggled.connect(slot)
        return act

    def view_actions(self) -> list[QAction]:
        return [self.action_invert, self.action_interpolate, self.action_crosshair, self.action_reset,
                self.action_cine]

    def fill_window_menu(self, menu) -> None:
        self.window_menu = menu
        menu.aboutToShow.connect(self._fill_window_menu)

    def _fill_window_menu(self) -> None:
        menu = self.window_menu
        menu.clear()
        for name in self.preset_names():
            act = menu.addAction(name, lambda n=name: self.apply_preset(n))
            act.setCheckable(True)
            act.setChecked(name.startswith(self.viewer.window_name) and bool(self.viewer.window_name))
        menu.addSeparator()
        menu.addAction("Save current window as preset...", self.save_current_preset)
        user = self.window.settings.window_presets
        if user:
            sub = menu.addMenu("Delete preset")
            for name in user:
                sub.addAction(name, lambda n=name: self.delete_preset(n))

    # ---- window presets -------------------------------------------------------------------
    def preset_names(self) -> list[str]:
        volume = self.viewer.volume
        names = []
        if volume is not None and volume.metadata.get("window_width"):
            names.append(DICOM)
        if volume is not None and volume.metadata.get("modality") == "CT":
            names.extend(CT_PRESETS)
        names.append(AUTO)
        names.extend(self.window.settings.window_presets)
        return names

    def preset_window(self, name: str) -> Window | None:
        volume = self.viewer.volume
        if volume is None:
            return None
        if name in CT_PRESETS:
            return CT_PRESETS[name]
        if name == AUTO:
            return auto_window(self.viewer.frame_array())
        if name == DICOM:
            return initial_window(self.viewer.frame_array(), volume.metadata)[0]
        user = self.window.settings.window_presets.get(name)
        return Window(*user) if user else None

    def apply_preset(self, name: str) -> None:
        window = self.preset_window(name)
        if window is not None:
            label = {AUTO: "automatic", DICOM: "DICOM"}.get(name, name)
            self.viewer.set_window(window, label)

    def save_current_preset(self) -> None:
        name, ok = QInputDialog.getText(self.window, "Save window preset", "Name:")
        name = name.strip()
        if ok and name:
            self.add_user_preset(name, self.viewer.window)

    def add_user_preset(self, name: str, window: Window) -> None:
        self.window.settings.window_presets[name] = [window.center, window.width]
        self.window.settings.save()
        self.viewer.set_window(window, name)
        self._fill_preset_combo()

    def delete_preset(self, name: str) -> None:
        self.window.settings.window_presets.pop(name, None)
        self.window.settings.save()
        self._fill_preset_combo()

    def _fill_preset_combo(self) -> None:
        combo = self.preset_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(self.preset_names())
        combo.blockSignals(False)
        self._sync_preset_combo()

    def _sync_preset_combo(self) -> None:
        name = self.viewer.window_name
        full = {"automatic": AUTO, "DICOM": DICOM}.get(name, name)
        combo = self.preset_combo
        i = combo.findText(full)
        combo.blockSignals(True)
        if i < 0:
            if combo.count() and combo.itemText(combo.count() - 1) == "custom":
                combo.removeItem(combo.count() - 1)
            if self.viewer.volume is not None:
                combo.addItem("custom")
            i = combo.count() - 1
        combo.setCurrentIndex(i)
        combo.blockSignals(False)
        self.action_invert.blockSignals(True)
        self.action_invert.setChecked(self.viewer.invert)
        self.action_invert.blockSignals(False)

    def _sync_toggles(self) -> None:
        self.action_interpolate.blockSignals(True)
        self.action_interpolate.setChecked(self.viewer.interpolate)
        self.action_interpolate.blockSignals(False)
        self.frame_slider.blockSignals(True)
        self.frame_slider.setValue(self.viewer.frame)
        self.frame_slider.blockSignals(False)

    # ---- other toggles ----------------------------------------------------------------------
    def _set_crosshair(self, on: bool) -> None:
        for view in self.window.views.slice_views.values():
            view.show_crosshair = on
            if self.viewer.grid is not None:
                view.place_crosshair()

    def reset_views(self) -> None:
        for view in self.window.views.slice_views.values():
            view.reset_view()
        if self.view3d is not None:
            self.view3d.reset_camera()

    def set_cine(self, on: bool) -> None:
        if on and self.viewer.volume is not None:
            self.cine_timer.start(int(1000 / self.fps.value()))
        else:
            self.cine_timer.stop()
            if self.action_cine.isChecked():
                self.action_cine.blockSignals(True)
                self.action_cine.setChecked(False)
                self.action_cine.blockSignals(False)

    def _cine_step(self) -> None:
        viewer = self.viewer
        if viewer.volume is None:
            self.set_cine(False)
            return
        if viewer.volume.is_4d:  # cine through time (or diffusion directions)
            viewer.set_frame((viewer.frame + 1) % viewer.volume.n_frames)
            return
        plane = self.window.views.active
        axis = viewer.grid.slice_axis(plane)
        n = viewer.grid.n_slices(plane)
        viewer.set_slice(plane, (int(viewer.cursor[axis]) + 1) % n)

    # ---- volume and 3D ----------------------------------------------------------------------
    def volume_changed(self) -> None:
        volume = self.viewer.volume
        self._fill_preset_combo()
        self.preset_combo.setEnabled(volume is not None)
        is_4d = volume is not None and volume.is_4d
        for act in self._frame_actions:
            act.setVisible(is_4d)
        if is_4d:
            self.frame_slider.blockSignals(True)
            self.frame_slider.setRange(0, volume.n_frames - 1)
            self.frame_slider.setValue(self.viewer.frame)
            self.frame_slider.blockSignals(False)
        if volume is None or not self.viewer.kept_grid:
            self.set_cine(False)  # a new study does not start playing
        self._sync_toggles()
        self._update_view3d()

    def attach_view3d(self, view) -> None:
        self.view3d = view
        view.ready.connect(self._fill_presets3d)
        view.preset_changed.connect(lambda name: self.preset3d_combo.findText(name) >= 0
                                    and self.preset3d_combo.setCurrentText(name))
        self.viewer.cursor_changed.connect(lambda _old: self._cursor_3d())
        self.viewer.display_changed.connect(self._frame_3d)
        self._update_view3d()

    def _update_view3d(self) -> None:
        view, volume = self.view3d, self.viewer.volume
        if view is None:
            return
        if volume is not None and volume.metadata.get("partial"):
            return  # still loading: render once it is complete
        self._frame_shown_3d = self.viewer.frame
        view.set_volume(self.viewer.frame_volume())
        self._fill_presets3d()  # again on `ready` when a large volume is prepared on a worker
        self._cursor_3d()

    def _fill_presets3d(self) -> None:
        view = self.view3d
        names = view.presets() if self.viewer.volume is not None else []
        combo = self.preset3d_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        combo.setEnabled(bool(names))
        wanted = self.window.settings.preset_3d
        if wanted in names and view.preset != wanted:
            view.set_preset(wanted)
        if view.preset in names:
            combo.setCurrentText(view.preset)
        combo.blockSignals(False)

    def _frame_3d(self) -> None:
        if self.view3d is not None and self.viewer.volume is not None and \
                getattr(self, "_frame_shown_3d", 0) != self.viewer.frame and not self.cine_timer.isActive():
            self._update_view3d()

    def _cursor_3d(self) -> None:
        if self.view3d is not None:
            self.view3d.set_cursor(self.viewer.cursor_world())

    def _set_preset3d(self, name: str) -> None:
        if self.view3d is not None:
            self.view3d.set_preset(name)
            self.window.settings.preset_3d = name

    def save_settings(self) -> None:
        self.window.settings.cine_fps = float(self.fps.value())
