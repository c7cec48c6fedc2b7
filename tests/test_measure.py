"""Measurements in the slice views (offscreen): ruler, angle, ellipse and rectangle ROIs driven by
real mouse events; true millimetres across thick slices; statistics equal numpy's on the same
pixels; shown only on their slice; cleared with another volume; Escape and Delete; a screenshot."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QKeyEvent, QMouseEvent, QPainter
from PySide6.QtWidgets import QApplication

from medvision.core.measure import ROW_HEADER
from medvision.core.volume import Volume
from medvision.io import save
from medvision.ui.annotating.measure import (
    AngleTool,
    EllipseTool,
    Measurements,
    RectangleTool,
    RulerTool,
    measurement_tools,
)

from .qtutil import click, drag, open_and_wait, view_point

os.environ["MEDVISION_NO_DIALOGS"] = "1"


@pytest.fixture
def measuring(ct):
    """The window, its Measurements and the tools by name."""
    measurements = Measurements(ct.viewer)
    tools = {t.name: t for t in measurement_tools(ct.annotating.annotation, measurements)}
    return ct, measurements, tools


def _key(widget, key) -> None:
    for kind in (QKeyEvent.Type.KeyPress, QKeyEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier))
    QApplication.processEvents()


def _move(widget, pos: QPoint) -> None:
    """The mouse moving with no button down (hover)."""
    event = QMouseEvent(QMouseEvent.Type.MouseMove, QPointF(pos), QPointF(widget.mapToGlobal(pos)),
                        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


def _drawn_pixels(measurements, view) -> int:
    """How many pixels the measurements paint in ``view`` (on a transparent image of its size)."""
    image = QImage(view.viewport().size(), QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    measurements.paint(view, painter)
    painter.end()
    bits = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return int(np.count_nonzero(bits[:, : image.width() * 4].reshape(image.height(), -1, 4)[..., 3]))


def _show(window, plane: str):
    window.views.set_layout("1x1", plane)
    QApplication.processEvents()
    view = window.views.slice_views[plane]
    view.reset_view()
    QApplication.processEvents()
    return view


def test_ruler_measures_millimetres_by_drag_and_by_clicks(measuring):
    window, measurements, tools = measuring
    view, grid = window.views.slice_views["axial"], window.viewer.grid
    messages = []
    window.annotating.annotation.message.connect(messages.append)
    view.tool = tools["ruler"]
    assert isinstance(view.tool, RulerTool)
    z = int(window.viewer.cursor[2])
    expected = 100 * grid.spacing[0]
    drag(view.viewport(), view_point(view, [150, 250, z]), view_point(view, [250, 250, z]))
    assert len(measurements.items) == 1
    m = measurements.items[0]
    assert (m.kind, m.plane, m.slice) == ("ruler", "axial", z)
    assert m.points[0][2] == m.points[1][2] == z
    assert np.allclose(m.points[0], [150, 250, z], atol=0.75) and np.allclose(m.points[1], [250, 250, z], atol=0.75)
    assert m.value == pytest.approx(expected, rel=0.01)
    assert m.lines() == [f"{m.value:.1f} mm"]
    assert messages and messages[-1].startswith("Ruler: ")
    # click one end, then the other
    click(view.viewport(), view_point(view, [200, 100, z]))
    assert tools["ruler"].in_progress and len(measurements.items) == 1
    click(view.viewport(), view_point(view, [200, 200, z]))
    assert not tools["ruler"].in_progress and len(measurements.items) == 2
    assert measurements.items[1].value == pytest.approx(100 * grid.spacing[1], rel=0.01)
    # the crosshair did not move: the tool took the clicks
    assert window.viewer.cursor[0] == grid.shape_xyz[0] // 2


def test_ruler_across_thick_slices_in_the_coronal_view(measuring):
    window, measurements, tools = measuring
    view, grid = _show(window, "coronal"), window.viewer.grid
    assert grid.spacing[2] == pytest.approx(2.0) and grid.spacing[0] < 1.0  # thick slices, fine pixels
    view.zoom(3)  # 2 mm slices are 3 screen pixels unzoomed: too coarse for 1% with whole-pixel mouse events
    view.tool = tools["ruler"]
    y = int(window.viewer.cursor[1])
    # straight across 13 slices: 26 mm (not 13 pixels of 0.98 mm)
    drag(view.viewport(), view_point(view, [256, y, 3]), view_point(view, [256, y, 16]))
    m = measurements.items[-1]
    assert (m.plane, m.slice) == ("coronal", y)
    assert m.points[0][1] == m.points[1][1] == y
    assert m.value == pytest.approx(13 * grid.spacing[2], rel=0.01)
    # obliquely: 80 pixels across and 13 slices down
    drag(view.viewport(), view_point(view, [216, y, 3]), view_point(view, [296, y, 16]))
    m = measurements.items[-1]
    expected = math.hypot(80 * grid.spacing[0], 13 * grid.spacing[2])
    assert m.value == pytest.approx(expected, rel=0.01)
    # the value is the patient-space distance between its own points
    assert m.value == pytest.approx(float(np.linalg.norm(grid.world(m.points[1]) - grid.world(m.points[0]))))


def test_angle_by_clicks_and_by_drag_then_click(measuring):
    window, measurements, tools = measuring
    view = window.views.slice_views["axial"]
    view.tool = tools["angle"]
    assert isinstance(view.tool, AngleTool)
    z = int(window.viewer.cursor[2])
    for ijk in ([400, 250, z], [250, 250, z], [250, 400, z]):
        click(view.viewport(), view_point(view, ijk))
    assert len(measurements.items) == 1
    m = measurements.items[0]
    assert m.kind == "angle" and len(m.points) == 3
    assert m.value == pytest.approx(90.0, abs=0.5)
    assert m.lines() == [f"{m.value:.1f}\N{DEGREE SIGN}"]
    # drag the first arm (end to vertex), then click the other end: 45 degrees
    drag(view.viewport(), view_point(view, [300, 150, z]), view_point(view, [150, 150, z]))
    assert tools["angle"].in_progress and len(tools["angle"].points) == 2
    click(view.viewport(), view_point(view, [300, 300, z]))
    assert len(measurements.items) == 2
    assert measurements.items[1].value == pytest.approx(45.0, abs=0.5)


def _drag_roi(measuring, kind: str, cls, start, end):
    """Drag a ``kind`` ROI on the axial view from voxel ``start`` to ``end`` (x, y) of the cursor's
    slice; returns the new measurement, the grid and the slice."""
    window, measurements, tools = measuring
    view, grid = window.views.slice_views["axial"], window.viewer.grid
    view.tool = tools[kind]
    assert isinstance(view.tool, cls)
    z = int(window.viewer.cursor[2])
    drag(view.viewport(), view_point(view, [*start, z]), view_point(view, [*end, z]))
    return measurements.items[-1], grid, z


def test_rectangle_statistics_equal_numpy_on_the_same_pixels(measuring):
    window = measuring[0]
    m, grid, z = _drag_roi(measuring, "rectangle", RectangleTool, (200, 220), (260, 280))
    assert m.kind == "rectangle" and m.unit == "HU"
    # the pixels whose centres lie inside (axial: screen rows are y, columns x)
    (x0, x1), (y0, y1) = sorted(p[0] for p in m.points), sorted(p[1] for p in m.points)
    image = grid.image("axial", z, window.viewer.frame_array())
    inside = image[math.ceil(y0):math.floor(y1) + 1, math.ceil(x0):math.floor(x1) + 1].astype(float)
    assert 59 * 59 <= inside.size <= 62 * 62
    v = m.values
    assert v["pixels"] == inside.size
    assert v["mean"] == pytest.approx(inside.mean())
    assert v["std"] == pytest.approx(inside.std(ddof=1))
    assert v["min"] == inside.min() and v["max"] == inside.max()
    assert v["area_mm2"] == pytest.approx(60 * 60 * grid.spacing[0] * grid.spacing[1], rel=0.03)
    lines = m.lines()
    assert lines[0].startswith("area ") and lines[0].endswith("mm\N{SUPERSCRIPT TWO}")
    assert lines[1].endswith(" HU") and "\N{PLUS-MINUS SIGN}" in lines[1]


def test_ellipse_area_and_pixels(measuring):
    window = measuring[0]
    m, grid, z = _drag_roi(measuring, "ellipse", EllipseTool, (150, 200), (350, 320))
    a, b = 100 * grid.spacing[0], 60 * grid.spacing[1]
    assert m.value == pytest.approx(math.pi * a * b, rel=0.03)
    # the pixels inside cover about as much
    assert m.values["pixels"] * grid.spacing[0] * grid.spacing[1] == pytest.approx(math.pi * a * b, rel=0.03)
    # and their statistics are numpy's over the pixel centres inside the ellipse
    (x0, x1), (y0, y1) = sorted(p[0] for p in m.points), sorted(p[1] for p in m.points)
    yy, xx = np.mgrid[0:grid.shape_xyz[1], 0:grid.shape_xyz[0]]
    mask = (((xx - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((yy - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2) <= 1
    values = grid.image("axial", z, window.viewer.frame_array())[mask].astype(float)
    assert m.values["pixels"] == values.size
    assert m.values["mean"] == pytest.approx(values.mean())
    assert m.values["min"] == values.min() and m.values["max"] == values.max()


def test_statistics_follow_the_voxels_and_units(measuring):
    window, measurements, _tools = measuring
    viewer, grid = window.viewer, window.viewer.grid
    z = int(viewer.cursor[2])
    m = measurements.add("rectangle", "axial", z, [np.array([10.0, 20, z]), np.array([19.0, 29, z])])
    assert m.values["pixels"] == 100 and m.value == pytest.approx(81 * grid.spacing[0] * grid.spacing[1])
    # voxels change in place (a volume still loading): the statistics follow
    image = grid.image("axial", z, viewer.frame_array())
    image[20:30, 10:20] = 7
    viewer.notify_data_updated()
    assert m.values["mean"] == 7 and m.values["std"] == 0 and m.values["min"] == m.values["max"] == 7
    assert m.lines()[1] == "7.0 \N{PLUS-MINUS SIGN} 0.0 (7..7) HU"
    # an ROI off the image has no pixels; a file without a pixel size measures in pixels
    off = measurements.measure("ellipse", "axial", z, [np.array([-40.0, -40, z]), np.array([-10.0, -10, z])])
    assert off.values["pixels"] == 0 and off.values["mean"] is None and off.lines()[1] == "no pixel inside"
    viewer.volume.metadata["spacing_known"] = False
    ruler = measurements.measure("ruler", "axial", z, [np.array([0.0, 0, z]), np.array([3.0, 4, z])])
    assert ruler.lines() == [f"{5 * grid.spacing[0]:.1f} px"]
    with pytest.raises(ValueError):
        measurements.measure("circle", "axial", z, [])
    assert [t.name for t in measurement_tools(window.annotating.annotation, measurements)] == [
        "ruler", "angle", "ellipse", "rectangle"]


def test_live_preview_while_dragging_and_hovering(measuring):
    window, measurements, tools = measuring
    view = window.views.slice_views["axial"]
    grid = window.viewer.grid
    tool = tools["ruler"]
    view.tool = tool
    z = int(window.viewer.cursor[2])
    # a drag in progress (the tool's own calls, as the view makes them)
    assert tool.press(view, np.array([100.0, 100, z]), Qt.KeyboardModifier.NoModifier)
    tool.drag(view, np.array([150.0, 100, z]))
    preview = tool.preview()
    assert preview is not None and preview.value == pytest.approx(50 * grid.spacing[0])
    assert not measurements.items
    tool.drag(view, np.array([180.0, 100, z]))
    assert tool.preview().value == pytest.approx(80 * grid.spacing[0])
    tool.release(view, np.array([180.0, 100, z]))
    assert len(measurements.items) == 1 and tool.preview() is None
    # click mode: the mouse moving after the first click previews the ruler to it
    click(view.viewport(), view_point(view, [300, 300, z]))
    _move(view.viewport(), view_point(view, [300, 380, z]))
    assert tool.preview().value == pytest.approx(80 * grid.spacing[1], rel=0.02)
    # an ellipse previews its statistics too
    view.tool = tools["ellipse"]
    tools["ellipse"].press(view, np.array([200.0, 200, z]), Qt.KeyboardModifier.NoModifier)
    tools["ellipse"].drag(view, np.array([240.0, 230, z]))
    assert tools["ellipse"].preview().values["pixels"] > 0


def test_measurements_show_only_on_their_plane_and_slice(measuring):
    window, measurements, tools = measuring
    axial = window.views.slice_views["axial"]
    axial.tool = tools["ellipse"]
    z = int(window.viewer.cursor[2])
    drag(axial.viewport(), view_point(axial, [150, 200, z]), view_point(axial, [350, 320, z]))
    axial.tool = None  # another tool: the measurement stays
    m = measurements.items[0]
    assert measurements in window.viewer.decorations
    assert m.visible_in(axial) and measurements.visible(axial) == [m]
    assert _drawn_pixels(measurements, axial) > 500
    axial.next_slice(1)
    assert axial.current_slice() != z
    assert not m.visible_in(axial) and measurements.visible(axial) == []
    assert _drawn_pixels(measurements, axial) == 0
    for plane in ("coronal", "sagittal"):  # other planes never show it
        other = window.views.slice_views[plane]
        assert not m.visible_in(other) and _drawn_pixels(measurements, other) == 0
    window.viewer.set_slice("axial", z)
    assert _drawn_pixels(measurements, axial) > 500
    # the view paints it on its own (through viewer.decorations): the image changes
    with_it = axial.grab().toImage()
    measurements.items.clear()
    axial.viewport().update()
    QApplication.processEvents()
    assert axial.grab().toImage() != with_it


def test_cleared_when_another_volume_opens(qtbot, measuring, tmp_path):
    window, measurements, tools = measuring
    view = window.views.slice_views["axial"]
    view.tool = tools["ruler"]
    z = int(window.viewer.cursor[2])
    drag(view.viewport(), view_point(view, [150, 250, z]), view_point(view, [250, 250, z]))
    click(view.viewport(), view_point(view, [100, 100, z]))  # one more in progress
    assert len(measurements.items) == 1 and tools["ruler"].in_progress
    changed = []
    measurements.changed.connect(lambda: changed.append(1))
    mr = np.arange(8 * 40 * 50, dtype=np.int16).reshape(8, 40, 50)
    path = save(Volume(mr, np.diag([1.2, 1.2, 3.0, 1.0])), tmp_path / "mr.nii.gz")
    assert open_and_wait(qtbot, window, path)
    assert window.viewer.volume.shape == (8, 40, 50)
    assert measurements.items == [] and changed
    assert not tools["ruler"].in_progress


def test_escape_cancels_and_delete_removes_the_last(measuring):
    window, measurements, tools = measuring
    view = window.views.slice_views["axial"]
    view.setFocus()
    window.annotating.panel.set_tool("paint")  # a tool on: Escape (the views' shortcut) goes back to navigating
    view.tool = tools["angle"]
    z = int(window.viewer.cursor[2])
    click(view.viewport(), view_point(view, [300, 250, z]))
    click(view.viewport(), view_point(view, [250, 250, z]))
    assert len(tools["angle"].points) == 2
    _key(view, Qt.Key.Key_Backspace)  # takes back the last point
    assert len(tools["angle"].points) == 1
    _key(view, Qt.Key.Key_Escape)  # cancels (though Escape is also the views' "navigate" shortcut)
    assert not tools["angle"].in_progress and measurements.items == []
    assert view.tool is tools["angle"]
    _key(view, Qt.Key.Key_Escape)  # with nothing in progress, the shortcut has it: back to navigating
    assert view.tool is None and window.annotating.panel.tool.name == "navigate"
    view.tool = tools["angle"]
    view.tool = tools["ruler"]
    drag(view.viewport(), view_point(view, [150, 250, z]), view_point(view, [250, 250, z]))
    drag(view.viewport(), view_point(view, [150, 300, z]), view_point(view, [200, 300, z]))
    first, second = measurements.items
    assert measurements.as_rows() == [("ruler", "axial", z + 1, first.text()), ("ruler", "axial", z + 1, second.text())]
    assert ROW_HEADER == ("kind", "plane", "slice", "value")
    _key(view, Qt.Key.Key_Delete)
    assert measurements.items == [first]
    # a measurement on another slice is not removed from this one
    view.next_slice(1)
    assert view.tool.key(view, QKeyEvent(QKeyEvent.Type.KeyPress, Qt.Key.Key_Backspace,
                                         Qt.KeyboardModifier.NoModifier)) is False
    assert measurements.items == [first]
    window.viewer.set_slice("axial", z)
    _key(view, Qt.Key.Key_Backspace)
    assert measurements.items == []
    # clear and remove_last on the object
    drag(view.viewport(), view_point(view, [150, 250, z]), view_point(view, [250, 250, z]))
    assert measurements.remove_last() is not None and measurements.remove_last() is None
    drag(view.viewport(), view_point(view, [150, 250, z]), view_point(view, [250, 250, z]))
    measurements.clear()
    assert measurements.items == []


def test_screenshot_with_ruler_angle_and_rois(qtbot, measuring, screenshot_dir):
    window, measurements, tools = measuring
    view = window.views.slice_views["axial"]
    z = int(window.viewer.cursor[2])
    view.tool = tools["ruler"]  # across the liver
    drag(view.viewport(), view_point(view, [95, 330, z]), view_point(view, [200, 390, z]))
    view.tool = tools["angle"]  # at the anterior abdominal wall
    for ijk in ([170, 185, z], [256, 140, z], [345, 180, z]):
        click(view.viewport(), view_point(view, ijk))
    view.tool = tools["ellipse"]  # the left kidney
    drag(view.viewport(), view_point(view, [305, 280, z]), view_point(view, [355, 330, z]))
    view.tool = tools["rectangle"]  # in the liver
    drag(view.viewport(), view_point(view, [140, 230, z]), view_point(view, [190, 270, z]))
    # a ruler in progress, previewing to the mouse
    view.tool = tools["ruler"]
    click(view.viewport(), view_point(view, [420, 420, z]))
    _move(view.viewport(), view_point(view, [470, 360, z]))
    assert [m.kind for m in measurements.items] == ["ruler", "angle", "ellipse", "rectangle"]
    QApplication.processEvents()
    assert window.save_screenshot(str(screenshot_dir / "measurements.png"))


def test_measurement_numbers_without_a_window():
    """core.measure alone: a ruler across thick slices in mm, an ellipse's area pi a b, ROI statistics
    equal numpy's on the pixels whose centres lie inside, too few points give None."""
    from medvision.core.display import DisplayGrid
    from medvision.core.measure import measure

    rng = np.random.default_rng(3)
    volume = Volume(rng.normal(40, 10, (12, 30, 40)).astype(np.float32), np.diag([0.7, 0.7, 5.0, 1.0]),
                    metadata={"modality": "CT", "rescale_applied": True})
    grid = DisplayGrid(volume)
    ruler = measure(grid, volume.metadata, volume.array, "ruler", "coronal", 10, [(3, 10, 1), (3, 10, 9)])
    assert ruler.value == pytest.approx(40.0) and ruler.text() == "40.0 mm"
    a, b = np.array([5.0, 5.0, 6.0]), np.array([25.0, 15.0, 6.0])
    roi = measure(grid, volume.metadata, volume.array, "ellipse", "axial", int(a[grid.slice_axis("axial")]), [a, b])
    assert roi.value == pytest.approx(math.pi / 4 * 20 * 0.7 * 10 * 0.7)
    image = grid.image("axial", roi.slice, volume.array)
    rows, cols = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    ra, rb = grid.to_screen("axial", a), grid.to_screen("axial", b)
    cr, cc = (ra.row + rb.row) / 2, (ra.col + rb.col) / 2
    inside = ((rows - cr) / abs(rb.row - ra.row) * 2) ** 2 + ((cols - cc) / abs(rb.col - ra.col) * 2) ** 2 <= 1 + 1e-6
    assert roi.values["pixels"] == inside.sum()
    assert roi.values["mean"] == pytest.approx(float(image[inside].mean()))
    assert roi.values["std"] == pytest.approx(float(image[inside].std(ddof=1))) and roi.unit == "HU"
    assert measure(grid, volume.metadata, volume.array, "angle", "axial", 6, [a, b]) is None
    with pytest.raises(ValueError, match="kind"):
        measure(grid, volume.metadata, volume.array, "circle", "axial", 6, [a, b])
