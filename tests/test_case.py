"""The case being annotated, without a window: labels on the image's grid, the label table, undo,
save routing (NIfTI, DICOM SEG, project case), autosave into a recovery slot and its removal."""

from __future__ import annotations

import numpy as np
import pytest

from medvision.annotate.brush import BrushShape, Stroke
from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume
from medvision.io.labels import load_labels
from medvision.workspace.case import WorkingCase
from medvision.workspace.project import Project


def _volume(shape=(6, 20, 24)) -> Volume:
    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 30.0)
    return Volume(rng.integers(0, 100, shape).astype(np.int16), affine)


def _paint(case: WorkingCase, center=(3, 10, 12)) -> None:
    value, why = case.paint_value()
    assert value is not None, why
    stroke = Stroke(case.history, case.labels, BrushShape(3.0, axis=0), value)
    stroke.dab(center)
    stroke.finish()


def test_labels_table_undo_and_dirty_state():
    calls = {"replaced": 0, "state": 0, "boxes": []}
    case = WorkingCase(on_replaced=lambda: calls.__setitem__("replaced", calls["replaced"] + 1),
                       on_state=lambda: calls.__setitem__("state", calls["state"] + 1),
                       on_voxels=calls["boxes"].append)
    volume = _volume()
    assert case.paint_value() == (None, "nothing to label: open an image first (or wait until it has loaded)")
    with pytest.raises(ValueError, match="grid"):
        case.set_labels(LabelMap.empty_like(_volume((5, 20, 24))), grid=volume)
    case.default_table = LabelTable()
    case.default_table.add("liver")
    case.set_labels(case.new_labels(volume), grid=volume)
    assert calls["replaced"] == 1 and case.active == 1 and not case.dirty
    assert case.labels.table[1].name == "liver" and case.labels.table is not case.default_table
    _paint(case)
    assert case.dirty and case.labels.array.any() and calls["boxes"] and calls["state"] > 0
    edit = case.undo()
    assert edit is not None and not case.labels.array.any() and case.redo() is not None
    # a locked label refuses paint and says why
    case.labels.table[1].locked = True
    value, why = case.paint_value()
    assert value is None and "locked" in why
    case.labels.table[1].locked = False
    # a new label, then removing it erases its voxels as one undo step
    spleen = case.add_label("spleen")
    assert case.active == spleen.value
    _paint(case, (3, 4, 4))
    assert (case.labels.array == spleen.value).any()
    assert case.remove_label(spleen.value) and case.active == 1
    assert not (case.labels.array == spleen.value).any() and spleen.value not in case.labels.table
    assert not case.remove_label(99)
    case.undo()
    assert (case.labels.array == spleen.value).any()  # the voxels come back (the table entry does not)


def test_a_new_image_keeps_labels_only_on_the_same_grid(tmp_path):
    volume = _volume()
    case = WorkingCase(recovery_root=tmp_path)
    case.set_labels(case.new_labels(volume), grid=volume, target=str(tmp_path / "l.nii.gz"))
    _paint(case)
    reload = Volume(volume.array.copy(), volume.affine.copy())
    assert case.image_replaced(reload) and case.labels is not None and case.target is not None
    moved = Volume(volume.array.copy(), volume.affine @ np.diag([2.0, 1.0, 1.0, 1.0]))
    assert not case.image_replaced(moved)
    assert case.labels is None and case.history is None and case.target is None and not case.dirty


def test_save_routing_and_autosave(tmp_path, monkeypatch):
    volume = _volume()
    case = WorkingCase(recovery_root=tmp_path / "recovery")
    case.source = ("/images/ct.nii.gz", None)
    case.set_labels(case.new_labels(volume), grid=volume)
    with pytest.raises(ValueError, match="no file"):
        case.save_plan(None, volume)
    _paint(case)
    # autosave: a slot with the labels, once per version, gone after a clean save
    assert case.autosave_due()
    case.autosave(wait=True)
    slot = case.recovery_dir
    assert slot is not None and (slot / "labels.nii.gz").exists() and not case.autosave_due()
    assert np.array_equal(load_labels(slot / "labels.nii.gz").array, case.labels.array)
    target = str(tmp_path / "labels.nii.gz")
    version = case.history.version
    where = case.save_plan(target, volume)()
    case.saved(version, target)
    assert where == tmp_path / "labels.nii.gz" and not case.dirty and case.target == target
    assert case.recovery_dir is None and not slot.exists()
    assert np.array_equal(load_labels(where, reference=volume).array, case.labels.array)
    # the plan writes a snapshot: edits after it are not in the file
    plan = case.save_plan(None, volume)
    _paint(case, (3, 15, 20))
    plan()
    assert not np.array_equal(load_labels(where, reference=volume).array, case.labels.array)
    # a failed autosave is kept as a message, the labels stay
    monkeypatch.setattr("medvision.workspace.recovery.RecoverySlot.save",
                        lambda *_: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    case.autosave(wait=True)
    assert "No space left" in case.autosave_error and case.labels.array.any()
    # a project case: no path saves into the project
    project = Project.create(tmp_path / "proj", "p")
    record = project.add_case(str(tmp_path / "labels.nii.gz"))
    case.project, case.case_id, case.target = project, record.id, None
    version = case.history.version
    where = case.save_plan(None, volume)()
    case.saved(version, None)
    assert where.is_relative_to(tmp_path / "proj") and not case.dirty
    assert project.case(record.id).status == "in progress"
    case.discard_recovery()
    assert not list((tmp_path / "recovery").iterdir())


def test_dicom_seg_routing_needs_the_image(tmp_path):
    from medvision.workspace.case import write_labels

    labels = LabelMap.empty_like(_volume())
    with pytest.raises(ValueError, match="image"):
        write_labels(labels, None, str(tmp_path / "seg.dcm"))
    with pytest.raises(ValueError, match="no file"):
        write_labels(labels, None, None)
