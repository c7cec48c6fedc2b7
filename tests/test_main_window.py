"""The main window, offscreen: opening data, loading as a job, layouts, presets, settings, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from medvision.core.windowing import CT_PRESETS
from medvision.io import load, save
from medvision.ui.main_window import MainWindow
from medvision.ui.settings import Settings

from .conftest import SAMPLE_CT
from .dicomgen import write_series
from .qtutil import click

os.environ["MEDVISION_NO_DIALOGS"] = "1"


@pytest.fixture
def window(qtbot):
    win = MainWindow(Settings.load())
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def _open(qtbot, window, path, timeout=60_000) -> bool:
    with qtbot.waitSignal(window.load_finished, timeout=timeout) as sig:
        window.open_path(str(path))
    return sig.args[0]


def test_open_the_sample_ct_folder(qtbot, window):
    assert _open(qtbot, window, SAMPLE_CT)
    volume = window.viewer.volume
    assert volume.shape == (20, 512, 512) and volume.metadata["modality"] == "CT"
    assert "CT" in window.windowTitle()
    # the browser lists it and the views show it
    assert window.browser_dock.isVisible()
    axial = window.views.slice_views["axial"]
    assert axial.image.image.shape == (512, 512) and axial.image.image.std() > 10
    assert window.controls.preset_combo.currentText().startswith("DICOM")
    window.viewer.set_cursor([256, 256, 10])
    assert window.value_label.text().endswith(" HU")  # DICOM CT: Hounsfield units
    # recent files persist
    saved = json.loads(Settings.path().read_text())
    assert saved["recent"][0] == str(SAMPLE_CT)


def test_open_nifti_and_status_bar_shows_position_and_hu(qtbot, window, tmp_path):
    ct = load(SAMPLE_CT)
    path = tmp_path / "ct.nii.gz"
    save(ct, path)
    assert _open(qtbot, window, path)
    grid = window.viewer.grid
    window.viewer.set_cursor([100, 200, 5])
    x, y, z = grid.to_volume_index(np.array([100, 200, 5]))
    text = window.position_label.text()
    assert f"voxel ({x}, {y}, {z})" in text and "LPS" in text
    lps = grid.world([100, 200, 5])
    assert f"{lps[0]:.1f}" in text
    # a NIfTI file does not say it is CT, so the value is not called HU
    assert window.value_label.text() == f"value {int(ct.array[z, y, x])}"


def test_bad_input_gives_a_message_and_keeps_the_open_study(qtbot, window, tmp_path):
    assert _open(qtbot, window, SAMPLE_CT)
    before = window.viewer.volume
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + os.urandom(300))
    assert not _open(qtbot, window, garbage)
    assert "garbage.dcm" in window.last_error
    assert window.viewer.volume is before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not _open(qtbot, window, empty)
    assert "no DICOM image series" in window.last_error
    window.open_path(str(tmp_path / "missing"))
    assert "no such file or folder" in window.last_error
    assert window.viewer.volume is before


def test_cancel_a_load_restores_the_previous_volume(qtbot, window, tmp_path):
    assert _open(qtbot, window, SAMPLE_CT)
    before = window.viewer.volume
    write_series(tmp_path / "big", 300, rows=256, cols=256)
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as sig:
        window.open_path(str(tmp_path / "big"))
        window.cancel_job()
    assert sig.args == [False]
    assert window.viewer.volume is before
    assert "cancelled" in window.statusBar().currentMessage()


def test_first_slice_shows_while_the_series_loads(qtbot, window, tmp_path):
    write_series(tmp_path / "s", 120, rows=128, cols=128)
    seen = []
    window.viewer.volume_changed.connect(lambda: seen.append(window.viewer.volume.metadata.get("partial", False)))
    assert _open(qtbot, window, tmp_path / "s")
    assert seen[0] is True and seen[-1] is False  # a preview first, then the complete volume
    assert window.viewer.cursor[2] == 60


def test_layouts_maximise_and_persist(qtbot, window):
    views = window.views
    window.set_layout("1x3")
    assert views.visible_panes() == ["axial", "coronal", "sagittal"]
    window.set_layout("2x2")
    assert set(views.visible_panes()) == {"axial", "coronal", "sagittal", "3d"}
    views.toggle_maximised("coronal")
    assert views.visible_panes() == ["coronal"] and views.layout_name == "1x1"
    views.toggle_maximised("coronal")
    assert views.layout_name == "2x2"
    window.set_layout("1x3")
    window.close()
    assert Settings.load().layout == "1x3"
    again = MainWindow(Settings.load())
    qtbot.addWidget(again)
    assert again.views.layout_name == "1x3"
    again.close()


def test_double_click_in_a_view_maximises_it(qtbot, window):
    assert _open(qtbot, window, SAMPLE_CT)
    sag = window.views.slice_views["sagittal"]
    click(sag.viewport(), QPoint(100, 100), double=True)
    assert window.views.visible_panes() == ["sagittal"]
    click(sag.viewport(), QPoint(100, 100), double=True)
    assert len(window.views.visible_panes()) == 4


def test_window_presets_invert_and_user_presets(qtbot, window):
    assert _open(qtbot, window, SAMPLE_CT)
    controls = window.controls
    names = controls.preset_names()
    assert {"CT brain", "CT subdural", "CT stroke", "CT lung", "CT mediastinum", "CT abdomen", "CT liver",
            "CT bone"} <= set(names)
    controls.apply_preset("CT lung")
    assert window.viewer.window == CT_PRESETS["CT lung"]
    assert controls.preset_combo.currentText() == "CT lung"
    controls.action_invert.trigger()
    assert window.viewer.invert
    controls.add_user_preset("my soft tissue", CT_PRESETS["CT abdomen"].dragged(5, 20))
    assert "my soft tissue" in Settings.load().window_presets
    assert "my soft tissue" in controls.preset_names()
    controls.delete_preset("my soft tissue")
    assert "my soft tissue" not in Settings.load().window_presets


def test_mr_opens_with_an_automatic_window(qtbot, window, tmp_path):
    write_series(tmp_path / "mr", 10, modality="MR", slope=None, intercept=None)
    assert _open(qtbot, window, tmp_path / "mr")
    assert window.viewer.window_name == "automatic"
    assert "CT lung" not in window.controls.preset_names()


def test_cine_steps_through_slices(qtbot, window):
    assert _open(qtbot, window, SAMPLE_CT)
    window.views.set_active("axial")
    window.viewer.set_slice("axial", 0)
    window.controls.fps.setValue(50)
    window.controls.action_cine.setChecked(True)
    qtbot.waitUntil(lambda: window.viewer.cursor[2] >= 3, timeout=3000)
    window.controls.action_cine.setChecked(False)
    stopped = window.viewer.cursor[2]
    qtbot.wait(200)
    assert window.viewer.cursor[2] == stopped


def test_header_dock_follows_the_slice(qtbot, window):
    assert _open(qtbot, window, SAMPLE_CT)
    window.header_dock.show()
    qtbot.waitUntil(lambda: window.header_dock.isVisible())
    sources = window.viewer.volume.metadata["slice_sources"]
    window.viewer.set_slice("axial", 3)
    z = int(window.viewer.grid.to_volume_index(window.viewer.cursor)[2])
    assert window.header_view.current_ref() == sources[z][0]
    window.viewer.set_slice("axial", 7)
    z2 = int(window.viewer.grid.to_volume_index(window.viewer.cursor)[2])
    assert window.header_view.current_ref() == sources[z2][0] != sources[z][0]


def test_drop_a_folder_opens_it(qtbot, window):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(SAMPLE_CT))])
    event = QDropEvent(QPointF(300, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as sig:
        window.dropEvent(event)
    assert sig.args == [True]
    assert window.viewer.volume.shape == (20, 512, 512)


def test_4d_series_has_a_frame_slider(qtbot, window, tmp_path):
    write_series(tmp_path / "fmri", 6, frames=5, modality="MR", slope=None, intercept=None,
                 extra_per_slice=lambda k, t: {"TemporalPositionIdentifier": t + 1})
    assert _open(qtbot, window, tmp_path / "fmri")
    volume = window.viewer.volume
    assert volume.is_4d and volume.n_frames == 5
    slider = window.controls.frame_slider
    assert slider.maximum() == 4
    axial = window.views.slice_views["axial"]
    first = axial.image.image.copy()
    slider.setValue(3)
    assert window.viewer.frame == 3
    assert not np.array_equal(first, axial.image.image)


def test_settings_survive_a_corrupt_file(qtbot):
    Settings.path().parent.mkdir(parents=True, exist_ok=True)
    Settings.path().write_text('{"layout": "9x9", "recent": "nope", "cine_fps": "fast", "interpolate": true')
    s = Settings.load()
    assert s.layout == "2x2" and s.recent == [] and s.cine_fps == 10.0
    Settings.path().write_text('{"layout": "1x1", "recent": ["/a", 3], "cine_fps": 24, "window_presets": '
                               '{"x": [40, 400], "bad": [1, -5]}}')
    s = Settings.load()
    assert s.layout == "1x1" and s.recent == ["/a"] and s.cine_fps == 24 and s.window_presets == {"x": [40.0, 400.0]}


def test_3d_view_follows_the_volume_and_its_presets(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.view3d_ready, timeout=60_000):
        window.start_view3d()
    view = window.views.view3d
    assert type(view).__name__ == "View3D"
    assert _open(qtbot, window, SAMPLE_CT)
    qtbot.waitUntil(lambda: window.controls.preset3d_combo.count() > 0, timeout=30_000)
    combo = window.controls.preset3d_combo
    assert combo.currentText() == view.preset == "CT bone"
    combo.activated.emit(combo.findText("CT lung"))
    assert view.preset == "CT lung" and window.settings.preset_3d == "CT lung"
    write_series(tmp_path / "mr", 10, modality="MR", slope=None, intercept=None)
    assert _open(qtbot, window, tmp_path / "mr")
    qtbot.waitUntil(lambda: combo.findText("MR default") >= 0, timeout=30_000)
    assert combo.currentText() == view.preset
    # the cursor reaches the 3D view in patient coordinates
    window.viewer.set_cursor([1, 2, 3])
    np.testing.assert_allclose(view._cursor, window.viewer.grid.world([1, 2, 3]))


def test_opening_another_study_while_one_loads_replaces_it(qtbot, window, tmp_path):
    write_series(tmp_path / "big", 300, rows=256, cols=256)
    results = []
    window.load_finished.connect(results.append)
    window.open_path(str(tmp_path / "big"))
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(SAMPLE_CT))
    qtbot.wait(300)
    assert results == [True]  # the replaced job ends silently
    assert window.viewer.volume.shape == (20, 512, 512)
    assert not window.progress.isVisible()
