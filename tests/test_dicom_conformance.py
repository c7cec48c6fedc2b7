"""Conformance with dcm2niix, the field's reference converter: same grid, identical voxels."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from medvision.core import Volume
from medvision.io import load

from .conftest import SAMPLE_CT

MR_SERIES = {
    "In/20180918GE/mr_0004": "DCM2NIIX_regression_test_4",
    "In/20180918GE/mr_0005": "DCM2NIIX_regression_test_5",
    "In/20180918GE/mr_0006": "DCM2NIIX_regression_test_6",
    "In/20180918GE/mr_0007": "DCM2NIIX_regression_test_7",
    "In/20180918Si/mr_0003": "EPI_PE=AP_3",
    "In/20180918Si/mr_0004": "EPI_PE=PA_4",
    "In/20180918Si/mr_0005": "EPI_PE=RL_5",
    "In/20180918Si/mr_0006": "EPI_PE=LR_6",
}


def assert_same_grid_and_voxels(ours: Volume, reference: Volume) -> None:
    a, b = ours.reoriented("LPS"), reference.reoriented("LPS")
    assert a.array.shape == b.array.shape
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-3)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-4)
    np.testing.assert_allclose(a.origin, b.origin, atol=0.01)
    for t in range(a.n_frames):  # every volume of a 4D series
        np.testing.assert_array_equal(a.frame(t).array.astype(np.float64), b.frame(t).array.astype(np.float64))


@pytest.mark.parametrize("series,ref", sorted(MR_SERIES.items()))
def test_mr_series_match_dcm2niix_reference(shared_data, series, ref):
    base = shared_data / "dicom" / "mr_epi_ge_siemens"
    ours = load(base / series)
    reference = Volume.from_sitk(sitk.ReadImage(str(base / "Ref" / f"{ref}.nii")))
    assert ours.is_4d and ours.n_frames == reference.n_frames
    assert ours.metadata["frame_axis"] == "time"
    assert_same_grid_and_voxels(ours, reference)
    assert not ours.metadata["warnings"]


def _dcm2niix(exe: str, folder, out_dir) -> Volume:
    subprocess.run([exe, "-z", "n", "-b", "n", "-f", "ref", "-o", str(out_dir), str(folder)],
                   check=True, capture_output=True)
    files = sorted(out_dir.glob("ref*.nii"))
    assert len(files) == 1, files
    return Volume.from_sitk(sitk.ReadImage(str(files[0])))


def test_bundled_ct_matches_dcm2niix(dcm2niix, tmp_path):
    ours = load(SAMPLE_CT)
    assert ours.dtype == np.int16  # HU: rescale applied without converting to float
    assert ours.metadata["modality"] == "CT"
    assert ours.shape == (20, 512, 512)
    assert_same_grid_and_voxels(ours, _dcm2niix(dcm2niix, SAMPLE_CT, tmp_path))


def test_shared_ct_matches_dcm2niix(shared_data, dcm2niix, tmp_path):
    folder = shared_data / "dicom" / "ct_abdomen_siemens_j2k"
    assert_same_grid_and_voxels(load(folder), _dcm2niix(dcm2niix, folder, tmp_path))


def test_ct_is_geometrically_sorted_and_in_hounsfield_units():
    v = load(SAMPLE_CT)
    # slices ascend along the normal (z superior); air outside the body is about -1000 HU
    assert v.direction[2, 2] > 0.99
    corner = v.array[:, :10, :10]
    assert -1100 < np.median(corner) < -900
