"""The image type every layer shares: a voxel array on a patient-space grid.

Conventions (docs/architecture.md):

* ``array`` is C-contiguous ``(z, y, x)`` -- slice, row, column -- in its native dtype; a 4D series
  keeps a leading frame axis ``(t, z, y, x)`` on one affine.
* ``affine`` maps the index ``(x, y, z, 1)`` (column, row, slice) to patient coordinates in mm,
  **LPS** (+x to the patient's left, +y posterior, +z superior), as DICOM and ITK use.
* Spacing, origin and direction are derived from the affine, never stored twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Volume", "orientation_code", "affine_from_geometry", "closest_axes"]

_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative, positive) along LPS x, y, z


def affine_from_geometry(
    spacing: Iterable[float], origin: Iterable[float], direction: np.ndarray | None = None
) -> np.ndarray:
    """Build the 4x4 index->LPS affine from spacing (x, y, z), origin and a 3x3 direction.

    ``direction``'s columns are the unit vectors of the x, y and z index axes in LPS (ITK's
    convention).
    """
    spacing = np.asarray(list(spacing), dtype=np.float64)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    affine[:3, 3] = np.asarray(list(origin), dtype=np.float64)
    return affine


def orientation_code(affine: np.ndarray) -> str:
    """Three letters naming where each index axis (x, y, z) points, e.g. ``"LPS"``.

    For oblique grids each axis gets the patient axis it is closest to; the assignment is a
    permutation (no two index axes get the same patient axis).
    """
    axes, signs = closest_axes(np.asarray(affine)[:3, :3])
    return "".join(_AXIS_LETTERS[a][1 if s > 0 else 0] for a, s in zip(axes, signs, strict=True))


def closest_axes(linear: np.ndarray) -> tuple[list[int], list[int]]:
    """For each column of ``linear``, the world axis it is closest to and the sign, as a permutation."""
    cols = linear / np.linalg.norm(linear, axis=0, keepdims=True)
    weight = np.abs(cols)  # weight[world, index]
    axes = [-1, -1, -1]
    taken_world: set[int] = set()
    # Greedy: the strongest (world, index) pair first, so oblique grids get a consistent permutation.
    for flat in np.argsort(-weight, axis=None):
        w, i = divmod(int(flat), 3)
        if axes[i] == -1 and w not in taken_world:
            axes[i] = w
            taken_world.add(w)
    signs = [1 if cols[axes[i], i] >= 0 else -1 for i in range(3)]
    return axes, signs


@dataclass(eq=False)
class Volume:
    """A 3D image, or a 4D series of 3D frames, with its patient-space geometry.

    Attributes:
        array: ``(z, y, x)`` or ``(t, z, y, x)`` voxels in their native dtype.
        affine: 4x4 matrix from index ``(x, y, z, 1)`` to LPS millimetres.
        frame_of_reference_uid: DICOM Frame of Reference UID, when known.
        metadata: small dict: ``modality``, ``series_uid``, ``description``, ``rescale_applied``,
            ``frame_axis`` (``"time"``, ``"diffusion"``, ...) for 4D, ``warnings``, ...
    """

    array: np.ndarray
    affine: np.ndarray
    frame_of_reference_uid: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim not in (3, 4):
            raise ValueError(f"a Volume holds a 3D (z, y, x) or 4D (t, z, y, x) array, not {self.array.ndim}D")
        self.array = np.ascontiguousarray(self.array)
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError("affine is singular: the grid has a zero-length or degenerate axis")
        self.affine = affine

    # ---- shape ---------------------------------------------------------------------------
    @property
    def is_4d(self) -> bool:
        """True when ``array`` has a leading frame axis ``(t, z, y, x)``."""
        return self.array.ndim == 4

    @property
    def n_frames(self) -> int:
        return self.array.shape[0] if self.is_4d else 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(z, y, x)``."""
        return tuple(self.array.shape[-3:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def frame(self, t: int) -> Volume:
        """Frame ``t`` of a 4D volume as a 3D Volume sharing memory (a 3D volume returns itself)."""
        if not self.is_4d:
            if t != 0:
                raise IndexError(f"a 3D volume has only frame 0, not {t}")
            return self
        meta = dict(self.metadata)
        meta["frame_index"] = t
        return Volume(self.array[t], self.affine.copy(), self.frame_of_reference_uid, meta)

    # ---- geometry derived from the affine ------------------------------------------------
    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along x, y, z in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """LPS position of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit vectors of the x, y, z index axes in LPS."""
        return self.affine[:3, :3] / self.spacing

    @property
    def orientation(self) -> str:
        return orientation_code(self.affine)

    def index_to_world(self, xyz: np.ndarray | Iterable[float]) -> np.ndarray:
        """Continuous index ``(x, y, z)`` (column, row, slice), shape (..., 3), to LPS mm."""
        idx = np.asarray(xyz, dtype=np.float64)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, lps: np.ndarray | Iterable[float]) -> np.ndarray:
        """LPS mm, shape (..., 3), to continuous index ``(x, y, z)``."""
        pts = np.asarray(lps, dtype=np.float64)
        return (pts - self.affine[:3, 3]) @ np.linalg.inv(self.affine[:3, :3]).T

    def bounds_world(self) -> np.ndarray:
        """The eight LPS corner voxel centres, shape (8, 3)."""
        z, y, x = self.shape
        corners = np.array([[i, j, k] for i in (0, x - 1) for j in (0, y - 1) for k in (0, z - 1)], float)
        return self.index_to_world(corners)

    def is_orthogonal(self, tol: float = 1e-4) -> bool:
        """False for sheared grids (e.g. uncorrected gantry tilt)."""
        d = self.direction
        return bool(np.allclose(d.T @ d, np.eye(3), atol=tol))

    def same_grid(self, other: Volume, atol: float = 1e-3) -> bool:
        """True when both volumes have the same spatial shape and affine (within ``atol`` mm)."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    # ---- reorientation (flips and permutations only, no resampling) -----------------------
    def reoriented(self, target: str = "LPS") -> Volume:
        """This volume with its axes permuted/flipped so the index axes point as ``target`` says.

        ``target`` is a three-letter code such as ``"LPS"`` (x to the patient's left, y posterior,
        z superior: the radiological display of axial slices) or ``"RAS"``. Voxel values are never
        interpolated; the array is a view when possible. Oblique grids go to the closest code.
        """
        target = target.upper()
        want_axis, want_sign = [], []
        for letter in target:
            for world, (neg, pos) in enumerate(_AXIS_LETTERS):
                if letter in (neg, pos):
                    want_axis.append(world)
                    want_sign.append(1 if letter == pos else -1)
        if len(want_axis) != 3 or len(set(want_axis)) != 3:
            raise ValueError(f"not an orientation code: {target!r}")
        have_axis, have_sign = closest_axes(self.affine[:3, :3])
        # new index axis j takes the old index axis i whose world axis is want_axis[j]
        perm = [have_axis.index(w) for w in want_axis]
        flips = [have_sign[perm[j]] != want_sign[j] for j in range(3)]
        if perm == [0, 1, 2] and not any(flips):
            return self
        arr = self.array
        lead = arr.ndim - 3
        # array axes are reversed index axes: index axis i <-> array axis (lead + 2 - i)
        arr_axes = list(range(lead)) + [lead + 2 - perm[2 - a] for a in range(3)]
        arr = arr.transpose(arr_axes)
        old_shape_xyz = self.shape[::-1]
        new_affine = np.eye(4)
        origin_idx = np.zeros(3)
        for j in range(3):
            i = perm[j]
            col = self.affine[:3, i].copy()
            if flips[j]:
                arr = np.flip(arr, axis=lead + 2 - j)
                origin_idx[i] = old_shape_xyz[i] - 1
                col = -col
            new_affine[:3, j] = col
        new_affine[:3, 3] = self.index_to_world(origin_idx)
        meta = dict(self.metadata)
        return Volume(np.ascontiguousarray(arr), new_affine, self.frame_of_reference_uid, meta)

    # ---- SimpleITK -------------------------------------------------------------------------
    def to_sitk(self):  # -> SimpleITK.Image (imported lazily: core stays numpy-only)
        """A SimpleITK image with the same voxels and geometry (4D becomes a 4D ITK image)."""
        import SimpleITK as sitk

        if not self.is_orthogonal():
            raise ValueError(
                "this volume's grid is sheared (uncorrected gantry tilt); ITK images need an "
                "orthogonal grid: load it with tilt correction"
            )
        img = sitk.GetImageFromArray(self.array, isVector=False)
        if self.is_4d:
            direction = np.eye(4)
            direction[:3, :3] = self.direction
            img.SetSpacing([*map(float, self.spacing), float(self.metadata.get("frame_interval", 1.0) or 1.0)])
            img.SetOrigin([*map(float, self.origin), 0.0])
            img.SetDirection(direction.ravel().tolist())
        else:
            img.SetSpacing([float(s) for s in self.spacing])
            img.SetOrigin([float(o) for o in self.origin])
            img.SetDirection(self.direction.ravel().tolist())
        return img

    @classmethod
    def from_sitk(cls, image, metadata: dict[str, Any] | None = None) -> Volume:
        """Build a Volume from a SimpleITK image (3D, 2D as one slice, or 4D)."""
        import SimpleITK as sitk

        dim = image.GetDimension()
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"the image has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                "(colour or vector data); medvision volumes hold one value per voxel"
            )
        arr = sitk.GetArrayFromImage(image)
        spacing = np.array(image.GetSpacing(), dtype=np.float64)
        origin = np.array(image.GetOrigin(), dtype=np.float64)
        direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
        meta = dict(metadata or {})
        if dim == 2:
            arr = arr[np.newaxis]
            d3 = np.eye(3)
            d3[:2, :2] = direction
            d3[:, 2] = np.cross(d3[:, 0], d3[:, 1])
            affine = affine_from_geometry([*spacing, 1.0], [*origin, 0.0], d3)
        elif dim == 3:
            affine = affine_from_geometry(spacing, origin, direction)
        elif dim == 4:
            affine = affine_from_geometry(spacing[:3], origin[:3], direction[:3, :3])
            meta.setdefault("frame_axis", "time")
            meta.setdefault("frame_interval", float(spacing[3]))
        else:
            raise ValueError(f"{dim}D images are not supported")
        return cls(arr, affine, meta.pop("frame_of_reference_uid", None), meta)

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        frames = f", {self.n_frames} frames" if self.is_4d else ""
        return (
            f"Volume(shape={self.shape}{frames}, dtype={self.dtype}, spacing=({sp}) mm, "
            f"orientation={self.orientation}, modality={self.metadata.get('modality')})"
        )
