"""Where opened paths go (io.routing), without a window: image files load, a lone non-DICOM file is
read alone, a DICOM file opens its own series among other series in its folder, folders and sets
are scanned, missing paths are named; after a scan the asked, the only, or the largest series."""

from __future__ import annotations

import numpy as np
import pytest

from medvision.core.volume import Volume
from medvision.io import DicomIndex, save
from medvision.io.errors import NoImagesError
from medvision.io.routing import is_dicom_collection, pick_series, plan_open

from .dicomgen import write_series


@pytest.fixture
def two_series(tmp_path):
    folder = tmp_path / "study"
    small = write_series(folder / "a", n=4, series_uid="1.2.3.1")
    large = write_series(folder / "b", n=9, series_uid="1.2.3.2")
    flat = tmp_path / "flat"  # both series in one folder, as a PACS export writes them
    flat.mkdir()
    for i, p in enumerate(small + large):
        (flat / f"f{i:03d}.dcm").write_bytes(p.read_bytes())
    return folder, flat, small, large


def test_plans(tmp_path, two_series):
    folder, flat, small, _large = two_series
    nifti = tmp_path / "t1.nii.gz"
    save(Volume(np.zeros((3, 4, 5), np.int16), np.eye(4)), nifti)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")

    plan = plan_open([str(folder), str(nifti), str(tmp_path / "gone.dcm")])
    assert (plan.action, plan.target, plan.label) == ("load", str(nifti), "t1.nii.gz")
    assert plan.missing == [str(tmp_path / "gone.dcm")] and "no such file or folder" in plan.missing_text
    assert "2 items opened together" in plan.note

    plan = plan_open([str(text)])
    assert (plan.action, plan.target, plan.member) == ("load", str(text), None)

    member = str(flat / "f000.dcm")
    plan = plan_open([member])
    assert (plan.action, plan.member, plan.label) == ("scan", member, "flat")
    assert plan.scan == sorted(str(p) for p in flat.iterdir())

    plan = plan_open([str(folder)])
    assert (plan.action, plan.scan, plan.label) == ("scan", str(folder), "study")
    plan = plan_open([str(p) for p in small])
    assert plan.action == "scan" and plan.scan == [str(p) for p in small] and plan.label == "4 items"

    plan = plan_open([str(tmp_path / "a"), str(tmp_path / "b")])
    assert plan.action == "nothing" and "(and 1 more missing)" in plan.missing_text
    assert is_dicom_collection(folder) and not is_dicom_collection(nifti)


def test_picking_the_series(tmp_path, two_series):
    folder, flat, _small, _large = two_series
    index = DicomIndex(tmp_path / "index.sqlite")
    try:
        from medvision.core.jobs import run_job

        result = run_job(index.scan(str(folder)))
        chosen, note = pick_series(result)
        assert chosen.uid == "1.2.3.2" and "2 image series; opened the largest" in note
        chosen, note = pick_series(result, "1.2.3.1")
        assert chosen.uid == "1.2.3.1" and note == ""
        # a lone file of the flat folder opens its own series, the smaller one
        member = str(flat / "f000.dcm")
        result = run_job(index.scan(plan_open([member]).scan))
        chosen, note = pick_series(result, member=member)
        assert chosen.uid == "1.2.3.1" and note == ""
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(NoImagesError):
            pick_series(run_job(index.scan(str(empty))))
    finally:
        index.close()
