"""Annotation projects (cases, statuses, labels, datalist) and autosave recovery, including a real
process killed with SIGKILL in the middle of editing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from medvision.annotate.brush import BrushShape, Stroke
from medvision.core.edits import History
from medvision.io import load
from medvision.workspace.project import Project, ProjectError
from medvision.workspace.recovery import RecoverySlot, pending

from .conftest import SAMPLE_CT


@pytest.fixture(scope="module")
def ct():
    return load(SAMPLE_CT)


def test_project_cases_statuses_and_labels(tmp_path, ct):
    project = Project.create(tmp_path / "proj", "livers")
    project.table.add("liver")
    project.save()
    a = project.add_case(SAMPLE_CT)
    b = project.add_case(SAMPLE_CT)  # the same image twice gets its own id
    assert (a.id, b.id) == ("ct_abdomen_siemens_j2k", "ct_abdomen_siemens_j2k_2") and a.status == "todo"
    labels = project.load_labels(a, ct)
    assert labels.on_grid_of(ct) and not labels.array.any() and labels.table[1].name == "liver"
    history = History(labels)
    stroke = Stroke(history, labels, BrushShape(8.0, axis=0), 1)
    stroke.dab((10, 297, 158))
    stroke.finish()
    project.save_labels(a, labels, user="ann")
    assert a.status == "in progress" and a.annotator == "ann"
    project.set_status(a.id, "done", user="ann")
    again = Project.open(tmp_path / "proj")
    case = again.case(a.id)
    assert case.status == "done" and [h["event"] for h in case.history][-1] == "status done"
    assert np.array_equal(again.load_labels(case, ct).array, labels.array)
    assert again.next_case(after=a.id).id == b.id
    datalist = again.datalist()
    assert datalist["labels"] == {"background": 0, "liver": 1}
    assert [item["case"] for item in datalist["training"]] == [a.id]
    assert os.path.exists(datalist["training"][0]["image"])
    with pytest.raises(ProjectError, match="status"):
        again.set_status(a.id, "finished")
    with pytest.raises(ProjectError, match="already"):
        Project.create(tmp_path / "proj")
    (tmp_path / "proj" / "project.json").write_text("{broken")
    with pytest.raises(ProjectError, match="damaged"):
        Project.open(tmp_path / "proj")


def test_images_inside_the_project_are_stored_relative(tmp_path):
    import shutil

    shutil.copytree(SAMPLE_CT, tmp_path / "proj" / "images" / "ct")
    project = Project.create(tmp_path / "proj")
    case = project.add_case(tmp_path / "proj" / "images" / "ct")
    assert case.image == "images/ct"
    (tmp_path / "proj").rename(tmp_path / "moved")
    moved = Project.open(tmp_path / "moved")
    assert moved.image_path(moved.cases[0]).is_dir()


def test_a_slot_is_offered_only_when_its_process_is_gone(tmp_path, ct):
    from medvision.core.labels import LabelMap

    labels = LabelMap.empty_like(ct)
    labels.array[5, 10:20, 10:20] = 1
    slot = RecoverySlot(str(SAMPLE_CT), root=tmp_path)
    slot.save(labels, version=3)
    assert pending(tmp_path) == []  # this process is alive: its own slot is not offered
    state = json.loads((slot.dir / "state.json").read_text())
    state["pid"] = 2 ** 22 + 12345  # a process that does not exist
    (slot.dir / "state.json").write_text(json.dumps(state))
    [found] = pending(tmp_path)
    assert found.image == str(SAMPLE_CT) and "autosaved" in found.describe()
    assert np.array_equal(found.load(ct).array, labels.array)
    found.discard()
    assert pending(tmp_path) == [] and not slot.dir.exists()


_EDITOR = textwrap.dedent("""
    import sys, time
    import numpy as np
    from medvision.io import load
    from medvision.core.labels import LabelMap
    from medvision.core.edits import History
    from medvision.annotate.brush import BrushShape, Stroke
    from medvision.workspace.recovery import RecoverySlot
    from pathlib import Path

    ct = load(sys.argv[1])
    labels = LabelMap.empty_like(ct)
    labels.table.add("lesion")
    history = History(labels)
    slot = RecoverySlot(sys.argv[1], root=Path(sys.argv[2]))
    for i in range(1000):  # an annotator painting; autosave after every edit here
        stroke = Stroke(history, labels, BrushShape(4.0, axis=0), 1)
        stroke.dab((i % 20, 100 + i, 100 + i))
        stroke.finish()
        slot.save(labels, history.version)
        np.save(Path(sys.argv[2]) / "truth.npy", labels.array)  # what the annotator had drawn
        print(i, flush=True)
        time.sleep(0.05)
""")


def test_recovery_after_kill_9(tmp_path, ct):
    # (its stderr to a file: the multiprocessing resource tracker of a process killed this way reports the
    # semaphores of its DICOM decoding pool, which it then removes, some time later, into whatever that is)
    with open(tmp_path / "editor.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", _EDITOR, str(SAMPLE_CT), str(tmp_path)],
                                stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        for _ in range(5):  # five strokes drawn and autosaved
            assert proc.stdout.readline().strip() != ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.1)
    found = pending(tmp_path)
    assert len(found) == 1
    restored = found[0].load(ct).array
    truth = np.load(tmp_path / "truth.npy")
    # the slot holds a complete save: the last one, or the one before if the kill came mid-write
    assert restored.any()
    lost = np.count_nonzero(truth != restored)
    assert lost <= np.count_nonzero(truth) // 5 + 200  # at most the last stroke is missing
