"""Display geometry (radiological convention for any acquisition plane) and windowing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medvision.core.display import DisplayGrid, direction_letters
from medvision.core.volume import Volume, affine_from_geometry
from medvision.core.windowing import CT_PRESETS, Window, WindowMapper, auto_window, initial_window


def _lps_volume(shape=(7, 6, 5), spacing=(0.8, 0.9, 2.5)) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 2000, size=shape).astype(np.int16)
    return Volume(array, affine_from_geometry(spacing, (-10.0, 20.0, 30.0)), metadata={"modality": "CT"})


def _all_codes():
    for perm in itertools.permutations("XYZ"):
        for signs in itertools.product((0, 1), repeat=3):
            letters = {"X": "RL", "Y": "AP", "Z": "IS"}
            yield "".join(letters[a][s] for a, s in zip(perm, signs, strict=True))


@pytest.mark.parametrize("code", list(_all_codes()))
def test_every_acquisition_orientation_shows_the_same_anatomy(code):
    """However the series was acquired, the display view is the LPS volume, voxel for voxel."""
    lps = _lps_volume()
    acquired = lps.reoriented(code)
    grid = DisplayGrid(acquired)
    assert grid.shape_xyz == lps.shape[::-1]
    np.testing.assert_array_equal(grid.view_of(acquired.array), lps.array)
    np.testing.assert_allclose(grid.affine, lps.affine, atol=1e-9)
    for plane in ("axial", "coronal", "sagittal"):
        n = grid.n_slices(plane)
        np.testing.assert_array_equal(grid.image(plane, n // 2), DisplayGrid(lps).image(plane, n // 2))
        assert grid.edge_labels(plane) == DisplayGrid(lps).edge_labels(plane)
    # the voxel under a display index is the acquired volume's voxel at the mapped index
    ijk = np.array([1, 2, 3])
    x, y, z = grid.to_volume_index(ijk)
    assert acquired.array[z, y, x] == lps.array[3, 2, 1]
    np.testing.assert_allclose(acquired.index_to_world([x, y, z]), grid.world(ijk), atol=1e-9)


def test_planes_follow_radiological_convention():
    vol = _lps_volume(shape=(4, 5, 6))
    grid = DisplayGrid(vol)
    a = vol.array
    # axial: viewed from the feet, anterior (low y) at the top, patient's right (low x) on the left
    np.testing.assert_array_equal(grid.image("axial", 2), a[2])
    assert grid.edge_labels("axial") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # coronal: superior (high z) at the top
    np.testing.assert_array_equal(grid.image("coronal", 1), a[::-1, 1, :])
    assert grid.edge_labels("coronal") == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    # sagittal: anterior on the left, superior at the top
    np.testing.assert_array_equal(grid.image("sagittal", 3), a[::-1, :, 3])
    assert grid.edge_labels("sagittal") == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    assert grid.pixel_size("coronal") == pytest.approx((2.5, 0.8))
    assert grid.pixel_size("sagittal") == pytest.approx((2.5, 0.9))


def test_screen_coordinates_round_trip():
    grid = DisplayGrid(_lps_volume(shape=(9, 8, 7)))
    ijk = np.array([2.0, 5.0, 6.0])
    for plane in ("axial", "coronal", "sagittal"):
        p = grid.to_screen(plane, ijk)
        np.testing.assert_allclose(grid.from_screen(plane, p.slice, p.row, p.col), ijk)
    # coronal row 0 is the most superior slice
    assert grid.to_screen("coronal", np.array([0, 0, 8])).row == 0
    lps = grid.world(ijk)
    np.testing.assert_allclose(grid.from_world(lps), ijk)
    np.testing.assert_array_equal(grid.clamp([-3, 100, 4.6]), [0, 7, 5])


def test_oblique_grid_labels_and_obliquity():
    rot = np.array([[np.cos(np.radians(30)), -np.sin(np.radians(30)), 0],
                    [np.sin(np.radians(30)), np.cos(np.radians(30)), 0], [0, 0, 1]])
    vol = Volume(np.zeros((3, 4, 5), np.int16), affine_from_geometry((1, 1, 1), (0, 0, 0), rot))
    grid = DisplayGrid(vol)
    assert grid.obliquity_deg == pytest.approx(30, abs=1e-6)
    labels = grid.edge_labels("axial")
    assert labels["right"] == "LP" and labels["left"] == "RA"
    assert direction_letters([0.0, 0.0, -1.0]) == "I"
    assert direction_letters([0.1, 0.0, 1.0]) == "S"  # a small tilt is not worth a second letter


def test_value_at_and_4d():
    arr = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    vol = Volume(arr, affine_from_geometry((1, 1, 1), (0, 0, 0), np.diag([-1.0, 1.0, 1.0])))  # x runs to R
    grid = DisplayGrid(vol)
    # display x = 0 is the patient's rightmost column: volume x = 4
    assert grid.value_at(np.array([0, 1, 2]), frame=1) == arr[1, 2, 1, 4]
    assert grid.value_at(np.array([5, 0, 0])) is None
    assert grid.view_of(arr).shape == arr.shape
    with pytest.raises(ValueError):
        grid.image("axial", 0)  # a 4D volume: pick a frame first
    np.testing.assert_array_equal(grid.image("axial", 2, arr[1]), arr[1, 2, :, ::-1])


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.int8, np.float32, np.int32])
def test_window_mapper_matches_the_formula(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (max(info.min, -3000), min(info.max, 3000)) if info else (-3000, 3000)
    image = rng.integers(lo, hi, size=(40, 30)).astype(dtype)
    window = Window(center=(lo + hi) / 4, width=(hi - lo) / 3)
    mapper = WindowMapper()
    expected = np.clip(np.rint((image.astype(np.float64) - window.low) * 255 / window.width), 0, 255)
    got = mapper.map(image, window)
    assert got.dtype == np.uint8 and got.shape == image.shape
    assert np.abs(got.astype(int) - expected).max() <= 1
    inverted = mapper.map(image[:, ::-1], window, invert=True)  # strided views too
    np.testing.assert_array_equal(inverted, 255 - got[:, ::-1])


def test_auto_window_ignores_background_and_initial_window():
    rng = np.random.default_rng(2)
    mr = np.zeros((20, 64, 64), np.uint16)
    mr[:, 16:48, 16:48] = rng.normal(600, 100, size=(20, 32, 32)).clip(1, None).astype(np.uint16)
    w = auto_window(mr)
    assert 300 < w.low < 500 and 700 < w.high < 950
    assert initial_window(mr, {"modality": "MR"}) == (w, "automatic")
    ct = np.full((4, 8, 8), -1024, np.int16)
    assert initial_window(ct, {"modality": "CT"}) == (CT_PRESETS["CT abdomen"], "CT abdomen")
    assert initial_window(ct, {"modality": "CT", "window_center": 40.0, "window_width": 350.0}) == \
        (Window(40.0, 350.0), "DICOM")
    assert CT_PRESETS["CT lung"].low == pytest.approx(-1350)


def test_auto_window_of_a_two_valued_image_shows_both_values():
    page = np.zeros((1, 40, 60), np.uint16)
    page[0, 10:30, 5:50] = 4095  # a scanned document, a mask: two values only
    w = auto_window(page)
    assert w.low <= 0 and w.high >= 4095


def test_ct_is_recognised_from_hounsfield_units():
    from medvision.core.windowing import looks_like_ct

    rng = np.random.default_rng(3)
    ct = np.full((10, 64, 64), -1000, np.int16)
    ct[:, 12:52, 12:52] = rng.normal(40, 30, (10, 40, 40)).astype(np.int16)  # a body in air
    assert looks_like_ct(ct)
    assert not looks_like_ct(np.clip(ct + 1000, 0, None).astype(np.uint16))  # MR-like: no air at -1000
    zscored = (ct - ct.mean()) / ct.std()
    assert not looks_like_ct(zscored.astype(np.float32))
