"""A real series whose Study/Series/SOP UIDs an anonymiser left empty (../shared/data/dicom/quirks/
blank_uids: only the file meta holds the SOP UIDs): it is told apart on opening (in the window's
warnings too), and DICOM SEG export works, referencing the images by their file meta's SOP Instance
UIDs under Study/Series UIDs medvision generates, the same on every export, and says so."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest

from medvision.core.labels import LabelMap, LabelTable
from medvision.io import load
from medvision.io.dicom.series import BLANK_UIDS_WARNING
from medvision.io.labels import save_labels
from medvision.io.seg import BLANK_UIDS_NOTE, read_seg, write_seg

from .test_labels_io import _dciodvfy_errors


@pytest.fixture
def blank(shared_data):
    return shared_data / "dicom" / "quirks" / "blank_uids"


def _labels(volume) -> LabelMap:
    array = np.zeros(volume.array.shape, np.uint8)
    array[:, 200:300, 180:260] = 1
    array[1, 300:340, 300:360] = 2
    table = LabelTable()
    table.add("liver")
    table.add("spleen")
    return LabelMap(array, volume.affine, table)


def test_the_series_is_told_apart_and_its_seg_is_valid(blank, tmp_path, caplog):
    volume = load(blank)
    assert BLANK_UIDS_WARNING in volume.metadata["warnings"]
    meta_uids = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
                 for p in blank.iterdir()}
    labels = _labels(volume)
    with caplog.at_level("WARNING", logger="medvision.io.seg"):
        path = write_seg(labels, volume, tmp_path / "seg.dcm")
    assert "StudyInstanceUID and SeriesInstanceUID were empty" in caplog.text
    assert _dciodvfy_errors(path) == []
    seg = pydicom.dcmread(path)
    assert seg.ContentDescription == BLANK_UIDS_NOTE
    (series,) = seg.ReferencedSeriesSequence
    assert {str(i.ReferencedSOPInstanceUID) for i in series.ReferencedInstanceSequence} == meta_uids
    assert str(seg.StudyInstanceUID) in caplog.text and str(series.SeriesInstanceUID) in caplog.text
    # the same series gets the same generated UIDs on every export: two SEGs of it belong together
    again = pydicom.dcmread(write_seg(labels, volume, tmp_path / "again.dcm"))
    assert again.StudyInstanceUID == seg.StudyInstanceUID
    assert again.ReferencedSeriesSequence[0].SeriesInstanceUID == series.SeriesInstanceUID
    assert again.SeriesInstanceUID != seg.SeriesInstanceUID  # (each SEG is its own series)
    assert np.array_equal(read_seg(path, reference=volume).array, labels.array)


def test_the_cli_writes_the_seg_and_says_why_uids_were_made(blank, tmp_path):
    volume = load(blank)
    save_labels(_labels(volume), tmp_path / "labels.nii.gz")
    # a process of its own: what the terminal shows (the warning through the CLI's own log handler)
    r = subprocess.run([sys.executable, "-m", "medvision.cli", "convert", str(tmp_path / "labels.nii.gz"),
                        "--reference", str(blank), "-o", str(tmp_path / "seg.dcm")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "UIDs are empty" in r.stderr and "wrote" in r.stdout
    assert _dciodvfy_errors(tmp_path / "seg.dcm") == []


def test_the_window_warns_and_exports_the_seg(qtbot, window, blank, tmp_path):
    from .qtutil import open_and_wait

    assert open_and_wait(qtbot, window, blank)
    assert window.warning_button.isVisibleTo(window) and "UIDs are empty" in window.warning_button.toolTip()
    ann = window.annotating.annotation
    ann.set_labels(_labels(window.viewer.volume), saved=False)
    failures = []
    ann.failed.connect(failures.append)
    assert window.annotating._export_seg(str(tmp_path / "labels.seg.dcm"), wait=True), failures
    assert not failures
    assert _dciodvfy_errors(tmp_path / "labels.seg.dcm") == []
