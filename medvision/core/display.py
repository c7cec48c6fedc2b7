"""How a volume is shown: the three planes in radiological convention, without copying voxels.

Whatever plane a series was acquired in, its axes are permuted and flipped (never resampled) onto
the patient axes they are closest to, the *display grid*: index x runs to the patient's left, y
posterior, z superior (LPS). Slices of that grid are then shown as radiologists expect:

* axial: viewed from the feet: patient's right on the screen's left, anterior at the top;
* coronal: viewed from the front: right on the left, superior at the top;
* sagittal: viewed from the patient's right: anterior on the left, superior at the top.

So the same anatomy lands in the same view whether the series was acquired axially, coronally,
sagittally or obliquely (an oblique grid goes to its closest axes; its true directions are in
:meth:`DisplayGrid.edge_labels`, and :attr:`DisplayGrid.obliquity_deg` says how far off it is).
Screen images are numpy views ``(row, column)``, row 0 at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .volume import Volume, closest_axes

__all__ = ["PLANES", "DisplayGrid", "direction_letters"]

PLANES = ("axial", "coronal", "sagittal")
#: for each plane: the display axis it slices across, and the display axes of screen rows / columns
#: (display axes: 0 = x (L), 1 = y (P), 2 = z (S)); rows of coronal and sagittal run inferior-wards
_SLICE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
_ROW_AXIS = {"axial": 1, "coronal": 2, "sagittal": 2}
_COL_AXIS = {"axial": 0, "coronal": 0, "sagittal": 1}
_ROW_FLIP = {"axial": False, "coronal": True, "sagittal": True}
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def direction_letters(vector: np.ndarray, min_share: float = 0.2) -> str:
    """Patient-direction letters for an LPS vector, strongest first (``"L"``, ``"LA"``, ``"SPR"``...).

    Components smaller than ``min_share`` of the vector's length are left out, so an axis 10 degrees
    off still reads as one letter and a 45-degree oblique reads as two.
    """
    v = np.asarray(vector, dtype=float)
    v = v / (np.linalg.norm(v) or 1.0)
    order = np.argsort(-np.abs(v))
    return "".join(_LETTERS[a][1 if v[a] > 0 else 0] for a in order if abs(v[a]) >= min_share) or "?"


@dataclass(frozen=True)
class ScreenPoint:
    """A position on a plane's screen image: ``row``/``col`` in pixels (floats) and the slice."""

    slice: int
    row: float
    col: float


class DisplayGrid:
    """The display-ordered view of a volume (see the module docstring). Cheap: no voxel copies."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        have_axis, have_sign = closest_axes(volume.affine[:3, :3])
        # display axis j (x:L, y:P, z:S) is volume index axis perm[j], reversed when flips[j]
        self.perm = [have_axis.index(w) for w in range(3)]
        self.flips = [have_sign[self.perm[j]] < 0 for j in range(3)]
        vol_xyz = volume.shape[::-1]
        self.shape_xyz = tuple(int(vol_xyz[p]) for p in self.perm)
        affine = np.eye(4)
        origin_index = np.zeros(3)
        for j, i in enumerate(self.perm):
            col = volume.affine[:3, i].copy()
            if self.flips[j]:
                origin_index[i] = vol_xyz[i] - 1
                col = -col
            affine[:3, j] = col
        affine[:3, 3] = volume.index_to_world(origin_index)
        self.affine = affine
        self._inverse = np.linalg.inv(affine)
        self.spacing = np.linalg.norm(affine[:3, :3], axis=0)
        unit = affine[:3, :3] / self.spacing
        self.obliquity_deg = float(np.degrees(np.arccos(np.clip(np.min(np.abs(np.diag(unit))), -1, 1))))

    # ---- arrays ---------------------------------------------------------------------------
    def view_of(self, array: np.ndarray) -> np.ndarray:
        """``array`` (on the volume's grid, ``(z, y, x)`` or ``(t, z, y, x)``) as a display-ordered
        ``(..., z, y, x)`` view (no copy)."""
        lead = array.ndim - 3
        # array axis (lead + 2 - i) holds volume index axis i; display array axis (lead + 2 - j)
        # must hold volume index axis perm[j]
        order = list(range(lead)) + [lead + 2 - self.perm[2 - a] for a in range(3)]
        out = array.transpose(order)
        index: list[slice] = [slice(None)] * array.ndim
        for j in range(3):
            if self.flips[j]:
                index[lead + 2 - j] = slice(None, None, -1)
        return out[tuple(index)]

    def image(self, plane: str, index: int, array: np.ndarray | None = None) -> np.ndarray:
        """The screen image ``(rows, cols)`` of slice ``index`` of ``plane``: a view of ``array``
        (default: the volume's array; pass a 3D array, e.g. one frame or a label map, on the grid)."""
        view = self.view_of(self.volume.array if array is None else array)
        if view.ndim != 3:
            raise ValueError("image() needs a 3D array: pick a frame of a 4D volume first")
        if plane == "axial":
            return view[index]
        if plane == "coronal":
            return view[::-1, index, :]
        if plane == "sagittal":
            return view[::-1, :, index]
        raise ValueError(f"unknown plane {plane!r}")

    # ---- sizes ----------------------------------------------------------------------------
    def slice_axis(self, plane: str) -> int:
        return _SLICE_AXIS[plane]

    @property
    def acquisition_plane(self) -> str:
        """The view whose slices are the volume's own slices (its third index axis)."""
        return next(p for p, axis in _SLICE_AXIS.items() if self.perm[axis] == 2)

    def n_slices(self, plane: str) -> int:
        return self.shape_xyz[_SLICE_AXIS[plane]]

    def image_shape(self, plane: str) -> tuple[int, int]:
        return self.shape_xyz[_ROW_AXIS[plane]], self.shape_xyz[_COL_AXIS[plane]]

    def pixel_size(self, plane: str) -> tuple[float, float]:
        """Millimetres per screen pixel (row height, column width)."""
        return float(self.spacing[_ROW_AXIS[plane]]), float(self.spacing[_COL_AXIS[plane]])

    # ---- coordinates ----------------------------------------------------------------------
    def to_screen(self, plane: str, ijk: np.ndarray) -> ScreenPoint:
        """Display index (x, y, z) -> the plane's slice and screen row/column (pixel centres at .0)."""
        ijk = np.asarray(ijk, dtype=float)
        row = ijk[_ROW_AXIS[plane]]
        if _ROW_FLIP[plane]:
            row = self.shape_xyz[_ROW_AXIS[plane]] - 1 - row
        return ScreenPoint(int(round(ijk[_SLICE_AXIS[plane]])), float(row), float(ijk[_COL_AXIS[plane]]))

    def from_screen(self, plane: str, slice_index: float, row: float, col: float) -> np.ndarray:
        """The plane's slice and screen row/column -> display index (x, y, z), floats."""
        ijk = np.zeros(3)
        ijk[_SLICE_AXIS[plane]] = slice_index
        if _ROW_FLIP[plane]:
            row = self.shape_xyz[_ROW_AXIS[plane]] - 1 - row
        ijk[_ROW_AXIS[plane]] = row
        ijk[_COL_AXIS[plane]] = col
        return ijk

    def clamp(self, ijk: np.ndarray) -> np.ndarray:
        """Nearest whole display index inside the grid."""
        upper = np.asarray(self.shape_xyz) - 1
        return np.clip(np.rint(np.asarray(ijk, dtype=float)), 0, upper).astype(int)

    def world(self, ijk: np.ndarray) -> np.ndarray:
        """Display index -> LPS millimetres."""
        return self.affine[:3, :3] @ np.asarray(ijk, dtype=float) + self.affine[:3, 3]

    def from_world(self, lps: np.ndarray) -> np.ndarray:
        """LPS millimetres -> display index (floats)."""
        return self._inverse[:3, :3] @ np.asarray(lps, dtype=float) + self._inverse[:3, 3]

    def to_volume_index(self, ijk: np.ndarray) -> np.ndarray:
        """Display index -> the volume's own index (x, y, z) (ints in, ints out)."""
        ijk = np.asarray(ijk)
        vol_xyz = self.volume.shape[::-1]
        out = np.zeros(3, dtype=ijk.dtype)
        for j, i in enumerate(self.perm):
            out[i] = vol_xyz[i] - 1 - ijk[j] if self.flips[j] else ijk[j]
        return out

    def value_at(self, ijk: np.ndarray, frame: int = 0):
        """The voxel value at a whole display index (``None`` outside the grid)."""
        ijk = np.asarray(ijk)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(self.shape_xyz)):
            return None
        x, y, z = self.to_volume_index(ijk.astype(int))
        array = self.volume.array[frame] if self.volume.is_4d else self.volume.array
        return array[z, y, x].item()

    # ---- labels ---------------------------------------------------------------------------
    def edge_labels(self, plane: str) -> dict[str, str]:
        """Patient-direction letters at the screen edges: ``{"left", "right", "top", "bottom"}``,
        from the true directions of the grid (so oblique acquisitions read e.g. ``"LA"``)."""
        unit = self.affine[:3, :3] / self.spacing
        right = unit[:, _COL_AXIS[plane]]
        down = unit[:, _ROW_AXIS[plane]] * (-1 if _ROW_FLIP[plane] else 1)
        return {"right": direction_letters(right), "left": direction_letters(-right),
                "bottom": direction_letters(down), "top": direction_letters(-down)}
