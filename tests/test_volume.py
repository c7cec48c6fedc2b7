from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from medvision.core import Volume, affine_from_geometry, orientation_code


def _oblique_direction(angle_deg: float = 20.0) -> np.ndarray:
    a = np.radians(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return rz @ rx


def test_geometry_is_derived_from_the_affine():
    d = _oblique_direction()
    v = Volume(np.zeros((4, 5, 6), np.int16), affine_from_geometry((0.5, 0.7, 2.0), (1, 2, 3), d))
    assert v.shape == (4, 5, 6)
    np.testing.assert_allclose(v.spacing, [0.5, 0.7, 2.0])
    np.testing.assert_allclose(v.origin, [1, 2, 3])
    np.testing.assert_allclose(v.direction, d, atol=1e-12)
    assert v.array.dtype == np.int16


def test_index_world_round_trip():
    v = Volume(np.zeros((4, 5, 6), np.uint8), affine_from_geometry((0.5, 0.7, 2.0), (1, 2, 3), _oblique_direction()))
    idx = np.array([[0, 0, 0], [5, 4, 3], [2.5, 1.25, 0.5]])
    world = v.index_to_world(idx)
    np.testing.assert_allclose(world[0], [1, 2, 3])
    np.testing.assert_allclose(v.world_to_index(world), idx, atol=1e-9)


@pytest.mark.parametrize("four_d", [False, True])
def test_sitk_round_trip_is_lossless(four_d):
    rng = np.random.default_rng(0)
    shape = (3, 4, 5, 6) if four_d else (4, 5, 6)
    arr = rng.integers(-1024, 3000, size=shape).astype(np.int16)
    v = Volume(arr, affine_from_geometry((0.5, 0.7, 2.0), (1.5, -2, 3), _oblique_direction()),
               metadata={"frame_interval": 2.5} if four_d else {})
    img = v.to_sitk()
    assert img.GetDimension() == (4 if four_d else 3)
    assert img.GetPixelID() == sitk.sitkInt16
    back = Volume.from_sitk(img)
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, v.affine, atol=1e-12)
    if four_d:
        assert back.metadata["frame_interval"] == 2.5


def test_sitk_geometry_matches_itk_physical_points():
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    v = Volume(arr, affine_from_geometry((0.5, 0.7, 2.0), (1.5, -2, 3), _oblique_direction()))
    img = v.to_sitk()
    for xyz in [(0, 0, 0), (5, 4, 3), (1, 2, 3)]:
        np.testing.assert_allclose(img.TransformIndexToPhysicalPoint(xyz), v.index_to_world(xyz), atol=1e-9)
        assert img[xyz] == arr[xyz[2], xyz[1], xyz[0]]


def _all_axis_affines():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for i, (p, s) in enumerate(zip(perm, signs, strict=True)):
                m[p, i] = s
            yield m


@pytest.mark.parametrize("direction", list(_all_axis_affines()))
def test_reorientation_keeps_every_voxel_in_place(direction):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 1000, size=(2, 3, 4, 5)).astype(np.int16)  # 4D: frames follow the same flips
    v = Volume(arr, affine_from_geometry((0.5, 0.7, 2.0), (10, -20, 30), direction))
    for target in ("LPS", "RAS", "LIP", "SAR"):
        r = v.reoriented(target)
        assert r.orientation == target
        assert r.array.dtype == np.int16 and r.n_frames == 2
        # every voxel keeps its value at its world position
        zs, ys, xs = np.meshgrid(*[np.arange(n) for n in v.shape], indexing="ij")
        idx = np.stack([xs.ravel(), ys.ravel(), zs.ravel()], axis=1)
        world = v.index_to_world(idx)
        ridx = np.rint(r.world_to_index(world)).astype(int)
        np.testing.assert_allclose(r.index_to_world(ridx), world, atol=1e-9)
        np.testing.assert_array_equal(r.array[:, ridx[:, 2], ridx[:, 1], ridx[:, 0]],
                                      v.array[:, idx[:, 2], idx[:, 1], idx[:, 0]])


def test_orientation_code_of_oblique_grid_is_a_permutation():
    for angle in (10, 40, 44):
        code = orientation_code(affine_from_geometry((1, 1, 1), (0, 0, 0), _oblique_direction(angle)))
        assert sorted("RLAPIS".index(c) // 2 for c in code) == [0, 1, 2], code
    assert orientation_code(np.diag([-1.0, -1, 1, 1])) == "RAS"
    assert orientation_code(np.eye(4)) == "LPS"


def test_frame_of_4d_volume_shares_memory():
    v = Volume(np.zeros((3, 2, 2, 2), np.int16), np.eye(4))
    f = v.frame(1)
    assert not f.is_4d and np.shares_memory(f.array, v.array)
    with pytest.raises(IndexError):
        Volume(np.zeros((2, 2, 2)), np.eye(4)).frame(1)


def test_invalid_volumes_are_refused():
    with pytest.raises(ValueError):
        Volume(np.zeros((2, 2)), np.eye(4))
    bad = np.eye(4)
    bad[2, 2] = 0
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((2, 2, 2)), bad)
