"""The main window, offscreen: opening data, loading as a job, layouts, presets, settings, errors."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pydicom
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from medvision.core.jobs import Progress
from medvision.core.volume import Volume
from medvision.core.windowing import CT_PRESETS
from medvision.io import load, save
from medvision.ui.app.main_window import MainWindow
from medvision.ui.app.settings import Settings

from .conftest import SAMPLE_CT
from .dicomgen import write_series
from .qtutil import click, open_and_wait

os.environ["MEDVISION_NO_DIALOGS"] = "1"


def test_open_the_sample_ct_folder(qtbot, window):
    assert open_and_wait(qtbot, window, SAMPLE_CT)
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
    assert open_and_wait(qtbot, window, path)
    grid = window.viewer.grid
    window.viewer.set_cursor([100, 200, 5])
    x, y, z = grid.to_volume_index(np.array([100, 200, 5]))
    text = window.position_label.text()
    assert f"voxel ({x}, {y}, {z})" in text and "LPS" in text
    lps = grid.world([100, 200, 5])
    assert f"{lps[0]:.1f}" in text
    # a NIfTI file does not say it is CT, but its values are Hounsfield units: it opens as CT
    assert window.value_label.text() == f"value {int(ct.array[z, y, x])} HU"
    presets = [window.controls.preset_combo.itemText(i) for i in range(window.controls.preset_combo.count())]
    assert "CT brain" in presets and "CT lung" in presets
    assert window.viewer.window_name == "CT abdomen"
    # an MR-like image in NIfTI (background 0, tissue in arbitrary units) is not taken for CT
    mr = np.zeros((12, 64, 64), np.int16)
    mr[2:10, 8:56, 8:56] = np.random.default_rng(0).integers(80, 700, (8, 48, 48))
    save(Volume(mr, np.diag([1.2, 1.2, 3.0, 1.0])), tmp_path / "mr.nii.gz")
    assert open_and_wait(qtbot, window, tmp_path / "mr.nii.gz")
    assert window.viewer.volume.metadata.get("modality") is None
    assert not window.value_label.text().endswith("HU") and window.viewer.window_name == "automatic"


def test_bad_input_gives_a_message_and_keeps_the_open_study(qtbot, window, tmp_path):
    assert open_and_wait(qtbot, window, SAMPLE_CT)
    before = window.viewer.volume
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + os.urandom(300))
    assert not open_and_wait(qtbot, window, garbage)
    assert "garbage.dcm" in window.last_error
    assert window.viewer.volume is before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not open_and_wait(qtbot, window, empty)
    assert "no DICOM image series" in window.last_error
    window.open_path(str(tmp_path / "missing"))
    assert "no such file or folder" in window.last_error
    assert window.viewer.volume is before


def test_cancel_a_load_restores_the_previous_volume(qtbot, window, tmp_path):
    assert open_and_wait(qtbot, window, SAMPLE_CT)
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
    assert open_and_wait(qtbot, window, tmp_path / "s")
    assert seen[0] is True and seen[-1] is False  # a preview first, then the complete volume
    assert window.viewer.cursor[2] == 60


def _held_load(volume, release):
    """A load job that shows ``volume`` half-decoded, then waits for ``release`` (a threading.Event)."""
    preview = Volume(np.zeros_like(volume.array), volume.affine, None, dict(volume.metadata, partial=True))
    preview.array[volume.shape[0] // 2] = volume.array[volume.shape[0] // 2]
    yield Progress("decoding", 1, volume.shape[0], preview=preview)
    while not release.wait(0.02):
        yield Progress("decoding", 1, volume.shape[0])
    return [volume]


def test_cancelling_a_load_that_replaced_another_restores_the_last_complete_volume(qtbot, window):
    assert open_and_wait(qtbot, window, SAMPLE_CT)
    complete = window.viewer.volume
    other = Volume(complete.array[:, ::2, ::2].copy(), complete.affine @ np.diag([2, 2, 1, 1]), None,
                   {"modality": "CT"})
    release = threading.Event()
    try:
        window.loading.start_load(_held_load(other, release), "first")
        qtbot.waitUntil(lambda: window.viewer.volume.metadata.get("partial", False))
        # the user opens something else while the first is still loading, then cancels it
        window.loading.start_load(_held_load(other, release), "second")
        qtbot.waitUntil(lambda: window.viewer.volume.metadata.get("partial", False)
                        and window.viewer.volume is not complete)
        with qtbot.waitSignal(window.load_finished, timeout=10_000) as sig:
            window.cancel_job()
        assert sig.args == [False]
        assert window.viewer.volume is complete  # not the first load's half-decoded preview
        assert window.viewer.window_name == "DICOM"
    finally:
        release.set()


def test_a_preview_gets_a_window_from_its_decoded_slices_and_values_update(qtbot, window, tmp_path):
    mr = np.zeros((30, 64, 64), np.int16)
    mr[:, 8:56, 8:56] = np.random.default_rng(1).integers(200, 900, (30, 48, 48))
    volume = Volume(mr, np.diag([1.0, 1.0, 2.0, 1.0]), None, {"modality": "MR"})
    release = threading.Event()
    try:
        window.loading.start_load(_held_load(volume, release), "mr")
        qtbot.waitUntil(lambda: window.viewer.volume is not None and window.viewer.volume.metadata.get("partial"))
        win = window.viewer.window
        assert window.viewer.window_name == "automatic" and 300 < win.center < 800 and win.width > 300
        assert not window.warning_button.isVisible()
        with qtbot.waitSignal(window.load_finished, timeout=10_000):
            release.set()
        z = window.viewer.grid.to_volume_index(window.viewer.cursor)
        assert window.value_label.text() == f"value {mr[z[2], z[1], z[0]]}"
    finally:
        release.set()


def test_several_dropped_dicom_files_open_as_one_set_and_one_file_opens_its_series(qtbot, window, tmp_path):
    paths = sorted(write_series(tmp_path / "s", 12, shuffle=False))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths[3:8]])
    event = QDropEvent(QPointF(300, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as sig:
        window.dropEvent(event)
    assert sig.args == [True] and window.viewer.volume.shape[0] == 5  # the five files dropped
    # one file of a series: the series it belongs to opens, from the files beside it
    for k, other in enumerate(write_series(tmp_path / "o", 4, rows=16, cols=16)):
        other.rename(tmp_path / "s" / f"other{k}.dcm")  # another series in the same folder
    assert open_and_wait(qtbot, window, paths[0])
    assert window.viewer.volume.shape == (12, 24, 20)
    # its instance number is shown with the slice and in the header's title
    window.header_dock.show()
    qtbot.waitUntil(window.header_dock.isVisible)
    ref, _frame, instance = window.viewer.slice_source()
    assert instance == pydicom.dcmread(ref.path, stop_before_pixels=True).InstanceNumber
    assert f"Im {instance}" in window.header_view.title_label.text()


def test_a_series_whose_indexed_copy_was_deleted_loads_from_the_copy_left(qtbot, window, tmp_path):
    import shutil

    write_series(tmp_path / "a" / "s", 10)
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same study copied to another folder
    assert open_and_wait(qtbot, window, tmp_path)
    [series] = window.index.contents().all_series(images_only=True)
    assert len(series.files) == 20  # both copies, as listed before one goes
    shutil.rmtree(tmp_path / "a")  # one copy removed after it was indexed and listed
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as sig:
        window.open_series(series)
    assert sig.args == [True] and window.viewer.volume.shape[0] == 10
    assert not window.viewer.volume.metadata.get("warnings")  # nothing "damaged": the gone files are skipped
    [series] = window.index.contents().all_series(images_only=True)
    assert len(series.files) == 10  # and forgotten
    shutil.rmtree(tmp_path / "b")
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as sig:
        window.open_series(series)
    assert sig.args == [False] and "gone" in window.last_error


def test_irregular_spacing_warning_stays_and_offers_resampling(qtbot, window, tmp_path):
    positions = [np.array([0.0, 0.0, z]) for z in (0, 2, 4, 6, 10, 12, 14, 16)]
    write_series(tmp_path / "gap", 8, positions=positions)
    assert open_and_wait(qtbot, window, tmp_path / "gap")
    assert window.viewer.volume.shape[0] == 8
    assert window.warning_button.isVisibleTo(window) and "1 warning" in window.warning_button.text()
    assert "non-uniform slice spacing" in window.warning_button.toolTip()
    window.show_warnings()
    box = window.last_warning_box
    resample = next(b for b in box.buttons() if b.text() == "Resample to regular spacing")
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as sig:
        resample.click()
    assert sig.args == [True]
    volume = window.viewer.volume
    assert volume.shape[0] == 9 and abs(volume.spacing[2] - 2.0) < 1e-6  # 0..16 mm every 2 mm
    assert "resampled" in window.warning_button.toolTip()


def test_a_single_image_without_geometry_fills_the_window_without_invented_labels(qtbot, window, tmp_path):
    window.set_layout("2x2")
    # a secondary-capture-like image: no orientation, no position, no pixel spacing
    path = write_series(tmp_path / "sc", 1, rows=40, cols=50, modality="MR", slope=None, intercept=None)[0]
    ds = pydicom.dcmread(path)
    for keyword in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        delattr(ds, keyword)
    ds.save_as(path)
    assert open_and_wait(qtbot, window, path)
    meta = window.viewer.volume.metadata
    assert meta["orientation_known"] is False and meta["spacing_known"] is False
    assert window.views.layout_name == "1x1" and window.views.visible_panes() == ["axial"]
    assert "no patient position" in window.position_label.text() and "LPS" not in window.position_label.text()
    window.views.slice_views["axial"].grab()  # paints without labels or ruler
    assert window.views.chosen_layout == "2x2"
    # the next volume gets the layout back
    assert open_and_wait(qtbot, window, SAMPLE_CT)
    assert window.views.layout_name == "2x2"


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
    views.toggle_maximised("sagittal")  # closed with a view maximised: the layout under it is kept
    window.close()
    assert Settings.load().layout == "1x3"
    again = MainWindow(Settings.load())
    qtbot.addWidget(again)
    assert again.views.layout_name == "1x3"
    again.close()


def test_double_click_in_a_view_maximises_it(qtbot, window):
    assert open_and_wait(qtbot, window, SAMPLE_CT)
    sag = window.views.slice_views["sagittal"]
    click(sag.viewport(), QPoint(100, 100), double=True)
    assert window.views.visible_panes() == ["sagittal"]
    click(sag.viewport(), QPoint(100, 100), double=True)
    assert len(window.views.visible_panes()) == 4


def test_window_presets_invert_and_user_presets(qtbot, window):
    assert open_and_wait(qtbot, window, SAMPLE_CT)
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
    assert open_and_wait(qtbot, window, tmp_path / "mr")
    assert window.viewer.window_name == "automatic"
    assert "CT lung" not in window.controls.preset_names()


def test_cine_steps_through_slices(qtbot, window):
    assert open_and_wait(qtbot, window, SAMPLE_CT)
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
    assert open_and_wait(qtbot, window, SAMPLE_CT)
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
    assert open_and_wait(qtbot, window, tmp_path / "fmri")
    volume = window.viewer.volume
    assert volume.is_4d and volume.n_frames == 5
    slider = window.controls.frame_slider
    assert slider.maximum() == 4
    axial = window.views.slice_views["axial"]
    first = axial.image.image.copy()
    window.header_dock.show()
    qtbot.waitUntil(window.header_dock.isVisible)
    ref0 = window.header_view.current_ref()
    slider.setValue(3)
    assert window.viewer.frame == 3
    assert not np.array_equal(first, axial.image.image)
    # the header is the one of the image in this frame
    ref3 = window.header_view.current_ref()
    assert ref3 != ref0 and pydicom.dcmread(ref3.path).TemporalPositionIdentifier == 4
    assert "frame 4/5" in window.header_view.title_label.text()


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
    assert open_and_wait(qtbot, window, SAMPLE_CT)
    qtbot.waitUntil(lambda: window.controls.preset3d_combo.count() > 0, timeout=30_000)
    combo = window.controls.preset3d_combo
    assert combo.currentText() == view.preset == "CT bone"
    combo.activated.emit(combo.findText("CT lung"))
    assert view.preset == "CT lung" and window.settings.preset_3d == "CT lung"
    write_series(tmp_path / "mr", 10, modality="MR", slope=None, intercept=None)
    assert open_and_wait(qtbot, window, tmp_path / "mr")
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
    assert not window.job_status.isVisible()


def test_a_new_window_fits_a_small_screen(qtbot, monkeypatch):
    """Without a saved geometry the window opens at 1500 x 950, or within the screen's free area when
    that is smaller (a 1366 x 768 laptop): no dock or status bar off the screen."""
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import QApplication

    from medvision.ui.app.main_window import MainWindow
    from medvision.ui.app.settings import Settings

    screen = QApplication.primaryScreen()
    for free in (QRect(0, 0, 1366, 728), QRect(0, 0, 2560, 1400)):
        monkeypatch.setattr(type(screen), "availableGeometry", lambda _self, free=free: free)
        win = MainWindow(Settings())
        qtbot.addWidget(win)
        size = win.size()
        assert (size.width(), size.height()) == (min(1500, free.width()), min(950, free.height()))
        win.annotating.annotation.discard_recovery()
        win.close()
