"""The 3D view (VTK volume rendering painted into a QWidget): offscreen (EGL) and under Xvfb."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt, QThreadPool
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from medvision.core.volume import Volume, affine_from_geometry
from tests.conftest import ROOT, SAMPLE_CT, x_env

CT_PRESETS = ["CT bone", "CT soft tissue", "CT lung", "CT angio (contrast)", "CT MIP"]


# ---- helpers ----------------------------------------------------------------------------------
def pixels(image: QImage) -> np.ndarray:
    """(h, w, 3) uint8 copy of a QImage."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def frame(view) -> np.ndarray:
    return pixels(view.render_image(overlay=False)).astype(np.int16)


def lit(arr: np.ndarray, level: int = 30) -> np.ndarray:
    return arr.max(axis=2) > level


def centroid(arr: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(lit(arr))
    assert len(xs) > 20, "nothing rendered"
    return float(xs.mean()), float(ys.mean())


@pytest.fixture(scope="module")
def ct() -> Volume:
    import medvision.io

    return medvision.io.load(SAMPLE_CT)


@pytest.fixture
def make_view(qtbot):
    from medvision.ui.views.view3d import View3D

    def make(width: int = 320, height: int = 240, **kwargs) -> View3D:
        view = View3D(**kwargs)
        qtbot.addWidget(view)
        view.still_budget_ms = None  # always full quality: frames comparable whatever the machine's load
        view.resize(width, height)
        assert view.available, view.error
        return view

    return make


def blob_volume(affine: np.ndarray, lps_centre: np.ndarray, shape=(40, 40, 40), modality="CT") -> Volume:
    """Air with a 'bone' ball of radius 7 mm at ``lps_centre`` (on the grid ``affine`` describes)."""
    vol = Volume(np.full(shape, -1000, np.int16), affine, metadata={"modality": modality})
    z, y, x = np.indices(shape)
    world = vol.index_to_world(np.stack([x, y, z], axis=-1).reshape(-1, 3)).reshape(*shape, 3)
    vol.array[np.linalg.norm(world - lps_centre, axis=-1) < 7] = 1000
    return vol


def mouse(view, kind: QEvent.Type, pos: tuple[float, float], button: Qt.MouseButton, buttons: Qt.MouseButton):
    point = QPointF(*pos)
    event = QMouseEvent(kind, point, view.mapToGlobal(point), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, event)
    return event


def drag(view, button: Qt.MouseButton, start: tuple[float, float], end: tuple[float, float], steps: int = 4,
         release: bool = True) -> None:
    none = Qt.MouseButton.NoButton
    mouse(view, QEvent.Type.MouseButtonPress, start, button, button)
    for i in range(1, steps + 1):
        f = i / steps
        pos = (start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1]))
        mouse(view, QEvent.Type.MouseMove, pos, none, button)
    if release:
        mouse(view, QEvent.Type.MouseButtonRelease, end, button, none)


def camera_state(view) -> dict[str, np.ndarray]:
    cam = view.camera
    return {k: np.array(getattr(cam, f"Get{k}")()) for k in ("Position", "FocalPoint", "ViewUp")}


# ---- import ---------------------------------------------------------------------------------
def test_vtk_is_imported_only_with_view3d_and_never_torch():
    code = textwrap.dedent("""
        import sys, time
        import medvision.ui
        assert not any(m.startswith(("vtk", "torch")) for m in sys.modules), "medvision.ui imported vtk/torch"
        t = time.perf_counter()
        import medvision.ui.views.view3d
        print(time.perf_counter() - t)
        assert "vtkmodules.vtkRenderingCore" in sys.modules
        assert "vtk" not in sys.modules, "the vtk umbrella module was imported"
        assert "torch" not in sys.modules
    """)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("DISPLAY", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split()[-1]) < 10
    assert "vtkEGLRenderWindow" not in proc.stderr  # no "falling back to EGL" warning


# ---- rendering the sample CT ----------------------------------------------------------------
def test_ct_sample_default_preset_renders_bones(make_view, ct):
    view = make_view()
    assert view.presets() == []
    messages = []
    view.status.connect(messages.append)
    view.set_volume(ct)
    assert view.presets() == CT_PRESETS
    assert view.preset == "CT bone"
    assert view.view_direction == "A"
    prepared = view.prepared
    assert prepared.array.dtype == np.int16  # no float copy
    assert prepared.array.shape == (20, 256, 256)  # 512 columns and rows block-averaged by 2
    assert any("512x512x20" in m and "256x256x20" in m for m in messages)
    img = frame(view)
    assert img.shape == (240, 320, 3)
    # from the front the 40 mm slab is a band across the middle, most of the 500 mm width
    rows = np.nonzero(lit(img).any(axis=1))[0]
    cols = np.nonzero(lit(img).any(axis=0))[0]
    assert 0.5 * 240 - 40 < rows.mean() < 0.5 * 240 + 40
    assert cols.max() - cols.min() > 0.5 * 320  # arm to arm
    assert rows.max() - rows.min() < 0.3 * 240
    # the overlay names the preset and the orientation: the patient's right on the screen's left
    with_overlay = pixels(view.render_image())
    assert np.abs(with_overlay.astype(int) - img).sum() > 0


def test_presets_give_different_images(make_view, ct):
    view = make_view()
    view.set_volume(ct)
    view.set_view("S")  # the slab seen from above: its whole cross-section
    images = {}
    for name in CT_PRESETS:
        view.set_preset(name)
        assert view.preset == name
        images[name] = frame(view)
        assert lit(images[name]).mean() > 0.03, f"{name} rendered (almost) nothing"
    for i, a in enumerate(CT_PRESETS):
        for b in CT_PRESETS[i + 1:]:
            shown = lit(images[a]) | lit(images[b])
            assert np.abs(images[a] - images[b])[shown].mean() > 15, f"{a} and {b} look the same"
    # bone shows less than soft tissue (which shows the whole body's outline)
    assert lit(images["CT bone"]).mean() < 0.8 * lit(images["CT soft tissue"]).mean()
    with pytest.raises(ValueError, match="MR default"):
        view.set_preset("MR default")


def test_anterior_and_posterior_views_are_mirror_images(make_view, ct):
    view = make_view(320, 320)
    view.set_volume(ct)
    view.set_preset("CT MIP")  # order-independent: from behind it is the mirror image
    view.set_parallel_projection(True)  # (a perspective view magnifies what is near the camera)
    view.set_view("A")
    front = frame(view).mean(axis=2)
    view.set_view("P")
    back = frame(view).mean(axis=2)
    profile_front = front.sum(axis=0)
    profile_back = back.sum(axis=0)
    mirrored = np.corrcoef(profile_front, profile_back[::-1])[0, 1]
    same = np.corrcoef(profile_front, profile_back)[0, 1]
    assert mirrored > 0.98  # measured 1.000
    assert same < 0.8  # measured 0.25: the slab is not left-right symmetric
    # the images themselves, not only the profiles
    assert np.abs(front - back[:, ::-1]).mean() < 0.5 * np.abs(front - back).mean()


@pytest.mark.parametrize("grid", ["LPS", "RAS", "RPS", "sagittal", "oblique"])
def test_volume_is_placed_in_lps_and_views_look_from_the_named_side(make_view, grid):
    """A ball on the patient's left, anterior and superior side shows where each view says."""
    spacing = [2.0, 2.0, 2.0]
    direction = {
        "LPS": np.eye(3),
        "RAS": np.diag([-1.0, -1.0, 1.0]),
        "RPS": np.diag([-1.0, 1.0, 1.0]),  # negative determinant
        "sagittal": np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float),  # x->P, y->I, z->L (det -1)
        "oblique": np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]]),
    }[grid]
    affine = affine_from_geometry(spacing, [0, 0, 0], direction)
    affine[:3, 3] = -affine[:3, :3] @ np.array([19.5, 19.5, 19.5])  # centre of the grid at LPS 0
    ball = np.array([20.0, -20.0, 20.0])  # left, anterior, superior
    vol = blob_volume(affine, ball)
    view = make_view(240, 240)
    view.set_volume(vol)
    prep = view.prepared
    assert np.linalg.det(prep.direction) > 0
    bounds = np.array(view.scene.volume.GetBounds()).reshape(3, 2)
    corners = vol.bounds_world()
    np.testing.assert_allclose(bounds[:, 0], corners.min(axis=0), atol=1e-3)
    np.testing.assert_allclose(bounds[:, 1], corners.max(axis=0), atol=1e-3)
    expected = {  # (ball right of centre?, ball above centre?)
        "A": (True, True),  # patient's left on the screen's right
        "P": (False, True),
        "L": (False, True),  # from the left: anterior on the screen's left
        "R": (True, True),
        "S": (False, True),  # from above, anterior up: the patient's left on the screen's left
        "I": (True, True),  # from below, anterior up: as an axial slice
    }
    for side, (right, up) in expected.items():
        view.set_view(side)
        x, y = centroid(frame(view))
        assert (x > 120) == right and abs(x - 120) > 15, (side, x, y)
        assert (y < 120) == up and abs(y - 120) > 15, (side, x, y)


def test_mouse_and_keys_move_the_camera(make_view, ct, qtbot):
    view = make_view(300, 240)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(ct)
    frame(view)
    start = camera_state(view)
    distance = view.camera.GetDistance()

    drag(view, Qt.MouseButton.LeftButton, (150, 120), (210, 90), release=False)
    rotated = camera_state(view)
    assert np.linalg.norm(rotated["Position"] - start["Position"]) > 10
    np.testing.assert_allclose(view.camera.GetDistance(), distance, rtol=1e-6)
    dop = np.array(view.camera.GetDirectionOfProjection())
    assert abs(dop @ rotated["ViewUp"]) < 1e-6  # view up kept orthogonal
    frame(view)  # while dragging: reduced quality
    assert view.last_frame_interactive
    assert view.scene.mapper.GetImageSampleDistance() > 1
    mouse(view, QEvent.Type.MouseButtonRelease, (210, 90), Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton)
    frame(view)
    assert not view.last_frame_interactive
    assert view.scene.mapper.GetImageSampleDistance() == 1

    drag(view, Qt.MouseButton.RightButton, (150, 150), (150, 100))  # drag up: closer
    assert view.camera.GetDistance() < 0.9 * distance
    closer = view.camera.GetDistance()
    wheel = QWheelEvent(QPointF(150, 120), view.mapToGlobal(QPointF(150, 120)), QPoint(0, 0), QPoint(0, -240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, wheel)
    assert view.camera.GetDistance() > 1.1 * closer

    before = camera_state(view)
    dop = np.array(view.camera.GetDirectionOfProjection())
    drag(view, Qt.MouseButton.MiddleButton, (150, 120), (100, 120))
    panned = camera_state(view)
    shift = panned["FocalPoint"] - before["FocalPoint"]
    assert np.linalg.norm(shift) > 5
    right, _ = view.screen_axes()
    assert shift @ right > 0  # scene moved left: the camera moved right
    np.testing.assert_allclose(view.camera.GetDirectionOfProjection(), dop, atol=1e-9)

    qtbot.keyClick(view, Qt.Key.Key_R)
    frame(view)
    for key, value in camera_state(view).items():
        np.testing.assert_allclose(value, start[key], atol=1e-6, err_msg=key)

    with qtbot.waitSignal(view.double_clicked, timeout=1000):
        event = mouse(view, QEvent.Type.MouseButtonDblClick, (150, 120), Qt.MouseButton.LeftButton,
                      Qt.MouseButton.LeftButton)
    assert event.isAccepted()
    assert not view.is_dragging


def test_quality_adapts_to_the_frame_time_budget(make_view, ct):
    from medvision.ui.views.vtk_support import DRAG_LEVELS, STILL_LEVELS, adapt_level

    assert adapt_level(STILL_LEVELS, 0, 900.0, 500.0) == 1
    assert adapt_level(STILL_LEVELS, 1, 300.0, 500.0) == 1  # 300 * 1.5 would not fit 0.8 * 500
    assert adapt_level(STILL_LEVELS, 1, 200.0, 500.0) == 0
    assert adapt_level(STILL_LEVELS, 4, 9000.0, 500.0) == 4  # coarsest already
    assert adapt_level(DRAG_LEVELS, 3, 10.0, None) == 0
    view = make_view(160, 120)
    view.set_volume(ct)
    mapper = view.scene.mapper
    view.still_budget_ms = 1e-6  # no frame fits: still frames get coarser, one level a frame
    for _ in range(len(STILL_LEVELS) + 1):
        view.rotate(3, 0)
        frame(view)
    assert mapper.GetImageSampleDistance() == STILL_LEVELS[-1][0]
    coarse = mapper.GetSampleDistance()
    view.still_budget_ms = 1e9
    for _ in range(len(STILL_LEVELS) + 1):
        view.rotate(3, 0)
        frame(view)
    assert mapper.GetImageSampleDistance() == 1.0
    assert mapper.GetSampleDistance() == pytest.approx(coarse / 2)


def test_cursor_is_drawn_at_its_world_point(make_view, ct):
    view = make_view(320, 320)
    view.set_volume(ct)
    view.set_view("S")
    before = frame(view)
    point = ct.index_to_world([300, 200, 10])
    view.set_cursor(point)
    with_cursor = frame(view)
    x, y = view.scene.world_to_display(point)
    changed = np.abs(with_cursor - before).max(axis=2) > 40
    ys, xs = np.nonzero(changed)
    assert len(xs) > 20
    assert abs(np.median(xs) - x) < 4 and abs(np.median(ys) - y) < 4
    # seen from above the S-I line is a dot; the L-R line (sagittal yellow) is horizontal
    row = with_cursor[round(y), :]
    yellow = (row[:, 0] > 180) & (row[:, 1] > 160) & (row[:, 2] < 130)
    assert yellow.sum() >= 10
    view.set_cursor(None)
    np.testing.assert_array_equal(frame(view), before)


def test_set_volume_none_clears(make_view, ct, qtbot):
    view = make_view()
    view.set_volume(ct)
    assert lit(frame(view)).any()
    with qtbot.waitSignal(view.ready, timeout=1000):
        view.set_volume(None)
    assert view.prepared is None
    assert view.presets() == []
    assert frame(view).max() == 0
    view.zoom(2.0)  # no volume: nothing to move, nothing raised
    view.set_cursor(np.zeros(3))
    assert frame(view).max() == 0


def test_single_slice_volume_renders(make_view):
    from pydicom.data import get_testdata_file

    import medvision.io

    vol = medvision.io.load(get_testdata_file("CT_small.dcm"))
    assert vol.shape[0] == 1
    view = make_view()
    view.set_volume(vol)
    assert view.prepared.array.shape[0] == 2  # one slice made a thin slab
    view.set_preset("CT soft tissue")
    view.set_view("S")
    assert lit(frame(view)).mean() > 0.05
    view.set_view("A")
    frame(view)  # edge-on: no crash


def test_mr_gets_percentile_presets_and_the_chosen_preset_is_kept(make_view, ct):
    from pydicom.data import get_testdata_file

    import medvision.io

    mr = medvision.io.load(get_testdata_file("emri_small.dcm"))
    assert mr.metadata.get("modality") == "MR"
    view = make_view()
    view.set_volume(ct)
    view.set_preset("CT lung")
    view.set_volume(mr)
    assert view.presets() == ["MR default", "MR MIP"]
    assert view.preset == "MR default"
    lo, hi = view.prepared.percentiles
    assert lo < hi
    view.set_view("S")
    default = frame(view)
    view.set_preset("MR MIP")
    mip = frame(view)
    assert lit(default).mean() > 0.05 and lit(mip).mean() > 0.05
    assert np.abs(default - mip).mean() > 2
    with pytest.raises(ValueError):
        view.set_preset("CT bone")
    view.set_volume(ct)
    assert view.preset == "CT lung"  # the caller's CT choice outlives the MR in between


def test_frames_of_one_series_keep_the_camera(make_view, ct):
    view = make_view()
    series = Volume(np.stack([ct.array, ct.array // 2]), ct.affine, metadata=dict(ct.metadata))
    view.set_volume(series)  # 4D: the first frame
    from medvision.ui.views.volume_prep import prepare_volume

    np.testing.assert_array_equal(view.prepared.array, prepare_volume(ct).array)
    first = frame(view)
    view.rotate(40, 0)
    turned = camera_state(view)
    view.set_volume(series.frame(1))  # the next frame of the same grid: same camera, other voxels
    after = frame(view)
    for key, value in camera_state(view).items():
        np.testing.assert_allclose(value, turned[key], atol=1e-9, err_msg=key)
    assert np.abs(after - first).mean() > 1
    other = Volume(ct.array[:10], ct.affine, metadata=dict(ct.metadata))  # another grid: the camera refits
    view.set_volume(other)
    frame(view)
    assert np.linalg.norm(camera_state(view)["Position"] - turned["Position"]) > 10


def test_float_volume_with_nans_on_a_sheared_grid(make_view):
    arr = np.random.default_rng(0).normal(100, 20, (30, 40, 50)).astype(np.float32)
    arr[:, :5] = np.nan
    affine = affine_from_geometry([1, 1, 2], [0, 0, 0], np.array([[1, 0, 0.3], [0, 1, 0], [0, 0, 0.95]]))
    view = make_view()
    view.set_volume(Volume(arr, affine, metadata={"modality": "PT"}))
    assert view.presets() == ["MR default", "MR MIP"]
    lo, hi = view.prepared.percentiles
    assert np.isfinite([lo, hi]).all() and lo < hi
    view.set_preset("MR MIP")
    assert lit(frame(view)).mean() > 0.05


def test_block_mean_downsampling_keeps_dtype_and_geometry():
    from medvision.ui.views.volume_prep import prepare_volume

    arr = np.arange(4 * 6 * 8, dtype=np.int16).reshape(4, 6, 8)
    affine = affine_from_geometry([0.5, 0.5, 1.0], [10, 20, 30])
    vol = Volume(arr, affine, metadata={"modality": "CT"})
    prep = prepare_volume(vol, max_dim=4)
    assert prep.factors == (2, 2, 1)
    assert prep.array.dtype == np.int16
    assert prep.array.shape == (4, 3, 4)
    assert prep.array[1, 2, 3] == np.floor(arr[1, 4:6, 6:8].mean() + 0.5)  # rounded half up
    # the block's centre in the world is where the prepared grid puts that sample
    np.testing.assert_allclose(prep.affine @ [3, 2, 1, 1], affine @ [6.5, 4.5, 1, 1])
    # a grid stored right-to-left and anterior-to-posterior is flipped to LPS without changing the world
    ras = Volume(arr, affine_from_geometry([1, 1, 1], [7, 5, 0], np.diag([-1.0, -1.0, 1.0])), metadata={})
    prep = prepare_volume(ras)
    np.testing.assert_allclose(prep.direction, np.eye(3))
    np.testing.assert_allclose(prep.affine @ [0, 0, 2, 1], ras.affine @ [7, 5, 2, 1])
    assert prep.array[2, 0, 0] == arr[2, 5, 7]


def test_large_volume_is_prepared_on_a_worker(make_view, qtbot):
    shape = (600, 512, 512)
    big = np.full(shape, -1000, np.int16)
    big[:, 200:300, 200:300] = 700  # a bone bar along z
    vol = Volume(big, affine_from_geometry([0.7, 0.7, 0.5], [0, 0, 0]), metadata={"modality": "CT"})
    view = make_view()
    start = time.perf_counter()
    view.set_volume(vol)
    returned = time.perf_counter() - start
    assert view.is_preparing
    assert returned < 0.2, f"set_volume blocked the GUI thread for {returned:.3f} s"
    with qtbot.waitSignal(view.ready, timeout=30000):
        pass
    prep = view.prepared
    assert prep.factors == (2, 2, 3)
    assert prep.array.shape == (200, 256, 256) and prep.array.dtype == np.int16
    assert lit(frame(view)).mean() > 0.02
    # a newer volume wins over one still being prepared
    small = Volume(np.full((8, 8, 8), 500, np.int16), np.eye(4), metadata={"modality": "CT"})
    view.set_volume(vol)
    view.set_volume(small)
    # until the cancelled preparation's worker has ended (superqt runs it on the global pool), then its
    # queued signals: it must not replace the newer volume
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=30000)
    qtbot.wait(50)
    assert view.prepared.source_shape == (8, 8, 8)


def test_no_opengl_shows_a_message_instead_of_crashing(qtbot, monkeypatch, ct):
    from medvision.ui.views import view3d

    def broken_scene():
        raise RuntimeError("EGL: no usable display")

    monkeypatch.setattr(view3d, "Scene", broken_scene)
    view = view3d.View3D()
    qtbot.addWidget(view)
    view.resize(300, 200)
    assert not view.available
    assert view.error == "3D rendering unavailable: EGL: no usable display"
    view.set_volume(ct)
    view.set_view("L")
    view.set_cursor(np.zeros(3))
    image = pixels(view.render_image())
    assert (image[..., 0] > 150).sum() > 50  # the message is painted (reddish text)


# ---- a real window under Xvfb ----------------------------------------------------------------
_REAL_WINDOW = """
import json, sys, time
sys.path.insert(0, {root!r})

def main():
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    import medvision.io
    from medvision.ui.views.view3d import View3D

    volume = medvision.io.load({sample!r})
    view = View3D()
    view.setWindowTitle("medvision 3D")
    view.resize(900, 600)
    view.show()
    view.set_volume(volume)
    end = time.monotonic() + 3
    while time.monotonic() < end:
        app.processEvents()
    times = {{}}
    for name, preset, side in (("view3d_ct_bone.png", "CT bone", "A"),
                               ("view3d_ct_soft_tissue.png", "CT soft tissue", "A")):
        view.set_preset(preset)
        view.set_view(side)
        image = view.render_image()
        times[name] = view.last_frame_ms
        assert image.save({out!r} + "/" + name)
    view.set_preset("CT bone")
    view.rotate(0, 90)  # as a downward drag: the camera rises 30 degrees above the front
    view.rotate(-90, 0)  # as a leftward drag: the camera moves 20 degrees towards the patient's left
    view.render_image().save({out!r} + "/view3d_ct_bone_oblique.png")
    print(json.dumps({{"window": view.scene.window_class, "visible": view.isVisible(), "times": times}}))

if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_real_window_under_xvfb(xdisplay, screenshot_dir, tmp_path):
    script = tmp_path / "view3d_window.py"
    script.write_text(_REAL_WINDOW.format(root=str(ROOT), sample=str(SAMPLE_CT), out=str(screenshot_dir)))
    names = ["view3d_ct_bone.png", "view3d_ct_soft_tissue.png", "view3d_ct_bone_oblique.png"]
    for name in names:
        (screenshot_dir / name).unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(script)], env=x_env(xdisplay), capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["visible"]
    assert report["window"] != "vtkEGLRenderWindow"  # GLX on the X display
    images = {}
    for name in names:
        image = QImage(str(screenshot_dir / name))
        assert not image.isNull(), name
        assert (image.width(), image.height()) == (900, 600)
        images[name] = pixels(image).astype(np.int16)
        assert lit(images[name]).mean() > 0.03, f"{name} is blank"
    assert np.abs(images["view3d_ct_bone.png"] - images["view3d_ct_soft_tissue.png"]).mean() > 2
