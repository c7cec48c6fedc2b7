"""Atomic writes (medvision.core.atomic) and the modes of what medvision writes: files a colleague
shares (labels, tables, project.json, SEG, model weights, checkpoints, settings) follow the umask,
a file replaced keeps its mode, private caches holding patient data are 0600/0700, and a writer
that fails leaves the previous file whole and no temporary file behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from medvision.core import atomic
from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume
from medvision.io import load
from medvision.io.errors import MedvisionIOError
from medvision.io.labels import save_labels
from medvision.io.volumes import write_volume

from .dicomgen import write_series

#: what highdicom copies from the source images into a SEG (not in the generated series by default)
_STUDY = {"PatientBirthDate": "19700101", "PatientSex": "O", "StudyTime": "120000", "StudyID": "1",
          "AccessionNumber": "A1", "ReferringPhysicianName": "Ref^Doc"}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _labels() -> LabelMap:
    array = np.zeros((4, 5, 6), np.uint8)
    array[1:3, 1:4, 2:5] = 1
    table = LabelTable()
    table.add("lesion")
    return LabelMap(array, np.diag([0.8, 0.7, 2.0, 1.0]), table)


def test_the_umask_is_read_without_changing_it(umask):
    assert atomic.current_umask() == umask
    assert os.umask(umask) == umask


def test_shared_files_follow_the_umask(tmp_path, umask):
    from medvision.workspace.project import Project

    want = 0o666 & ~umask
    project = Project.create(tmp_path / "proj", "shared")
    assert mode(tmp_path / "proj" / "project.json") == want
    save_labels(_labels(), tmp_path / "case.nii.gz")
    assert mode(tmp_path / "case.nii.gz") == want and mode(tmp_path / "case.labels.json") == want
    # a header/data pair: both files, and nothing else left in the folder
    write_volume(Volume(np.ones((3, 4, 5), np.int16), np.eye(4), None, {}), tmp_path / "pair.nhdr")
    pair = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pair"))
    assert len(pair) == 2 and all(mode(tmp_path / n) == want for n in pair)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    project.save()
    assert mode(project.folder / "project.json") == want


def test_seg_weights_checkpoint_and_settings_follow_the_umask(tmp_path, umask):
    torch = pytest.importorskip("torch")
    from medvision.ai.importers.files import save_safetensors
    from medvision.ai.training.checkpoint import save_checkpoint
    from medvision.io.seg import write_seg
    from medvision.ui.app.settings import Settings

    want = 0o666 & ~umask
    write_series(tmp_path / "ct", 4, extra_per_slice=lambda k, t: _STUDY)
    image = load(tmp_path / "ct")
    array = np.zeros(image.array.shape, np.uint8)
    array[1:3, 5:15, 5:15] = 1
    table = LabelTable()
    table.add("lesion")
    seg = write_seg(LabelMap(array, image.affine, table), image, tmp_path / "seg.dcm")
    assert mode(seg) == want
    save_safetensors(torch.nn.Linear(3, 2), tmp_path / "weights.safetensors")
    assert mode(tmp_path / "weights.safetensors") == want
    assert mode(save_checkpoint(tmp_path / "run", {"epoch": 1})) == want
    settings = Settings.load()
    settings.save()
    assert mode(settings.path()) == want


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "case.labels.json"
    path.write_text("{}")
    os.chmod(path, 0o640)
    save_labels(_labels(), tmp_path / "case.nii.gz")
    assert mode(path) == 0o640 and "lesion" in path.read_text()


def test_private_caches_are_the_owners_only(tmp_path, umask):
    from medvision.io import DicomIndex
    from medvision.workspace.recovery import RecoverySlot, recovery_root

    assert mode(recovery_root()) == 0o700
    slot = RecoverySlot("image.nii.gz")
    slot.save(_labels(), 1)
    assert mode(slot.dir) == 0o700
    files = sorted(p.name for p in slot.dir.iterdir())
    assert files == ["labels.labels.json", "labels.nii.gz", "state.json"]
    assert {mode(slot.dir / n) for n in files} == {0o600}
    index = DicomIndex(tmp_path / "index.sqlite")
    index.close()
    assert mode(tmp_path / "index.sqlite") == 0o600
    atomic.write_text(tmp_path / "cache.json", "{}", private=True)
    assert mode(tmp_path / "cache.json") == 0o600


def test_thumbnails_are_private(tmp_path, umask):
    from PySide6.QtGui import QImage  # noqa: F401 - the Qt writer

    from medvision.core import run_job
    from medvision.io import scan
    from medvision.ui.panels.series_thumbnails import thumbnail_job

    write_series(tmp_path / "ct", 3)
    series = scan(tmp_path / "ct").all_series()[0]
    run_job(thumbnail_job([("t.png", series)], tmp_path / "thumbs"))
    assert mode(tmp_path / "thumbs") == 0o700 and mode(tmp_path / "thumbs" / "t.png") == 0o600


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failing_writer_leaves_the_old_file_whole(tmp_path, monkeypatch):
    import SimpleITK as sitk

    save_labels(_labels(), tmp_path / "case.nii.gz")
    before = {n: (tmp_path / n).read_bytes() for n in _only(tmp_path)}

    def half_then_fail(image, name, *args, **kwargs):
        Path(name).write_bytes(b"\x1f\x8b half a file")
        raise RuntimeError("ITK ERROR: disk full")

    monkeypatch.setattr(sitk, "WriteImage", half_then_fail)
    with pytest.raises(MedvisionIOError, match="writing failed"):
        save_labels(_labels(), tmp_path / "case.nii.gz")
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in _only(tmp_path)} == before

    def no_room(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_room)
    with pytest.raises(OSError, match="No space"):
        atomic.write_text(tmp_path / "case.labels.json", "new")
    with pytest.raises(OSError, match="No space"):
        atomic.write_via(tmp_path / "case.nii.gz", lambda tmp: tmp.write_bytes(b"new"))
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in _only(tmp_path)} == before
    with pytest.raises(OSError, match="reported a failure"):
        atomic.write_via(tmp_path / "case.nii.gz", lambda tmp: False)  # Qt's save returning False
    with pytest.raises(OSError, match="empty"):
        atomic.write_via(tmp_path / "case.nii.gz", lambda tmp: tmp.touch())
    assert {n: (tmp_path / n).read_bytes() for n in _only(tmp_path)} == before


def test_a_short_write_is_refused(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("old")
    real = os.fstat

    class Short:
        def __init__(self, st):
            self.st_size = st.st_size - 1

    monkeypatch.setattr(os, "fstat", lambda fd: Short(real(fd)))
    with pytest.raises(OSError, match="bytes written of"):
        atomic.write_text(tmp_path / "a.json", "new content")
    monkeypatch.undo()
    assert _only(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_text() == "old"


def test_a_private_file_is_made_or_restricted(tmp_path, umask):
    made = atomic.private_file(tmp_path / "new.sqlite")
    assert made.read_bytes() == b"" and mode(made) == 0o600
    old = tmp_path / "old.sqlite"
    old.write_bytes(b"SQLite format 3\0")
    os.chmod(old, 0o444)  # (read-only: still restricted, its content kept)
    atomic.private_file(old)
    assert mode(old) == 0o600 and old.read_bytes() == b"SQLite format 3\0"
