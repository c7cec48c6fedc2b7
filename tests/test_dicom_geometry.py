"""Series -> Volume geometry on synthetic series with known truth, and on real pydicom files."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medvision.io import load, load_all

from .dicomgen import slice_values, write_series


def _expected_stack(n, rows, cols, frames=1):
    vols = [np.stack([slice_values(k, rows, cols, t) for k in range(n)]).astype(np.int32) - 1024
            for t in range(frames)]
    return np.stack(vols) if frames > 1 else vols[0]


def test_slices_sorted_by_position_not_by_name_or_instance(tmp_path):
    # file names are shuffled, instance numbers run backwards relative to position
    write_series(tmp_path / "s", n=9, extra_per_slice=lambda k, t: {"InstanceNumber": 100 - k})
    v = load(tmp_path / "s")
    assert v.shape == (9, 24, 20) and v.dtype == np.int16
    np.testing.assert_array_equal(v.array, _expected_stack(9, 24, 20))
    np.testing.assert_allclose(v.spacing, [0.7, 0.8, 2.0])
    np.testing.assert_allclose(v.origin, [-10, -20, 30])
    assert v.metadata["warnings"] == []


def test_oblique_and_sagittal_acquisitions_keep_their_affine(tmp_path):
    a = np.radians(25)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([0.0, 0.0, -1.0])  # sagittal-ish, columns run inferior
    write_series(tmp_path / "o", n=6, iop=(*row, *col), dz=3.0, origin=(5, 6, 7))
    v = load(tmp_path / "o")
    normal = np.cross(row, col)
    np.testing.assert_allclose(v.affine[:3, 0], row * 0.7, atol=1e-9)
    np.testing.assert_allclose(v.affine[:3, 1], col * 0.8, atol=1e-9)
    np.testing.assert_allclose(v.affine[:3, 2], normal * 3.0, atol=1e-9)
    np.testing.assert_array_equal(v.array, _expected_stack(6, 24, 20))
    # the voxel (x=3, y=4, z=2) sits where DICOM says pixel (row 4, col 3) of slice 2 is
    expected = np.array([5, 6, 7]) + 2 * 3.0 * normal + 3 * 0.7 * row + 4 * 0.8 * col
    np.testing.assert_allclose(v.index_to_world([3, 4, 2]), expected, atol=1e-9)


def test_descending_positions_are_sorted_ascending_along_the_normal(tmp_path):
    positions = [np.array([0, 0, 100.0 - 2 * k]) for k in range(5)]
    write_series(tmp_path / "d", n=5, positions=positions)
    v = load(tmp_path / "d")
    assert v.affine[2, 2] == pytest.approx(2.0)
    assert v.origin[2] == pytest.approx(92.0)
    # the slice at z=92 is the one written as k=4
    np.testing.assert_array_equal(v.array[0], slice_values(4, 24, 20).astype(np.int32) - 1024)


def test_4d_series_becomes_a_leading_frame_axis(tmp_path):
    write_series(tmp_path / "t", n=4, frames=3, modality="MR", slope=None, intercept=None,
                 extra_per_slice=lambda k, t: {"TriggerTime": 50.0 * t})
    v = load(tmp_path / "t")
    assert v.is_4d and v.array.shape == (3, 4, 24, 20)
    assert v.dtype == np.uint16  # no rescale: stored dtype kept
    for t in range(3):
        np.testing.assert_array_equal(v.array[t], np.stack([slice_values(k, 24, 20, t) for k in range(4)]))
    assert v.metadata["frame_axis"] == "time"


def test_gantry_tilt_is_detected_and_corrected(tmp_path):
    tilt = np.radians(15)
    # slices advance along z but shift along y (posterior) with every slice: a tilted gantry
    positions = [np.array([0.0, 2.0 * k * np.tan(tilt), 2.0 * k]) for k in range(6)]
    write_series(tmp_path / "g", n=6, rows=40, cols=20, spacing=(1.0, 1.0), positions=positions)
    v = load(tmp_path / "g")
    assert v.metadata["gantry_tilt_deg"] == pytest.approx(15.0, abs=0.01)
    assert v.metadata["tilt_corrected"] is True
    assert v.is_orthogonal()
    np.testing.assert_allclose(v.affine[:3, 2], [0, 0, 2.0], atol=1e-9)
    assert any("gantry tilt" in w for w in v.metadata["warnings"])
    # slice k was shifted by -k*tan(15)*2 mm along y: the voxel at world y of row r of slice k
    # now holds the original value of that row (interpolated)
    shift = 2.0 * np.tan(tilt)
    k = 3
    orig = slice_values(k, 40, 20).astype(np.float64) - 1024
    # exact check: corrected[k, y] = original[k, y - k*shift] (linear)
    y = 30
    src = y - k * shift
    j = int(np.floor(src))
    f = src - j
    expected = orig[j, 5] * (1 - f) + orig[j + 1, 5] * f
    assert abs(v.array[k, y, 5] - expected) <= 0.51
    sheared = load(tmp_path / "g", correct_tilt=False)
    assert not sheared.is_orthogonal()
    np.testing.assert_allclose(sheared.affine[:3, 2], positions[1] - positions[0], atol=1e-9)


def test_non_uniform_spacing_warns_and_resamples_only_when_asked(tmp_path):
    zs = [0, 2, 4, 6, 10, 12]  # one slice missing
    write_series(tmp_path / "n", n=6, positions=[np.array([0, 0, z], float) for z in zs])
    v = load(tmp_path / "n")
    assert v.shape[0] == 6
    assert any("non-uniform slice spacing" in w for w in v.metadata["warnings"])
    r = load(tmp_path / "n", regularize=True)
    assert r.shape[0] == 7 and r.spacing[2] == pytest.approx(2.0)
    stack = _expected_stack(6, 24, 20)
    np.testing.assert_array_equal(r.array[:4], stack[:4])
    # z=8 was missing: linear interpolation between z=6 and z=10
    np.testing.assert_array_equal(r.array[4], (stack[3] + stack[4]) // 2)
    np.testing.assert_array_equal(r.array[5], stack[4])
    np.testing.assert_array_equal(r.array[6], stack[5])


def test_several_orientations_in_one_series_are_split(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.77"
    study = "1.2.826.0.1.3680043.8.498.78"
    write_series(tmp_path / "m" / "ax", n=5, series_uid=uid, study_uid=study)
    write_series(tmp_path / "m" / "cor", n=3, iop=(1, 0, 0, 0, 0, -1), series_uid=uid, study_uid=study)
    v = load(tmp_path / "m")
    assert v.shape[0] == 5  # the largest stack
    assert any("2 stacks" in w for w in v.metadata["warnings"])
    both = load_all(tmp_path / "m")
    assert [b.shape[0] for b in both] == [5, 3]
    assert "orientation" in both[1].metadata["stack"]


def test_echoes_are_split_into_separate_volumes(tmp_path):
    write_series(tmp_path / "e", n=4, frames=2, modality="MR",
                 extra_per_slice=lambda k, t: {"EchoNumbers": t + 1, "EchoTime": 10.0 * (t + 1),
                                               "TemporalPositionIdentifier": 1})
    vols = load_all(tmp_path / "e")
    assert len(vols) == 2 and all(not v.is_4d for v in vols)
    assert {v.metadata["stack"] for v in vols} == {"echo 1", "echo 2"}


def test_rescale_keeps_integers_and_goes_float_only_when_needed(tmp_path):
    write_series(tmp_path / "f", n=3, slope=0.5, intercept=-10.0)
    v = load(tmp_path / "f")
    assert v.dtype == np.float32
    np.testing.assert_allclose(v.array[1], slice_values(1, 24, 20) * 0.5 - 10.0)
    write_series(tmp_path / "i", n=3, slope=2.0, intercept=100.0)
    w = load(tmp_path / "i")
    assert w.dtype == np.int16
    np.testing.assert_array_equal(w.array[2], slice_values(2, 24, 20).astype(np.int32) * 2 + 100)


# ---- real files shipped with pydicom and pydicom-data ----------------------------------------
def test_compressed_encodings_decode_to_the_same_voxels():
    names = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
             "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm"]
    ref = load(get_testdata_file(names[0]))
    assert ref.shape == (1, 64, 64) and ref.dtype == np.int16
    for name in names[1:]:
        v = load(get_testdata_file(name))
        np.testing.assert_array_equal(v.array, ref.array, err_msg=name)
        np.testing.assert_allclose(v.affine, ref.affine, err_msg=name)


@pytest.mark.parametrize("name", ["693_UNCI.dcm", "693_J2KR.dcm", "MR2_UNCI.dcm", "MR2_J2KR.dcm", "JPEG-LL.dcm",
                                  "MR_small_padded.dcm", "CT_small.dcm",
                                  "JPEGLSNearLossless_16.dcm", "RG1_UNCI.dcm"])
def test_single_files_match_pydicom_decoding(name):
    """pydicom's own decoding + modality LUT is the reference for every transfer syntax."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    v = load(path)
    assert v.shape == (1, ds.Rows, ds.Columns)
    if v.dtype.kind == "f":  # a fractional slope: float32 holds the values to its precision
        np.testing.assert_allclose(v.array[0], expected, rtol=1e-6)
    else:
        np.testing.assert_array_equal(v.array[0], expected)
    if float(ds.get("RescaleSlope", 1)).is_integer() and float(ds.get("RescaleIntercept", 0)).is_integer():
        assert v.dtype.kind in "iu"  # no needless float conversion


def test_enhanced_ct_uses_per_frame_functional_groups():
    import pydicom

    path = get_testdata_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    v = load(path)
    assert v.metadata["modality"] == "CT"
    positions = [np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
                 for f in ds.PerFrameFunctionalGroupsSequence]
    assert v.shape[0] == len(positions) == 2
    world = [v.index_to_world([0, 0, k]) for k in range(2)]
    assert sorted(p[2] for p in positions) == pytest.approx(sorted(w[2] for w in world), abs=0.01)


def test_legacy_converted_enhanced_ct_equals_the_classic_series(tmp_path):
    """highdicom converts a classic series into one enhanced multi-frame object; both must load alike."""
    import pydicom
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    paths = write_series(tmp_path / "classic", n=7, rows=16, cols=12)
    datasets = [pydicom.dcmread(p) for p in paths]
    enhanced = LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=pydicom.uid.generate_uid(), series_number=2,
        sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1)
    out = tmp_path / "enhanced" / "ct.dcm"
    out.parent.mkdir()
    enhanced.save_as(out)
    a, b = load(tmp_path / "classic"), load(out)
    np.testing.assert_array_equal(b.array, a.array)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-6)
    assert b.dtype == a.dtype == np.int16


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "SC_rgb_small_odd.dcm",
                                  "SC_ybr_full_422_uncompressed.dcm"])
def test_colour_images_load_as_luminance_and_say_so(name):
    import pydicom

    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    rgb = ds.pixel_array.astype(np.float64)  # pydicom converts YBR to RGB
    v = load(path)
    assert v.shape == (1, ds.Rows, ds.Columns)
    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    assert np.abs(v.array[0] - expected).max() <= 1.0
    assert any("colour" in w for w in v.metadata["warnings"])
