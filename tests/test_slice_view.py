"""Slice views and the shared viewer state, offscreen (pytest-qt), on the real sample CT."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QHBoxLayout, QWidget

from medvision.core.windowing import Window, WindowMapper
from medvision.io import load
from medvision.ui.views.slice_view import SliceView
from medvision.ui.views.viewer import Layer, Viewer

from .conftest import SAMPLE_CT
from .qtutil import click, drag, wheel


@pytest.fixture(scope="module")
def ct():
    return load(SAMPLE_CT)


@pytest.fixture
def views(qtbot, ct):
    viewer = Viewer()
    host = QWidget()
    layout = QHBoxLayout(host)
    out = {p: SliceView(viewer, p) for p in ("axial", "coronal", "sagittal")}
    for v in out.values():
        layout.addWidget(v)
    qtbot.addWidget(host)
    host.resize(1200, 420)
    host.show()
    qtbot.waitExposed(host)
    viewer.set_volume(ct)
    yield viewer, out
    host.close()  # keeps the host (and so its views) alive for the test


def _screen_pos(view: SliceView, row: float, col: float) -> QPoint:
    """Viewport pixel of an image pixel centre."""
    rh, cw = view.viewer.grid.pixel_size(view.plane)
    scene = view.vb.mapViewToScene(pg_point((col + 0.5) * cw, (row + 0.5) * rh))
    p = view.mapFromScene(scene)
    return QPoint(p.x(), p.y())


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(x, y)


def test_views_show_their_planes_windowed(views, ct):
    viewer, v = views
    assert viewer.window == Window(40, 300) and viewer.window_name == "DICOM"  # the file's own window
    mapper = WindowMapper()
    for plane, view in v.items():
        index = viewer.cursor[viewer.grid.slice_axis(plane)]
        expected = mapper.map(viewer.grid.image(plane, index), viewer.window)
        np.testing.assert_array_equal(view.image.image, expected)
    # axial view of this LPS-ordered CT is the stored slice itself
    assert v["axial"].image.image.shape == (512, 512)
    assert v["coronal"].image.image.shape == (20, 512)


def test_click_moves_the_linked_crosshair(views, qtbot):
    viewer, v = views
    axial = v["axial"]
    pos = _screen_pos(axial, row=100, col=300)
    click(axial.viewport(), pos)
    ijk = viewer.cursor
    assert abs(ijk[0] - 300) <= 1 and abs(ijk[1] - 100) <= 1
    # the sagittal view now shows display x = 300, the coronal view y = 100
    assert v["sagittal"]._shown_slice == ijk[0]
    assert v["coronal"]._shown_slice == ijk[1]
    _rh, cw = viewer.grid.pixel_size("coronal")
    assert v["coronal"].vline.value() == pytest.approx((ijk[0] + 0.5) * cw)
    # a click in the coronal view moves the axial slice (rows run from superior down)
    coronal = v["coronal"]
    click(coronal.viewport(), _screen_pos(coronal, row=3, col=200))
    assert viewer.cursor[2] == viewer.grid.n_slices("axial") - 1 - 3
    assert v["axial"]._shown_slice == viewer.cursor[2]


def test_wheel_and_keys_scroll_slices(views, qtbot):
    viewer, v = views
    axial = v["axial"]
    start = viewer.cursor[2]
    centre = QPoint(axial.viewport().width() // 2, axial.viewport().height() // 2)
    wheel(axial.viewport(), centre, 1)
    assert viewer.cursor[2] == start + 1
    wheel(axial.viewport(), centre, -3)
    assert viewer.cursor[2] == start - 2
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_Up)
    assert viewer.cursor[2] == start - 1
    qtbot.keyClick(axial, Qt.Key.Key_Home)
    assert viewer.cursor[2] == 19
    qtbot.keyClick(axial, Qt.Key.Key_End)
    assert viewer.cursor[2] == 0
    qtbot.keyClick(axial, Qt.Key.Key_PageUp)
    assert viewer.cursor[2] == 2  # a page is a tenth of the slices
    wheel(axial.viewport(), centre, -5)
    assert viewer.cursor[2] == 0  # clamped at the first slice


def test_next_slice_goes_superior_anterior_right_as_in_slicer(views, qtbot):
    viewer, v = views
    for plane, axis, sign in (("axial", 2, +1), ("coronal", 1, -1), ("sagittal", 0, -1)):
        view = v[plane]
        centre = QPoint(view.viewport().width() // 2, view.viewport().height() // 2)
        before = viewer.cursor_world()
        wheel(view.viewport(), centre, 1)  # wheel forward
        moved = viewer.cursor_world() - before
        # LPS: superior is +z, anterior is -y, right is -x
        assert moved[axis] * sign > 0 and np.count_nonzero(np.abs(moved) > 1e-6) == 1, plane
        view.setFocus()
        before = viewer.cursor_world()
        qtbot.keyClick(view, Qt.Key.Key_Right)
        assert (viewer.cursor_world() - before)[axis] * sign > 0, plane
        qtbot.keyClick(view, Qt.Key.Key_Left)
        assert np.allclose(viewer.cursor_world(), before), plane


def test_right_drag_sets_window_middle_drag_pans_ctrl_wheel_zooms(views):
    viewer, v = views
    axial = v["axial"]
    before = viewer.window
    c = QPoint(200, 200)
    drag(axial.viewport(), c, QPoint(260, 170), Qt.MouseButton.RightButton)
    assert viewer.window_name == "custom"
    assert viewer.window.width > before.width  # dragged right: wider
    assert viewer.window.center < before.center  # dragged up: lower level, brighter
    range_before = axial.vb.viewRange()
    drag(axial.viewport(), c, QPoint(250, 240), Qt.MouseButton.MiddleButton)
    range_after = axial.vb.viewRange()
    assert range_after[0][0] < range_before[0][0] - 5  # panned right: the view moved left
    wheel(axial.viewport(), c, 2, Qt.KeyboardModifier.ControlModifier)
    zoomed = axial.vb.viewRange()
    assert (zoomed[0][1] - zoomed[0][0]) < 0.9 * (range_after[0][1] - range_after[0][0])
    assert viewer.cursor[2] == 10  # ctrl+wheel zooms, it does not scroll
    axial.reset_view()
    reset = axial.vb.viewRange()
    assert reset[0][0] <= 0 and reset[0][1] >= 512 * viewer.grid.pixel_size("axial")[1]


def test_double_click_and_hover_signals(views, qtbot):
    _viewer, v = views
    sag = v["sagittal"]
    with qtbot.waitSignal(sag.double_clicked) as sig:
        click(sag.viewport(), QPoint(150, 150), double=True)
    assert sig.args == ["sagittal"]
    got = []
    v["axial"].hovered.connect(got.append)
    v["axial"]._on_mouse_moved(v["axial"].mapToScene(_screen_pos(v["axial"], 10, 20)))
    assert got and got[-1] is not None and abs(got[-1][0] - 20) <= 1 and abs(got[-1][1] - 10) <= 1
    v["axial"]._on_mouse_moved(v["axial"].mapToScene(QPoint(1, 1)))  # outside the image
    assert got[-1] is None


def test_overlay_invert_and_interpolation(views, ct):
    viewer, v = views
    labels = (ct.array > 200).astype(np.uint8)  # bone and contrast
    lut = np.zeros((256, 4), np.uint8)
    lut[1] = (255, 0, 0, 255)
    viewer.add_layer(Layer("bone", labels, lut, opacity=0.4))
    axial = v["axial"]
    overlay = axial.overlays[0]
    assert overlay.isVisible()
    np.testing.assert_array_equal(overlay.image, labels[viewer.cursor[2]])
    assert overlay.opacity() == pytest.approx(0.4)
    with pytest.raises(ValueError):
        viewer.add_layer(Layer("wrong", labels[:5], lut))
    grey = axial.image.image.copy()
    viewer.set_invert(True)
    np.testing.assert_array_equal(axial.image.image, 255 - grey)
    viewer.set_interpolate(True)
    assert axial.renderHints() & axial.renderHints().SmoothPixmapTransform
    viewer.remove_layer("bone")
    assert not overlay.isVisible()


def test_sagittal_acquisition_lands_in_the_same_views(qtbot, tmp_path, shared_data):
    """A sagittally acquired MR shows the same axial, coronal and sagittal images as its source."""
    from .dicomgen import write_volume_as_series

    source = load(shared_data / "volumes" / "mni152_t1_1mm.nii.gz")
    write_volume_as_series(source, tmp_path / "sag", "sagittal")
    sagittal = load(tmp_path / "sag")
    assert sagittal.orientation[2] in "RL"  # slices run left-right: a sagittal acquisition
    images = {}
    for name, vol in (("source", source), ("sagittal", sagittal)):
        viewer = Viewer()
        views = {p: SliceView(viewer, p) for p in ("axial", "coronal", "sagittal")}
        for view in views.values():
            qtbot.addWidget(view)
        viewer.set_volume(vol, window=Window(100, 200))
        viewer.set_cursor([98, 120, 90])
        images[name] = {p: view.image.image.copy() for p, view in views.items()}
        assert viewer.grid.edge_labels("sagittal") == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    for plane in ("axial", "coronal", "sagittal"):
        np.testing.assert_array_equal(images["source"][plane], images["sagittal"][plane])


def test_oblique_dicom_acquisition_goes_to_its_closest_planes(qtbot, tmp_path):
    """An axial series tilted 20 degrees about the left-right axis: shown as axial, labelled with its
    true directions, and flagged as oblique."""
    from .dicomgen import write_series

    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    write_series(tmp_path / "obl", 12, rows=32, cols=24, iop=(1, 0, 0, 0, c, s))
    vol = load(tmp_path / "obl")
    viewer = Viewer()
    view = SliceView(viewer, "axial")
    qtbot.addWidget(view)
    viewer.set_volume(vol)
    grid = viewer.grid
    assert grid.obliquity_deg == pytest.approx(20, abs=0.01)
    assert grid.n_slices("axial") == 12 and grid.image_shape("axial") == (32, 24)
    labels = grid.edge_labels("axial")
    assert labels["left"] == "R" and labels["right"] == "L"
    assert labels["top"] == "AI" and labels["bottom"] == "PS"
    # the voxel under the crosshair is where the status bar says it is
    viewer.set_cursor([5, 7, 3])
    x, y, z = grid.to_volume_index(viewer.cursor)
    np.testing.assert_allclose(vol.index_to_world([x, y, z]), grid.world(viewer.cursor), atol=1e-6)


def test_overlay_names_the_philips_value_scale_and_the_b_value(qtbot, tmp_path):
    from .dicomgen import write_series

    def extra(k, t):
        return {"Manufacturer": "Philips", "DiffusionBValue": [0.0, 1000.0][t],
                "DiffusionGradientOrientation": [0.0, 0.0, 0.0] if t == 0 else [1.0, 0.0, 0.0]}

    paths = write_series(tmp_path / "p", 3, frames=2, modality="MR", slope=2.5, intercept=0.0, extra_per_slice=extra)
    import pydicom

    for p in paths:
        ds = pydicom.dcmread(p)
        ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", 0.5)
        ds.save_as(p)
    viewer = Viewer()
    view = SliceView(viewer, "axial")
    qtbot.addWidget(view)
    for mode, text in (("precise", "Philips precise values (FP)"), ("display", "Philips display values (DV)")):
        viewer.set_volume(load(tmp_path / "p", philips_scaling=mode))
        viewer.set_frame(1)
        lines = view.info_lines()
        assert text in lines
        assert "Frame 2/2  b=1000" in lines
