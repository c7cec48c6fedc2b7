"""Whole-label tools: threshold, region growing, islands, smoothing, margins, logical operations.

Each tool computes a boolean mask (with SimpleITK where it does the heavy lifting, in physical
units where a size is asked for) and applies it through the same rules as the brush, as one
undoable edit. Work happens on the bounding box of what can change, padded as the tool needs, so a
small label in a big volume stays fast.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import SimpleITK as sitk

from ..core.edits import Box, History, bounding_box
from ..core.labels import LabelMap
from .rules import EditRules, allowed, paint, spacing_zyx

__all__ = [
    "threshold_mask", "grow_connected", "grow_confidence", "apply_mask", "set_label_mask", "label_box",
    "keep_largest_island", "remove_small_islands", "keep_island_at", "smooth", "margin", "logical",
]

# ---- helpers ---------------------------------------------------------------------------------
def _full_box(shape) -> Box:
    return tuple(slice(0, n) for n in shape)


def label_box(array: np.ndarray, value: int, pad_voxels=(0, 0, 0)) -> Box | None:
    """Bounding box of ``array == value`` grown by ``pad_voxels`` (z, y, x), clipped; None if empty."""
    return bounding_box(array == value, tuple(pad_voxels))


def _to_sitk(mask: np.ndarray, spacing_zyx_mm: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing([float(s) for s in spacing_zyx_mm[::-1]])
    return image


def apply_mask(history: History, labels: LabelMap, mask: np.ndarray, value: int, rules: EditRules | None = None,
               image: np.ndarray | None = None, box: Box | None = None, description: str = "fill") -> bool:
    """Paint ``value`` where ``mask`` is True (``mask`` covers ``box``, default the whole grid)."""
    box = box or _full_box(labels.shape)
    return paint(history, labels, box, mask, value, rules, image, description=description)


def set_label_mask(history: History, labels: LabelMap, value: int, new_mask: np.ndarray, box: Box,
                   rules: EditRules | None = None, description: str = "edit label") -> bool:
    """Make label ``value`` exactly ``new_mask`` inside ``box``: voxels added become ``value`` (where
    the rules allow), voxels dropped become background. One undo step."""
    rules = rules or EditRules()
    if rules.respect_locks and value in labels.table and labels.table[value].locked:
        return False  # a locked label neither grows nor shrinks
    current = labels.array[box]
    old = current == value
    add = new_mask & ~old
    drop = old & ~new_mask
    if not add.any() and not drop.any():
        return False
    # voxels added must be free to change: not locked, and inside the masking label if one is set
    ok_add = allowed(labels, box, EditRules(inside=rules.inside, respect_locks=rules.respect_locks))
    new = current.copy()
    new[add & ok_add] = value
    new[drop] = 0
    return history.write(box, new, description=description)


# ---- threshold and region growing -------------------------------------------------------------
def threshold_mask(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Voxels with ``low <= value <= high`` (the live preview of the threshold tool)."""
    return (image >= low) & (image <= high)


def _seeds_xyz(seeds_zyx, shape) -> list[list[int]]:
    out = []
    for s in seeds_zyx:
        z, y, x = (int(round(v)) for v in s)
        if not (0 <= z < shape[0] and 0 <= y < shape[1] and 0 <= x < shape[2]):
            raise ValueError(f"seed {tuple(s)} lies outside the image")
        out.append([x, y, z])
    return out


def grow_connected(image: np.ndarray, seeds_zyx, low: float, high: float) -> np.ndarray:
    """Voxels connected (6-neighbourhood) to the seeds whose value lies in [low, high]."""
    img = sitk.GetImageFromArray(image)
    out = sitk.ConnectedThreshold(img, seedList=_seeds_xyz(seeds_zyx, image.shape), lower=float(low),
                                  upper=float(high), replaceValue=1)
    return sitk.GetArrayFromImage(out).view(bool)  # uint8 0/1: read as bool without another copy


def grow_confidence(image: np.ndarray, seeds_zyx, multiplier: float = 2.5, iterations: int = 3,
                    radius: int = 1) -> np.ndarray:
    """Confidence-connected growing: the range is the seeds' neighbourhood mean +- ``multiplier``
    standard deviations, re-estimated ``iterations`` times from the region grown so far."""
    img = sitk.GetImageFromArray(image.astype(np.float32, copy=False))
    out = sitk.ConfidenceConnected(img, seedList=_seeds_xyz(seeds_zyx, image.shape), numberOfIterations=int(iterations),
                                   multiplier=float(multiplier), initialNeighborhoodRadius=int(radius),
                                   replaceValue=1)
    return sitk.GetArrayFromImage(out).astype(bool)


# ---- islands -----------------------------------------------------------------------------------
def _components(mask: np.ndarray, full_connectivity: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Component ids (1 = largest) and their sizes (index 0 unused)."""
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), full_connectivity)
    relabelled = sitk.RelabelComponent(cc, sortByObjectSize=True)
    ids = sitk.GetArrayFromImage(relabelled)
    return ids, np.bincount(ids.ravel())


def keep_largest_island(history: History, labels: LabelMap, value: int, rules: EditRules | None = None) -> bool:
    box = label_box(labels.array, value)
    if box is None:
        return False
    ids, _sizes = _components(labels.array[box] == value)
    return set_label_mask(history, labels, value, ids == 1, box, rules,
                          f"keep largest island of {_name(labels, value)}")


def remove_small_islands(history: History, labels: LabelMap, value: int, min_voxels: int,
                         rules: EditRules | None = None) -> bool:
    box = label_box(labels.array, value)
    if box is None:
        return False
    ids, sizes = _components(labels.array[box] == value)
    keep = np.nonzero(sizes >= int(min_voxels))[0]
    keep = keep[keep != 0]
    return set_label_mask(history, labels, value, np.isin(ids, keep), box, rules,
                          f"remove islands under {min_voxels} voxels from {_name(labels, value)}")


def keep_island_at(history: History, labels: LabelMap, point_zyx, rules: EditRules | None = None) -> bool:
    """Keep only the island of the label under ``point_zyx`` that contains it."""
    z, y, x = (int(round(v)) for v in point_zyx)
    value = int(labels.array[z, y, x])
    if value == 0:
        return False
    box = label_box(labels.array, value)
    assert box is not None  # the clicked voxel holds the label
    ids, _ = _components(labels.array[box] == value)
    island = ids[z - box[0].start, y - box[1].start, x - box[2].start]
    return set_label_mask(history, labels, value, ids == island, box, rules,
                          f"keep clicked island of {_name(labels, value)}")


# ---- smoothing and margins ---------------------------------------------------------------------
def _radius_voxels(radius_mm: float, spacing: np.ndarray) -> list[int]:
    """Kernel radius per sitk axis (x, y, z) for a physical radius; 0 along axes coarser than it."""
    return [int(np.floor(radius_mm / s + 1e-9)) for s in spacing[::-1]]


def smooth(history: History, labels: LabelMap, value: int, method: str, radius_mm: float,
           rules: EditRules | None = None) -> bool:
    """``method``: "median", "opening" (removes extrusions) or "closing" (fills holes and gaps)."""
    spacing = spacing_zyx(labels.affine)
    radius = _radius_voxels(radius_mm, spacing)
    if max(radius) == 0:
        raise ValueError(f"a radius of {radius_mm} mm is smaller than a voxel ({spacing.min():.2g} mm)")
    pad = [r + 1 for r in radius[::-1]]
    box = label_box(labels.array, value, pad)
    if box is None:
        return False
    img = _to_sitk(labels.array[box] == value, spacing)
    # filter objects with every value set by name: the procedural forms' positional arguments
    # differ between filters (opening takes the background value before the foreground value)
    f: (sitk.BinaryMedianImageFilter | sitk.BinaryMorphologicalOpeningImageFilter
        | sitk.BinaryMorphologicalClosingImageFilter)
    if method == "median":
        f = sitk.BinaryMedianImageFilter()
        f.SetRadius(radius)
    elif method == "opening":
        f = sitk.BinaryMorphologicalOpeningImageFilter()
        f.SetKernelRadius(radius)
        f.SetKernelType(sitk.sitkBall)
    elif method == "closing":
        f = sitk.BinaryMorphologicalClosingImageFilter()
        f.SetKernelRadius(radius)
        f.SetKernelType(sitk.sitkBall)
        f.SetSafeBorder(True)
    else:
        raise ValueError(f"unknown smoothing {method!r} (median, opening, closing)")
    f.SetForegroundValue(1)
    if not isinstance(f, sitk.BinaryMorphologicalClosingImageFilter):  # (closing has no background value)
        f.SetBackgroundValue(0)
    new = sitk.GetArrayFromImage(f.Execute(img)).astype(bool)
    return set_label_mask(history, labels, value, new, box, rules, f"smooth ({method}) {_name(labels, value)}")


def margin(history: History, labels: LabelMap, value: int, mm: float, rules: EditRules | None = None) -> bool:
    """Grow (``mm`` > 0) or shrink (``mm`` < 0) label ``value`` by an exact physical distance."""
    if mm == 0:
        return False
    spacing = spacing_zyx(labels.affine)
    pad = [int(np.ceil(abs(mm) / s)) + 1 for s in spacing]
    box = label_box(labels.array, value, pad if mm > 0 else (1, 1, 1))
    if box is None:
        return False
    img = _to_sitk(labels.array[box] == value, spacing)
    # signed distance (mm) from the label's boundary; inside negative
    dist = sitk.GetArrayFromImage(
        sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    new = dist <= mm  # grow: up to mm outside; shrink (mm < 0): at least |mm| inside the border
    what = f"grow {_name(labels, value)} by {mm:g} mm" if mm > 0 else f"shrink {_name(labels, value)} by {-mm:g} mm"
    return set_label_mask(history, labels, value, new, box, rules, what)


# ---- logical operations ------------------------------------------------------------------------
def logical(history: History, labels: LabelMap, value: int, op: str, other: np.ndarray | None = None,
            rules: EditRules | None = None) -> bool:
    """Change label ``value`` with the boolean mask ``other`` (another label of this map, a label
    of another map, a threshold ...):

    * ``"union"``: ``value`` also where ``other``   * ``"intersect"``: ``value`` only where ``other``
    * ``"subtract"``: ``value`` no longer where ``other``   * ``"replace"``: ``value`` exactly ``other``
    * ``"invert"``: ``value`` where it was not (other unused)   * ``"clear"``: ``value`` nowhere
    """
    box = _full_box(labels.shape)
    old = labels.array == value
    if op == "union":
        new = old | other
    elif op == "intersect":
        new = old & other
    elif op == "subtract":
        new = old & ~cast(np.ndarray, other)
    elif op == "replace":
        new = cast(np.ndarray, other).astype(bool)
    elif op == "invert":
        new = ~old
    elif op == "clear":
        new = np.zeros_like(old)
    else:
        raise ValueError(f"unknown operation {op!r}")
    return set_label_mask(history, labels, value, new, box, rules, f"{op} {_name(labels, value)}")


def _name(labels: LabelMap, value: int) -> str:
    return labels.table[value].name if value in labels.table else f"label {value}"

