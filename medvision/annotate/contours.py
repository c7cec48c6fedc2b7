"""2D contours on slices: polygon/lasso fill, and filling the slices between drawn ones.

Fill between slices is shape-based interpolation (Raya and Udupa, 1990): between two slices where
a label was drawn, each slice in the gap gets the zero level of the signed distance maps of the
two drawn shapes, blended by distance. It follows a shape that moves, grows or shrinks; where one
drawn slice holds two blobs and the next one, they merge on the way. 3D Slicer's "Fill between
slices" uses ITK's morphological contour interpolation, which SimpleITK's wheels do not include.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from ..core.edits import Box, History
from ..core.labels import LabelMap
from .rules import EditRules, paint, spacing_zyx

__all__ = ["polygon_mask", "fill_polygon", "drawn_slices", "interpolate_between_slices", "fill_between_slices"]


def polygon_mask(vertices_rc, shape_rc) -> tuple[tuple[slice, slice], np.ndarray]:
    """Pixels whose centres lie inside the closed polygon ``vertices_rc`` ((row, col) pairs, pixel
    units, centres at integers), as a box within ``shape_rc`` and its boolean mask (even-odd rule)."""
    v = np.asarray(vertices_rc, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 3:
        raise ValueError("a polygon needs at least three points")
    r0 = max(0, int(np.floor(v[:, 0].min())))
    r1 = min(shape_rc[0], int(np.ceil(v[:, 0].max())) + 1)
    c0 = max(0, int(np.floor(v[:, 1].min())))
    c1 = min(shape_rc[1], int(np.ceil(v[:, 1].max())) + 1)
    if r1 <= r0 or c1 <= c0:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
    rows = np.arange(r0, r1, dtype=np.float64)[:, None]
    cols = np.arange(c0, c1, dtype=np.float64)[None, :]
    inside = np.zeros((r1 - r0, c1 - c0), bool)
    a, b = v, np.roll(v, -1, axis=0)
    for (ar, ac), (br, bc) in zip(a, b, strict=True):
        if ar == br:
            continue
        crosses = (rows >= min(ar, br)) & (rows < max(ar, br))  # half-open: vertices counted once
        col_at = ac + (rows - ar) * (bc - ac) / (br - ar)
        inside ^= crosses & (cols < col_at)
    return (slice(r0, r1), slice(c0, c1)), inside


def fill_polygon(history: History, labels: LabelMap, axis: int, index: int, vertices_rc, value: int,
                 rules: EditRules | None = None, image: np.ndarray | None = None) -> bool:
    """Fill (``value``) or erase (0) a polygon drawn on slice ``index`` of array axis ``axis``;
    rows and columns are the remaining array axes in order."""
    plane_shape = tuple(n for i, n in enumerate(labels.shape) if i != axis)
    (rs, cs), mask = polygon_mask(vertices_rc, plane_shape)
    if not mask.any():
        return False
    box = [rs, cs]
    box.insert(axis, slice(index, index + 1))
    return paint(history, labels, tuple(box), np.expand_dims(mask, axis), value, rules, image,
                 description="fill polygon" if value else "erase polygon")


def drawn_slices(array: np.ndarray, value: int, axis: int) -> list[int]:
    """Indices along ``axis`` of the slices that hold label ``value``."""
    other = tuple(a for a in range(3) if a != axis)
    return [int(i) for i in np.nonzero((array == value).any(axis=other))[0]]


def _signed_distance(mask2d: np.ndarray, spacing_rc) -> np.ndarray:
    img = sitk.GetImageFromArray(mask2d.astype(np.uint8))
    img.SetSpacing([float(spacing_rc[1]), float(spacing_rc[0])])
    return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False,
                                                               useImageSpacing=True))


def interpolate_between_slices(array: np.ndarray, value: int, axis: int,
                               spacing_zyx_mm) -> tuple[Box, np.ndarray] | None:
    """The mask of label ``value`` with every gap between drawn slices along ``axis`` filled;
    returns (box, mask over the box) or None when fewer than two slices are drawn."""
    drawn = drawn_slices(array, value, axis)
    if len(drawn) < 2:
        return None
    first, last = drawn[0], drawn[-1]
    span = [slice(None)] * 3
    span[axis] = slice(first, last + 1)
    box = tuple(slice(0, n) if s == slice(None) else s for s, n in zip(span, array.shape, strict=True))
    sub = np.moveaxis(array[box] == value, axis, 0)  # (slices, rows, cols)
    spacing_rc = [s for i, s in enumerate(spacing_zyx_mm) if i != axis]
    out = sub.copy()
    rel = [d - first for d in drawn]
    for k0, k1 in itertools.pairwise(rel):
        if k1 - k0 < 2:
            continue
        d0, d1 = _signed_distance(sub[k0], spacing_rc), _signed_distance(sub[k1], spacing_rc)
        for k in range(k0 + 1, k1):
            t = (k - k0) / (k1 - k0)
            out[k] = ((1 - t) * d0 + t * d1) <= 0
    return box, np.moveaxis(out, 0, axis)


def fill_between_slices(history: History, labels: LabelMap, value: int, axis: int,
                        rules: EditRules | None = None) -> bool:
    """Fill the slices between those drawn with label ``value`` along array ``axis``; one undo step.
    Drawn slices are not changed; only empty gap voxels (and those the rules allow) are set."""
    result = interpolate_between_slices(labels.array, value, axis, spacing_zyx(labels.affine))
    if result is None:
        return False
    box, mask = result
    name = labels.table[value].name if value in labels.table else f"label {value}"
    return paint(history, labels, box, mask & (labels.array[box] != value), value, rules,
                 description=f"fill between slices: {name}")
