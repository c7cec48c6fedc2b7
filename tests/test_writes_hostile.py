"""Writes that fail: a full disk never leaves a truncated file in place of the old one and says how much was
needed; a killed write's temporary files are cleaned by the next write to that folder; an unexpected
error ends as one sentence with its traceback in a private log."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from medvision.core.atomic import TMP_PREFIX, sweep, write_bytes, write_text
from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume, affine_from_geometry
from medvision.io.errors import MedvisionIOError
from medvision.io.labels import save_labels
from medvision.io.volumes import write_volume


def _volume(shape=(100, 100, 100), seed=0) -> Volume:
    rng = np.random.default_rng(seed)  # noise: compresses badly, so the small disk really fills
    affine = affine_from_geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    return Volume(rng.integers(-1000, 1000, shape, dtype=np.int16), affine, None, {"modality": "CT"})


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()[:100]}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz", "ct.nrrd", "ct.mha"])
def test_a_full_disk_keeps_the_old_file_and_says_how_much_was_needed(small_disk, name):
    target = small_disk / name
    target.write_bytes(b"the old file")
    with pytest.raises(MedvisionIOError, match=r"writing failed.*is full: about 1\.9 MB were needed.*nothing was "
                                               "overwritten"):
        write_volume(_volume(), target)
    assert target.read_bytes() == b"the old file"
    assert [p.name for p in small_disk.iterdir()] == [name]  # no temporary file left


def test_labels_and_the_cli_on_a_full_disk(small_disk, tmp_path, capsys):
    table = LabelTable()
    table.add("liver")
    labels = LabelMap(np.random.default_rng(1).integers(0, 256, (120, 100, 100), dtype=np.uint8),
                      affine_from_geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), table)
    target = small_disk / "labels.nii.gz"
    with pytest.raises(MedvisionIOError, match="nothing was overwritten"):
        save_labels(labels, target)
    assert not target.exists()
    from medvision.cli import main

    src = tmp_path / "ct.nii.gz"
    write_volume(_volume(), src)
    assert main(["convert", "-q", str(src), "-o", str(small_disk / "out.nii")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is full" in err and not (small_disk / "out.nii").exists()


def test_a_writer_that_returns_after_writing_part_of_the_file_is_caught(tmp_path, monkeypatch):
    """SimpleITK on a full disk prints "wrote only N of M bytes" and returns: the file is read back first."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def partial(image, path, *args, **kwargs):
        real(image, path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) * 2 // 3])

    monkeypatch.setattr(sitk, "WriteImage", partial)
    for name in ("a.nii", "a.nii.gz", "a.nrrd"):
        target = tmp_path / name
        target.write_bytes(b"old")
        with pytest.raises(MedvisionIOError, match="writing failed"):
            write_volume(_volume((4, 20, 20)), target)
        assert target.read_bytes() == b"old"


def test_a_killed_writes_temporary_files_are_cleaned_by_the_next_write_there(tmp_path):
    stale_dir = tmp_path / f"{TMP_PREFIX}ct.nii.gz.abc123.tmp"
    stale_dir.mkdir()
    (stale_dir / "ct.nii.gz").write_bytes(b"half")
    stale_file = tmp_path / f"{TMP_PREFIX}case.labels.json.xyz.tmp"
    stale_file.write_text("{")
    fresh = tmp_path / f"{TMP_PREFIX}other.nii.gz.q1.tmp"  # another write in progress right now
    fresh.mkdir()
    foreign = tmp_path / ".somebody-elses.tmp"  # not ours
    foreign.write_text("x")
    old = time.time() - 2 * 3600
    for p in (stale_dir, stale_file, foreign):
        os.utime(p, (old, old))
    write_text(tmp_path / "notes.json", "{}")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([fresh.name, foreign.name, "notes.json"])
    assert sweep(tmp_path) == 0


def test_an_unexpected_error_is_one_sentence_with_the_traceback_in_a_private_log(monkeypatch, capsys,
                                                                                 medvision_home):
    from medvision import cli

    def boom(args):
        raise RuntimeError("something nobody expected\nsecond line")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=boom)
    assert cli.main(["info", "/some/study"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "info failed on /some/study: unexpected error (RuntimeError: something nobody expected)" in err
    log = Path(medvision_home) / "data" / "logs" / "medvision.log"
    assert f"details in {log}" in err
    assert "Traceback" in log.read_text() and "second line" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_the_checkpoint_write_helper_on_a_full_disk_leaves_the_old_file(small_disk):
    target = small_disk / "checkpoint.pt"
    target.write_bytes(b"previous epoch")
    with pytest.raises(OSError):
        write_bytes(target, os.urandom(2 << 20))
    assert target.read_bytes() == b"previous epoch"
    assert [p.name for p in small_disk.iterdir()] == ["checkpoint.pt"]


def test_an_uncaught_error_in_the_window_is_a_sentence_there_and_a_traceback_in_the_log(window, monkeypatch,
                                                                                      medvision_home):
    import sys

    from medvision.ui.app.app import install_excepthook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    install_excepthook(window)
    try:
        raise ValueError("a slot broke\nmore")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert window.last_error.startswith("unexpected error: ValueError: a slot broke; details in ")
    assert window.isVisible()
    log = Path(medvision_home) / "data" / "logs" / "medvision.log"
    assert "a slot broke" in log.read_text() and "Traceback" in log.read_text()


def test_a_dicom_seg_on_a_full_disk_is_one_sentence_and_leaves_nothing(small_disk, capsys):
    from medvision.cli import main

    sample = Path(__file__).resolve().parents[1] / "resources" / "sample" / "ct_abdomen_siemens_j2k"
    labels_file = Path(__file__).resolve().parents[1] / "resources" / "sample" / \
        "ct_abdomen_siemens_j2k.totalseg_labels.nii.gz"
    filler = small_disk / "filler.bin"
    filler.write_bytes(os.urandom(1024 * 1024 - 64 * 1024))  # 64 kB left: far less than the SEG needs
    target = small_disk / "labels.dcm"
    rc = main(["convert", "-q", str(labels_file), "--reference", str(sample), "-o", str(target)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and ("disk is full" in err or "No space left" in err), err
    assert not target.exists()
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler.bin"]
