"""Annotation in the main window (offscreen): tools driven by real mouse events in the views, the
label table, undo/redo through the menu actions, files, the worklist, unsaved-changes handling."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QPushButton

from medvision.io.labels import load_labels
from medvision.io.seg import read_seg
from medvision.workspace.project import Project
from medvision.workspace.recovery import pending, recovery_root

from .conftest import SAMPLE_CT, SAMPLE_LABELS
from .qtutil import click, drag, open_and_wait, view_point, wheel

os.environ["MEDVISION_NO_DIALOGS"] = "1"


def _key(widget, key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    for kind in (QKeyEvent.Type.KeyPress, QKeyEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, key, modifiers))
    QApplication.processEvents()


def test_brush_paints_in_the_view_and_undo_restores(qtbot, ct):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    view = window.views.slice_views["axial"]
    panel.set_tool("paint")
    assert view.tool is panel.tools["paint"]
    panel.tools["paint"].set_radius(4.0)
    z = int(window.viewer.cursor[2])
    start, end = view_point(view, [200, 250, z]), view_point(view, [300, 250, z])
    drag(view.viewport(), start, end)
    assert ann.labels is not None and ann.active == 1 and ann.labels.table[1].name == "Label 1"
    painted = ann.labels.array == 1
    zz, yy, xx = np.nonzero(painted)
    vz = int(window.viewer.array_index(window.viewer.cursor)[0])
    assert set(zz.tolist()) == {vz}  # a 2D brush: one slice
    # the stroke covers the dragged line, 4 mm around it
    across = 2 * 4.0 / window.viewer.grid.spacing[1]
    assert xx.max() - xx.min() > 90 and across - 2 <= yy.max() - yy.min() <= across + 1
    assert len(ann.history.undo_stack) == 1  # the whole drag: one step
    assert ann.dirty and window.windowTitle().startswith("*")
    assert window.annotating.action_undo.isEnabled()
    # the overlay shows it in the view
    overlay = view.overlays[0].image
    assert (overlay == 1).sum() == painted.sum()
    window.annotating.action_undo.trigger()
    assert not ann.labels.array.any()
    window.annotating.action_redo.trigger()
    assert (ann.labels.array == 1).sum() == painted.sum()
    # Shift+wheel and ] change the brush size; a 3D ball paints through slices
    tool = panel.tools["paint"]
    wheel(view.viewport(), start, 1, Qt.KeyboardModifier.ShiftModifier)
    assert tool.radius_mm == pytest.approx(4.0 * 1.15)
    view.setFocus()
    _key(view, Qt.Key.Key_BracketRight)
    assert tool.radius_mm == pytest.approx(4.0 * 1.15 * 1.2)
    panel.option_pages["paint"].sphere.setChecked(True)
    click(view.viewport(), view_point(view, [256, 350, z]))
    assert len(np.unique(np.nonzero(ann.labels.array)[0])) > 1  # 3 mm slices: more than one slice
    # erase only what the eraser covers
    panel.set_tool("erase")
    before = (ann.labels.array == 1).sum()
    drag(view.viewport(), start, view_point(view, [230, 250, z]))
    assert 0 < (ann.labels.array == 1).sum() < before


def test_locked_label_and_masking_rules(qtbot, ct):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    view = window.views.slice_views["axial"]
    z = int(window.viewer.cursor[2])
    panel.label_table.add_label()
    panel.label_table.add_label()
    assert ann.labels.table.values() == [1, 2] and ann.active == 2
    panel.set_tool("paint")
    panel.tools["paint"].set_radius(10)
    ann.set_active(1)
    click(view.viewport(), view_point(view, [256, 256, z]))
    first = ann.labels.array == 1
    assert first.any()
    # lock label 1 in the table: painting label 2 over it leaves it alone
    row = [r for r in range(panel.label_table.table.rowCount()) if panel.label_table._row_value(r) == 1][0]
    panel.label_table.table.item(row, 4).setCheckState(Qt.CheckState.Checked)
    assert ann.labels.table[1].locked
    ann.set_active(2)
    click(view.viewport(), view_point(view, [262, 256, z]))
    assert np.array_equal(ann.labels.array == 1, first)
    assert (ann.labels.array == 2).any()
    # hide label 2: its colour is transparent in the overlay table
    row2 = [r for r in range(panel.label_table.table.rowCount()) if panel.label_table._row_value(r) == 2][0]
    panel.label_table.table.item(row2, 3).setCheckState(Qt.CheckState.Unchecked)
    assert window.viewer.layer("labels").lut[2, 3] == 0
    # rename: a name the bundled terminology knows gets its SNOMED code
    panel.label_table.table.item(row2, 2).setText("liver")
    assert ann.labels.table[2].name == "liver" and ann.labels.table[2].type.value == "10200004"
    # masking: only where the intensity is in a range (bone only)
    panel.range_low.setValue(300)
    panel.range_high.setValue(3000)
    panel.range_check.setChecked(True)
    assert ann.rules.intensity == (300, 3000)
    ann.labels.table[1].locked = False
    ann.set_active(1)
    panel.tools["paint"].set_radius(60)
    click(view.viewport(), view_point(view, [256, 300, z]))
    image = ann.image
    assert (image[ann.labels.array == 1] >= 300).mean() > 0.5  # most painted voxels are bone now


def test_polygon_threshold_grow_islands_and_operations(qtbot, ct):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    view = window.views.slice_views["axial"]
    z = int(window.viewer.cursor[2])
    panel.set_tool("polygon")
    for ijk in ([150, 150, z], [250, 150, z], [250, 250, z]):
        click(view.viewport(), view_point(view, ijk))
    click(view.viewport(), view_point(view, [150, 250, z]), double=True)
    area = (ann.labels.array == 1).sum()
    assert 9600 < area < 10400, area  # the 100 x 100 pixel square clicked, double-click closing it
    assert len(ann.history.undo_stack) == 1

    # threshold: preview layer while the tool is active, apply fills the range
    ann.add_label("bone")
    panel.set_tool("threshold")
    assert window.viewer.layer("threshold preview") is not None
    panel.low_spin.setValue(400)
    panel.high_spin.setValue(3000)
    preview = [item for item in view.overlays if item.isVisible()][-1].image
    assert preview.max() == 1
    panel.threshold.apply()
    ann.wait()
    bone = ann.labels.array == 2
    assert bone.any() and (ann.image[bone] >= 400).all()
    panel.set_tool("navigate")
    assert window.viewer.layer("threshold preview") is None

    # islands: keep the largest island of bone
    n_before = bone.sum()
    keep = [b for b in panel.option_pages["islands"].findChildren(QPushButton) if b.text().startswith("Keep")][0]
    keep.click()
    ann.wait()
    assert 0 < (ann.labels.array == 2).sum() <= n_before

    # grow from a seed in the liver region (confidence connected), one undo step
    ann.add_label("grown")
    panel.set_tool("grow")
    undo_before = len(ann.history.undo_stack)
    click(view.viewport(), view_point(view, [330, 260, z]))
    ann.wait()
    assert (ann.labels.array == 3).sum() > 100
    assert len(ann.history.undo_stack) == undo_before + 1

    # margin and smoothing through the panel buttons run as jobs, each one undo step
    ann.set_active(1)
    n1 = (ann.labels.array == 1).sum()
    panel.margin_mm.setValue(2.0)
    [b for b in panel.operation_buttons if b.text() == "Grow"][0].click()
    ann.wait()
    assert (ann.labels.array == 1).sum() > n1
    window.annotating.action_undo.trigger()
    assert (ann.labels.array == 1).sum() == n1
    # islands tool: click keeps the clicked island only
    panel.set_tool("islands")
    click(view.viewport(), view_point(view, [200, 200, z]))
    ann.wait()
    assert (ann.labels.array == 1).sum() == n1


def test_fill_between_slices_in_the_window(qtbot, ct):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    view = window.views.slice_views["axial"]
    panel.set_tool("paint")
    panel.tools["paint"].set_radius(8)
    for z in (4, 12):
        window.viewer.set_slice("axial", z)
        click(view.viewport(), view_point(view, [256, 256, z]))
    vz = [int(window.viewer.array_index([256, 256, z])[0]) for z in (4, 12)]
    assert sorted(np.unique(np.nonzero(ann.labels.array)[0]).tolist()) == sorted(vz)
    panel.last_plane = "axial"
    panel.fill_between()
    ann.wait()
    filled = np.unique(np.nonzero(ann.labels.array)[0]).tolist()
    assert filled == list(range(min(vz), max(vz) + 1))


def test_save_open_and_seg_export(qtbot, ct, tmp_path):
    window = ct
    ann = window.annotating.annotation
    reference = load_labels(SAMPLE_LABELS, reference=window.viewer.volume)
    ann.set_labels(reference.copy(), saved=False)
    assert ann.dirty
    out = tmp_path / "case.labels.nii.gz"
    assert ann.save(str(out), wait=True)
    assert not ann.dirty and ann.target == str(out)
    again = load_labels(out, reference=window.viewer.volume)
    assert np.array_equal(again.array, reference.array)
    assert [la.name for la in again.table] == [la.name for la in reference.table]
    # DICOM SEG export of the 117 labels (one edit since the save), re-read voxel-identical
    ann.history.write((slice(3, 4), slice(0, 2), slice(0, 2)), np.array(9, np.uint8))
    seg = tmp_path / "labels.seg.dcm"
    assert window.annotating._export_seg(str(seg), wait=True)
    back = read_seg(seg, reference=window.viewer.volume)
    assert np.array_equal(back.array, ann.labels.array)
    # an export does not change the working file, nor write it: the edit is still unsaved there
    assert ann.target == str(out) and ann.dirty
    ann.undo()
    # open labels in the window (job) replaces the working labels; a SEG opens unchanged: not "unsaved"
    ann.clear()
    with qtbot.waitSignal(ann.labels_replaced, timeout=30_000):
        ann.open(str(seg))
    assert not ann.dirty and ann.target is None and ann.labels.array[3, 0, 0] == 9
    ann.clear()
    with qtbot.waitSignal(ann.labels_replaced, timeout=30_000):
        ann.open(str(out))
    assert np.array_equal(ann.labels.array, reference.array) and ann.target == str(out)
    # a bad label file: a clear message, the labels on screen stay
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    ann.open(str(bad))
    ann.wait()
    assert "opening labels failed" in window.last_error and np.array_equal(ann.labels.array, reference.array)
    # saving where no file can be written (under a file): a clear message, nothing lost
    ann.history.write((slice(0, 1), slice(0, 1), slice(0, 1)), np.array(1, np.uint8))
    assert ann.dirty
    window.last_error = ""
    assert not ann.save(str(bad / "x.nii.gz"), wait=True)
    assert "saving the labels failed" in window.last_error
    assert ann.dirty and ann.labels.array[0, 0, 0] == 1 and ann.target == str(out)


def test_unsaved_labels_survive_opening_another_image(qtbot, ct, tmp_path):
    window = ct
    ann = _paint_one(window)
    assert ann.dirty
    # without dialogs, opening another image keeps the unsaved labels in the recovery area
    assert open_and_wait(qtbot, window, SAMPLE_LABELS)
    assert ann.labels is None
    states = list(recovery_root().glob("*/state.json"))
    assert len(states) == 1
    kept = load_labels(states[0].parent / "labels.nii.gz")
    assert kept.array.any()
    assert pending() == []  # this process is alive: not offered yet


def test_autosave_writes_the_recovery_slot_and_clean_save_removes_it(qtbot, ct, tmp_path):
    window = ct
    ann, slot = _painted_and_autosaved(window)
    assert slot is not None and (slot / "labels.nii.gz").exists() and (slot / "state.json").exists()
    saved = load_labels(slot / "labels.nii.gz", reference=window.viewer.volume)
    assert np.array_equal(saved.array, ann.labels.array)
    assert ann.save(str(tmp_path / "l.nii.gz"), wait=True)
    assert not slot.exists()


def test_worklist_case_flow(qtbot, window, tmp_path):
    project = Project.create(tmp_path / "proj")
    project.table.add("liver")
    project.save()
    case = project.add_case(SAMPLE_CT)
    wl = window.annotating.worklist
    assert wl.open_project(str(project.folder))
    assert wl.table.rowCount() == 1
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        wl.open_case(case.id)
    ann = window.annotating.annotation
    assert ann.case_id == case.id and ann.labels is not None and ann.labels.table[1].name == "liver"
    panel = window.annotating.panel
    panel.set_tool("paint")
    view = window.views.slice_views["axial"]
    window.set_layout("1x1")
    QApplication.processEvents()
    z = int(window.viewer.cursor[2])
    click(view.viewport(), view_point(view, [256, 256, z]))
    assert Project.open(project.folder).case(case.id).status == "in progress"
    wl.set_status("done")  # saves the labels first
    reopened = Project.open(project.folder)
    assert reopened.case(case.id).status == "done"
    assert reopened.labels_path(reopened.case(case.id)).exists()
    assert reopened.datalist()["training"][0]["case"] == case.id
    assert not ann.dirty


def test_tools_in_coronal_and_sagittal_views_land_on_the_voxels_under_the_mouse(qtbot, ct):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    viewer = window.viewer
    panel.set_tool("paint")
    panel.tools["paint"].set_radius(0.3)  # one voxel
    for plane, ijk in (("coronal", [300, 256, 7]), ("sagittal", [256, 200, 13])):
        window.views.set_layout("1x1", plane)  # big enough that a voxel is more than a screen pixel
        QApplication.processEvents()
        view = window.views.slice_views[plane]
        view.reset_view()
        viewer.set_cursor(ijk)
        before = int((ann.labels.array > 0).sum()) if ann.labels is not None else 0
        click(view.viewport(), view_point(view, ijk))
        z, y, x = (int(v) for v in viewer.array_index(ijk))
        assert ann.labels.array[z, y, x] == 1, plane
        assert int((ann.labels.array > 0).sum()) == before + 1
    # a polygon drawn in the sagittal view fills that sagittal slice only
    panel.set_tool("polygon")
    viewer.set_cursor([256, 256, 10])
    view = window.views.slice_views["sagittal"]
    corners = ([256, 220, 5], [256, 300, 5], [256, 300, 15], [256, 220, 15])
    for c in corners[:-1]:
        click(view.viewport(), view_point(view, c))
    click(view.viewport(), view_point(view, corners[-1]), double=True)
    x_index = int(viewer.array_index([256, 0, 0])[2])
    filled = np.nonzero(ann.labels.array == 1)
    assert np.count_nonzero(filled[2] == x_index) > 700  # 81 x 11 pixels
    assert set(filled[2].tolist()) == {x_index, int(viewer.array_index([300, 256, 7])[2])}


def test_overlay_outline_opacity_and_screenshot(qtbot, ct, screenshot_dir):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    window.set_layout("2x2")
    ann.set_labels(load_labels(SAMPLE_LABELS, reference=window.viewer.volume), saved=True)
    panel.style_combo.setCurrentText("Outline")
    panel.opacity_slider.setValue(90)
    layer = window.viewer.layer("labels")
    assert layer.outline and layer.opacity == pytest.approx(0.9)
    QApplication.processEvents()
    axial = window.views.slice_views["axial"]
    shown = axial.overlays[0].image
    filled = window.viewer.grid.image("axial", axial.current_slice(), ann.labels.array)
    assert 0 < np.count_nonzero(shown) < 0.5 * np.count_nonzero(filled)  # borders only
    panel.set_tool("paint")
    axial.mouse_scene_pos = axial.mapToScene(QPoint(axial.width() // 2, axial.height() // 2))
    panel.tools["paint"].hover(axial, np.array([256.0, 256.0, 10.0]))
    for _ in range(5):
        QApplication.processEvents()
    assert window.save_screenshot(str(screenshot_dir / "annotation_outline.png"))
    panel.style_combo.setCurrentText("Fill")
    assert not layer.outline


def _paint_one(window):
    """Paint one dab at the centre of the axial view; returns the annotation."""
    ann, panel = window.annotating.annotation, window.annotating.panel
    view = window.views.slice_views["axial"]
    panel.set_tool("paint")
    click(view.viewport(), view_point(view, [256, 256, int(window.viewer.cursor[2])]))
    return ann


def _painted_and_autosaved(window):
    """Paint one dab in the axial view and autosave it; returns the annotation and its slot."""
    ann = _paint_one(window)
    ann.autosave(wait=True)
    return ann, ann.recovery_dir


def test_closing_with_unsaved_labels_asks(qtbot, ct, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    window = ct
    ann, slot = _painted_and_autosaved(window)
    monkeypatch.delenv("MEDVISION_NO_DIALOGS")
    answers = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: answers.pop(0))
    # Cancel: the window stays open, the labels and their autosave stay
    answers.append(QMessageBox.StandardButton.Cancel)
    assert not window.close()
    assert window.isVisible() and ann.dirty and slot.exists()
    # Save: asks where (no file yet), writes it, then closes
    target = tmp_path / "closing.nii.gz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    answers.append(QMessageBox.StandardButton.Save)
    assert window.close()
    assert target.exists() and not slot.exists()
    assert np.array_equal(load_labels(target, reference=window.viewer.volume).array, ann.labels.array)


def test_discarding_unsaved_labels_removes_their_autosave(qtbot, ct, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    window = ct
    ann, slot = _painted_and_autosaved(window)
    monkeypatch.delenv("MEDVISION_NO_DIALOGS")
    monkeypatch.setattr(QMessageBox, "exec", lambda self: QMessageBox.StandardButton.Discard)
    window.annotating.close_labels()
    assert ann.labels is None and not slot.exists()


def test_measurements_from_the_panel(qtbot, ct):
    window = ct
    panel = window.annotating.panel
    view = window.views.slice_views["axial"]
    z = int(window.viewer.cursor[2])
    panel.set_tool("ruler")
    drag(view.viewport(), view_point(view, [150, 200, z]), view_point(view, [250, 200, z]))
    assert panel.measurement_list.table.rowCount() == 1
    length = panel.measurements.items[0].values["length_mm"]
    assert length == pytest.approx(100 * window.viewer.grid.spacing[0], rel=0.02)
    assert "mm" in panel.measurement_list.table.item(0, 3).text()
    assert panel.measurement_list.csv_text().splitlines()[0] == "kind,plane,slice,value"
    panel.set_tool("rectangle")
    drag(view.viewport(), view_point(view, [300, 250, z]), view_point(view, [340, 290, z]))
    assert panel.measurement_list.table.rowCount() == 2 and "HU" in panel.measurement_list.table.item(1, 3).text()
    panel.measurement_list.table.selectRow(0)
    panel.measurement_list.delete_selected()
    assert [m.kind for m in panel.measurements.items] == ["rectangle"]


def test_label_surfaces_follow_the_labels_in_the_3d_view(qtbot, ct):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    with qtbot.waitSignal(window.view3d_ready, timeout=60_000):
        window.start_view3d()
    view3d = window.views.view3d
    if not getattr(view3d, "available", False):
        pytest.skip(f"no 3D rendering here: {getattr(view3d, 'error', '')}")
    ann.set_labels(load_labels(SAMPLE_LABELS, reference=window.viewer.volume))
    with qtbot.waitSignal(view3d.labels_ready, timeout=60_000):
        panel.show3d_check.setChecked(True)
    assert view3d.labels is ann.labels and view3d.show_labels
    before = set(view3d.label_surfaces.meshes)
    # a new label painted: its surface appears after the edit settles
    label = ann.add_label("new")
    panel.set_tool("paint")
    panel.option_pages["paint"].sphere.setChecked(True)
    panel.tools["paint"].set_radius(10)
    axial = window.views.slice_views["axial"]
    old = ann.labels.array.copy()
    with qtbot.waitSignal(view3d.labels_ready, timeout=60_000):
        click(axial.viewport(), view_point(axial, [256, 400, int(window.viewer.cursor[2])]))
    assert label.value in view3d.label_surfaces.meshes and label.value not in before
    changed = (set(np.unique(old[old != ann.labels.array]).tolist()) - {0}) | {label.value}
    assert view3d.label_surfaces.rebuilt == changed  # only the labels the ball touched were remade
    panel.show3d_check.setChecked(False)
    assert not view3d.show_labels
