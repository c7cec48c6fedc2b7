"""Scanning: folder trees, zips, DICOMDIR; the SQLite cache; non-image objects; odd UIDs."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvision.core import run_job
from medvision.io import DicomIndex, load, scan

from .conftest import SAMPLE_CT
from .dicomgen import write_series


def test_tree_of_patients_studies_series(tmp_path):
    write_series(tmp_path / "a", n=4)
    write_series(tmp_path / "b" / "deep", n=3, modality="MR", slope=None, intercept=None)
    result = scan(tmp_path)
    assert len(result.patients) == 1
    series = result.all_series()
    assert sorted(s.instance_count for s in series) == [3, 4]
    assert {s.modality for s in series} == {"CT", "MR"}
    assert all(s.kind == "image" and s.rows == 24 and s.columns == 20 for s in series)
    assert result.files_read == 7


def test_rescan_uses_the_cache_and_rereads_changed_files(tmp_path):
    paths = write_series(tmp_path / "s", n=6)
    index = DicomIndex(tmp_path / "index.sqlite")
    first = run_job(index.scan(tmp_path / "s"))
    assert first.files_read == 6
    again = run_job(index.scan(tmp_path / "s"))
    assert again.files_read == 0 and again.all_series()[0].instance_count == 6
    # change one file's description, delete another: only the changed one is re-read
    ds = pydicom.dcmread(paths[0])
    ds.SeriesDescription = "edited"
    ds.save_as(paths[0])
    os.utime(paths[0], ns=(1, 10**18))
    paths[1].unlink()
    third = run_job(index.scan(tmp_path / "s"))
    assert third.files_read == 1
    assert sum(s.instance_count for s in third.all_series()) == 5
    index.close()
    # the cache persists across processes/instances
    reopened = DicomIndex(tmp_path / "index.sqlite")
    assert run_job(reopened.scan(tmp_path / "s")).files_read == 0
    reopened.close()


def test_zip_archives_are_scanned_and_loaded(tmp_path):
    zpath = tmp_path / "study.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(SAMPLE_CT.iterdir()):
            zf.write(f, f"DICOM/{f.name}")
        zf.writestr("README.txt", "not dicom")
    result = scan(zpath)
    assert result.all_series()[0].instance_count == 20
    v = load(zpath)
    ref = load(SAMPLE_CT)
    assert (v.array == ref.array).all()


def test_dicomdir_lists_its_referenced_files(tmp_path):
    src = Path(get_testdata_file("DICOMDIR")).parent
    dst = tmp_path / "media"
    shutil.copytree(src, dst)
    result = scan(dst / "DICOMDIR")
    files = [f for s in result.all_series() for f in s.files]
    assert len(files) > 10
    ds = pydicom.dcmread(dst / "DICOMDIR")
    n_images = sum(1 for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE")
    assert len(files) == n_images
    assert len(result.patients) >= 2


def test_non_image_objects_are_listed_as_what_they_are(tmp_path):
    for name in ("rtstruct.dcm", "test-SR.dcm", "liver.dcm", "rtplan.dcm", "CT_small.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    result = scan(tmp_path)
    kinds = {s.kind for s in result.all_series()}
    assert {"RTSTRUCT", "SR", "SEG", "RTPLAN", "image"} <= kinds
    images = result.all_series(images_only=True)
    assert len(images) == 1 and images[0].modality == "CT"
    # a SEG is not offered as an image to load
    seg = next(s for s in result.all_series() if s.kind == "SEG")
    from medvision.io import NoImagesError

    with pytest.raises(NoImagesError, match="SEG"):
        load(tmp_path, series=seg.uid)


def test_several_series_need_a_choice(tmp_path):
    from medvision.io import MultipleSeriesError

    write_series(tmp_path / "x", n=3)
    write_series(tmp_path / "y", n=5)
    with pytest.raises(MultipleSeriesError) as info:
        load(tmp_path)
    assert "2 image series" in str(info.value) and "@0" in str(info.value)
    assert len(info.value.series) == 2
    result = scan(tmp_path)
    five = next(s for s in result.all_series() if s.instance_count == 5)
    assert load(tmp_path, series=five.uid).shape[0] == 5
    assert load(tmp_path, series="@" + str(result.all_series().index(five))).shape[0] == 5


def test_blank_uids_quirk_still_loads(shared_data):
    folder = shared_data / "dicom" / "quirks" / "blank_uids"
    result = scan(folder)
    (series,) = result.all_series()
    assert series.blank_uids and series.uid == "" and series.instance_count == 3
    assert any("empty Study/Series Instance UIDs" in p for p in result.problems)
    v = load(folder)
    assert v.shape == (3, 512, 512)
    ref = load(shared_data / "dicom" / "ct_abdomen_siemens_j2k")
    # the three files are the first three slices of the repaired series
    assert (v.array == ref.array[:3]).all() or (v.array == ref.array[-3:]).all()


def test_a_copy_of_a_study_in_another_folder_counts_its_images_once(tmp_path):
    for name in ("a", "b"):
        shutil.copytree(SAMPLE_CT, tmp_path / name)
    index = DicomIndex(tmp_path / "index.sqlite")
    run_job(index.scan(tmp_path / "a"))
    result = run_job(index.scan(tmp_path / "b"))
    (series,) = result.all_series()
    assert series.instance_count == 20 and series.frames == 20 and len(series.files) == 20
    (both,) = index.contents().all_series()
    assert both.instance_count == 20 and both.frames == 20 and len(both.files) == 40
    assert load(tmp_path).shape == (20, 512, 512)  # the loader reads each image once too
