"""Bad input: scanning never crashes or hangs; every problem names the file; what can load, loads."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvision.io import (
    MedvisionIOError,
    NoImagesError,
    PixelDataError,
    UnsupportedDataError,
    load,
    scan,
)

from .dicomgen import slice_values, write_series


def _series(tmp_path, n=6, **kw):
    return write_series(tmp_path / "s", n=n, shuffle=False, **kw)


def test_truncated_file_is_left_out_with_its_name(tmp_path):
    paths = _series(tmp_path)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 300])  # cut inside the pixel data
    v = load(tmp_path / "s")
    assert v.shape[0] == 5
    text = " ".join(v.metadata["warnings"])
    assert paths[2].name in text and "truncated" in text


def test_file_cut_inside_its_header(tmp_path):
    paths = _series(tmp_path)
    paths[0].write_bytes(paths[0].read_bytes()[:300])
    result = scan(tmp_path / "s")
    assert sum(s.instance_count for s in result.all_series()) in (5, 6)
    v = load(tmp_path / "s")
    assert v.shape[0] == 5
    assert paths[0].name in " ".join(v.metadata["warnings"] + result.problems)


def test_garbage_after_the_preamble(tmp_path):
    paths = _series(tmp_path)
    paths[3].write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 20)
    result = scan(tmp_path / "s")
    problem = next(p for p in result.problems if paths[3].name in p)
    assert "DICOM" in problem
    assert load(tmp_path / "s").shape[0] == 5


def test_random_bytes_are_not_dicom(tmp_path):
    _series(tmp_path)
    (tmp_path / "s" / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "s" / "notes").write_text("hello")
    result = scan(tmp_path / "s")
    assert any("junk.dcm: not a DICOM file" in p for p in result.problems)
    assert any("notes: not a DICOM file" in p for p in result.problems)
    assert load(tmp_path / "s").shape[0] == 6


def test_missing_image_position_falls_back_to_instance_order(tmp_path):
    write_series(tmp_path / "s", n=5, positions=[None] * 5)
    v = load(tmp_path / "s")
    assert v.shape[0] == 5
    assert any("ImagePositionPatient missing" in w for w in v.metadata["warnings"])
    np.testing.assert_array_equal(v.array[0], slice_values(0, 24, 20).astype(np.int32) - 1024)


def test_missing_pixel_spacing_is_stated(tmp_path):
    _series(tmp_path, spacing=None)
    v = load(tmp_path / "s")
    assert any("no PixelSpacing" in w for w in v.metadata["warnings"])
    np.testing.assert_allclose(v.spacing[:2], [1.0, 1.0])


def test_rows_columns_that_differ_inside_a_series(tmp_path):
    uid, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    write_series(tmp_path / "s" / "a", n=5, series_uid=uid, study_uid=study)
    write_series(tmp_path / "s" / "b", n=2, rows=30, cols=30, series_uid=uid, study_uid=study,
                 origin=(0, 0, 200))
    v = load(tmp_path / "s")
    assert v.shape == (5, 24, 20)
    assert any("30x30" in w and "2 stacks" in w for w in v.metadata["warnings"])


def test_empty_pixel_data(tmp_path):
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[1])
    ds.PixelData = b""
    ds.save_as(paths[1])
    v = load(tmp_path / "s")
    assert v.shape[0] == 5
    assert any(paths[1].name in w and "empty" in w for w in v.metadata["warnings"])
    with pytest.raises(PixelDataError, match="empty"):
        load(paths[1])


def test_file_without_pixel_data(tmp_path):
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[4])
    del ds.PixelData
    ds.save_as(paths[4])
    v = load(tmp_path / "s")
    assert v.shape[0] == 5
    with pytest.raises(MedvisionIOError, match="no pixel data"):
        load(paths[4])


def test_unsupported_transfer_syntax(tmp_path):
    paths = _series(tmp_path, n=3)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: video, no image decoder
        ds.PixelData = pydicom.encaps.encapsulate([b"\0" * 64])
        ds.save_as(p, enforce_file_format=True)
    with pytest.raises(UnsupportedDataError) as info:
        load(tmp_path / "s")
    assert "MPEG2" in str(info.value) and paths[0].name in str(info.value)


def test_undecodable_compressed_frame_names_the_file(tmp_path):
    # pydicom's 12-bit JPEG Extended sample has no working decoder here
    shutil.copy(get_testdata_file("JPEG-lossy.dcm"), tmp_path / "lossy.dcm")
    with pytest.raises(MedvisionIOError) as info:
        load(tmp_path / "lossy.dcm")
    assert "lossy.dcm" in str(info.value)


def test_folder_with_no_images(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / "b.bin").write_bytes(b"\1\2\3")
    with pytest.raises(NoImagesError, match="no DICOM image series"):
        load(tmp_path / "docs")
    shutil.copy(get_testdata_file("test-SR.dcm"), tmp_path / "docs" / "sr.dcm")
    with pytest.raises(NoImagesError, match="SR"):
        load(tmp_path / "docs")


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoImagesError):
        load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope")


def test_truncated_real_file_from_pydicom(tmp_path):
    shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(MedvisionIOError, match="mr.dcm"):
        load(tmp_path / "mr.dcm")


def test_scan_survives_unreadable_files(tmp_path):
    paths = _series(tmp_path)
    paths[0].chmod(0)
    try:
        result = scan(tmp_path / "s")
        assert sum(s.instance_count for s in result.all_series()) >= 5
    finally:
        paths[0].chmod(0o644)


def test_non_image_object_in_a_series_folder_is_skipped_silently(tmp_path):
    # Philips puts private non-image objects (XX_*: series data, no pixel data, a private SOP
    # class) beside the images; like dcm2niix, they are not images, not damaged files
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[0])
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.3.46.670589.11.0.0.12.2"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "s" / "XX_0001")
    v = load(tmp_path / "s")
    assert v.shape[0] == 6
    assert not any("left out" in w for w in v.metadata["warnings"])
    with pytest.raises(NoImagesError, match="not an image"):
        load(tmp_path / "s" / "XX_0001")
