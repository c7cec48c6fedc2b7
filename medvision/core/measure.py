"""Measurements on slices: ruler (mm), angle (degrees), ellipse and rectangle ROIs with the
statistics of the image inside, as numbers (no drawing).

A measurement belongs to the plane and slice it was drawn on. Its points are display indices
(x, y, z; floats) of a :class:`~medvision.core.display.DisplayGrid`; lengths and angles are taken in
patient millimetres (:meth:`~medvision.core.display.DisplayGrid.world`), so anisotropic pixels and
coronal or sagittal views across thick slices measure true. An ROI's pixels are those whose centres
lie inside its shape; its area is the shape's own (pi a b for an ellipse). The window draws them
and keeps their list (:mod:`medvision.ui.annotating.measure`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .display import DisplayGrid

__all__ = ["KINDS", "N_POINTS", "ROI_KINDS", "ROW_HEADER", "Measurement", "angle_degrees", "measure",
           "region_statistics", "roi_area", "roi_pixels", "roi_values", "ruler_length"]

KINDS = ("ruler", "angle", "ellipse", "rectangle")
ROI_KINDS = ("ellipse", "rectangle")
#: points a measurement of each kind needs
N_POINTS = {"ruler": 2, "angle": 3, "ellipse": 2, "rectangle": 2}
#: header of a measurement table's rows (:meth:`Measurement.row`)
ROW_HEADER = ("kind", "plane", "slice", "value")


# ---- geometry ----------------------------------------------------------------------------------
def ruler_length(grid, a, b) -> float:
    """Distance in millimetres between display indices ``a`` and ``b``."""
    return float(np.linalg.norm(grid.world(b) - grid.world(a)))


def angle_degrees(grid, a, vertex, b) -> float | None:
    """The angle at ``vertex`` between the arms to ``a`` and ``b``, in patient space (None when an
    arm has no length)."""
    u, v = grid.world(a) - grid.world(vertex), grid.world(b) - grid.world(vertex)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < 1e-9 or nv < 1e-9:
        return None
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def _screen_box(grid, plane: str, a, b) -> tuple[float, float, float, float]:
    pa, pb = grid.to_screen(plane, a), grid.to_screen(plane, b)
    return min(pa.row, pb.row), max(pa.row, pb.row), min(pa.col, pb.col), max(pa.col, pb.col)


def roi_area(grid, plane: str, kind: str, a, b) -> float:
    """The area in mm² of the ellipse or rectangle whose bounding box has corners ``a`` and ``b``."""
    r0, r1, c0, c1 = _screen_box(grid, plane, a, b)
    rh, cw = grid.pixel_size(plane)
    area = (r1 - r0) * rh * (c1 - c0) * cw
    return float(area * math.pi / 4 if kind == "ellipse" else area)


def roi_pixels(grid, plane: str, kind: str, a, b) -> tuple[slice, slice, np.ndarray] | None:
    """The pixels of the plane's screen image whose centres lie inside the ellipse or rectangle with
    bounding-box corners ``a`` and ``b``: ``(rows, cols, mask)``, the mask over
    ``image[rows, cols]``; None when none does."""
    r0, r1, c0, c1 = _screen_box(grid, plane, a, b)
    n_rows, n_cols = grid.image_shape(plane)
    eps = 1e-6
    lo_r, hi_r = max(math.ceil(r0 - eps), 0), min(math.floor(r1 + eps), n_rows - 1)
    lo_c, hi_c = max(math.ceil(c0 - eps), 0), min(math.floor(c1 + eps), n_cols - 1)
    if lo_r > hi_r or lo_c > hi_c:
        return None
    rr = np.arange(lo_r, hi_r + 1, dtype=float)[:, None]
    cc = np.arange(lo_c, hi_c + 1, dtype=float)[None, :]
    if kind == "ellipse":
        ra, ca = (r1 - r0) / 2, (c1 - c0) / 2
        if ra < eps or ca < eps:
            return None
        mask = ((rr - (r0 + r1) / 2) / ra) ** 2 + ((cc - (c0 + c1) / 2) / ca) ** 2 <= 1 + eps
    else:
        mask = np.ones((rr.size, cc.size), bool)
    if not mask.any():
        return None
    return slice(lo_r, hi_r + 1), slice(lo_c, hi_c + 1), mask


def _num(v: float) -> str:
    if v == 0 or 0.1 <= abs(v) < 1e5:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _whole(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else _num(v)


@dataclass(eq=False)
class Measurement:
    """One measurement: its ``kind`` (see :data:`KINDS`), where it was drawn (``plane`` and
    ``slice`` index, 0-based), its ``points`` (display indices) and computed ``values``:
    ``length_mm`` (ruler), ``angle_deg`` (angle), or ``area_mm2``, ``pixels``, ``mean``, ``std``
    (sample), ``min``, ``max`` (ROIs; the statistics None when no pixel centre lies inside).
    ``unit`` is the intensity unit ("HU" for CT with the rescale applied, else ""); ``length_unit``
    is "mm", or "px" when the file gives no pixel size."""

    kind: str
    plane: str
    slice: int
    points: list[np.ndarray]
    values: dict = field(default_factory=dict)
    unit: str = ""
    length_unit: str = "mm"

    @property
    def value(self) -> float | None:
        """The main value: length (mm), angle (degrees) or area (mm²)."""
        key = {"ruler": "length_mm", "angle": "angle_deg"}.get(self.kind, "area_mm2")
        return self.values.get(key)

    def shown_on(self, plane: str, slice_index: int) -> bool:
        """Whether it was drawn on ``plane``'s slice ``slice_index`` (where it is shown)."""
        return plane == self.plane and slice_index == self.slice

    def visible_in(self, view) -> bool:
        """Whether ``view`` (anything with ``plane``, ``current_slice()`` and ``viewer.grid``, as a
        slice view has) shows this measurement's plane and slice."""
        return view.viewer.grid is not None and self.shown_on(view.plane, view.current_slice())

    def lines(self) -> list[str]:
        """The label's lines, e.g. ``["12.3 mm"]`` or ``["area 85.1 mm²", "45.2 ± 12.1 (-3..80) HU"]``."""
        v = self.values
        if self.kind == "ruler":
            return [f"{v['length_mm']:.1f} {self.length_unit}"]
        if self.kind == "angle":
            return [f"{v['angle_deg']:.1f}\N{DEGREE SIGN}" if v.get("angle_deg") is not None else "-"]
        lines = [f"area {v['area_mm2']:.1f} {self.length_unit}\N{SUPERSCRIPT TWO}"]
        if v.get("mean") is None:
            lines.append("no pixel inside")
        else:
            unit = f" {self.unit}" if self.unit else ""
            lines.append(f"{_num(v['mean'])} \N{PLUS-MINUS SIGN} {_num(v['std'])} "
                         f"({_whole(v['min'])}..{_whole(v['max'])}){unit}")
        return lines

    def text(self) -> str:
        return ", ".join(self.lines())

    def row(self) -> tuple[str, str, int, str]:
        """A row for a table or CSV (columns :data:`ROW_HEADER`): kind, plane, slice number as the
        view shows it (1-based), value text."""
        return self.kind, self.plane, self.slice + 1, self.text()


def region_statistics(image: np.ndarray, mask: np.ndarray, voxel_ml: float) -> dict:
    """Statistics of ``image`` inside a boolean ``mask`` (an ROI drawn on a slice, or a label)."""
    values = image[mask].astype(np.float64)
    if values.size == 0:
        return {"voxels": 0, "volume_ml": 0.0, "mean": None, "std": None, "min": None, "max": None}
    return {"voxels": int(values.size), "volume_ml": values.size * voxel_ml, "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0, "min": float(values.min()),
            "max": float(values.max())}


def roi_values(grid: DisplayGrid, m: Measurement, frame: np.ndarray) -> dict:
    """The statistics of an ROI measurement on ``frame`` (the 3D array shown): ``pixels``, ``mean``,
    ``std`` (sample), ``min``, ``max`` (None when no pixel centre lies inside)."""
    found = roi_pixels(grid, m.plane, m.kind, *m.points)
    if found is None:
        return {"pixels": 0, "mean": None, "std": None, "min": None, "max": None}
    rows, cols, mask = found
    image = grid.image(m.plane, m.slice, frame)[rows, cols]
    rh, cw = grid.pixel_size(m.plane)
    stats = region_statistics(image, mask, rh * cw)
    return {"pixels": stats["voxels"], "mean": stats["mean"], "std": stats["std"], "min": stats["min"],
            "max": stats["max"]}


def measure(grid: DisplayGrid, metadata: dict[str, Any], frame: np.ndarray, kind: str, plane: str,
            slice_index: int, points) -> Measurement | None:
    """A measurement of ``kind`` from its points on a volume (its display grid, metadata and the
    frame shown); None with too few points."""
    if kind not in KINDS:
        raise ValueError(f"unknown measurement kind {kind!r}")
    points = [np.asarray(p, float) for p in points]
    if len(points) != N_POINTS[kind]:
        return None
    m = Measurement(kind, plane, int(slice_index), points,
                    unit="HU" if metadata.get("modality") == "CT" and metadata.get("rescale_applied") else "",
                    length_unit="mm" if metadata.get("spacing_known", True) else "px")
    if kind == "ruler":
        m.values = {"length_mm": ruler_length(grid, *points)}
    elif kind == "angle":
        m.values = {"angle_deg": angle_degrees(grid, *points)}
    else:
        m.values = {"area_mm2": roi_area(grid, plane, kind, *points), **roi_values(grid, m, frame)}
    return m
