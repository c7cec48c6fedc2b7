"""What an edit may change: masks, locks and intensity ranges, applied the same way by every tool.

Slicer's Segment Editor calls these "masking" settings: edit only inside a label (or only where
there is no label yet), never overwrite locked labels, paint only where the image intensity lies in
a range. Every tool computes the voxels it wants to set (a boolean mask in a box) and hands them to
:func:`paint`, which applies these rules and records one undoable change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.edits import Box, History
from ..core.labels import LabelMap

__all__ = ["EditRules", "paint", "allowed", "spacing_zyx", "clip_box"]

#: ``EditRules.inside`` value meaning "only voxels with no label yet"
EMPTY_ONLY = 0


@dataclass
class EditRules:
    """``inside``: None (anywhere), 0 (only unlabelled voxels), or a label value (only inside it).
    ``intensity``: (low, high) inclusive range of image values that may be painted, or None.
    ``respect_locks``: never change voxels of locked labels (on by default)."""

    inside: int | None = None
    intensity: tuple[float, float] | None = None
    respect_locks: bool = True


def spacing_zyx(affine: np.ndarray) -> np.ndarray:
    """Voxel size along the array axes (z, y, x) in mm."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)[::-1].copy()


def clip_box(box: Box, shape) -> Box | None:
    out = tuple(slice(max(0, s.start), min(n, s.stop)) for s, n in zip(box, shape, strict=True))
    return None if any(s.stop <= s.start for s in out) else out


def allowed(labels: LabelMap, box: Box, rules: EditRules, image: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask over ``box``: where the rules let an edit change the labels."""
    current = labels.array[box]
    ok = np.ones(current.shape, bool)
    if rules.respect_locks:
        locked = labels.table.locked_values()
        if locked:
            ok &= ~np.isin(current, locked)
    if rules.inside is not None:
        ok &= current == rules.inside
    if rules.intensity is not None and image is not None:
        lo, hi = rules.intensity
        region = image[box]
        ok &= (region >= lo) & (region <= hi)
    return ok


def paint(history: History, labels: LabelMap, box: Box, mask: np.ndarray, value: int,
          rules: EditRules | None = None, image: np.ndarray | None = None, *, erase_only: int | None = None,
          description: str = "paint") -> bool:
    """Set ``value`` where ``mask`` (over ``box``) is True and the rules allow it.

    ``value`` 0 erases; with ``erase_only`` set, only voxels of that label are erased. Returns
    whether anything changed. Locked target labels cannot be painted.
    """
    rules = rules or EditRules()
    clipped = clip_box(box, labels.shape)
    if clipped is None:
        return False
    if clipped != box:  # the mask was made for the unclipped box
        offset = [c.start - b.start for c, b in zip(clipped, box, strict=True)]
        mask = mask[tuple(slice(o, o + (c.stop - c.start)) for o, c in zip(offset, clipped, strict=True))]
        box = clipped
    if value and rules.respect_locks and value in labels.table and labels.table[value].locked:
        return False
    if value:
        labels.ensure_value_fits(value)
    ok = mask & allowed(labels, box, rules, image)
    if erase_only is not None:
        ok &= labels.array[box] == erase_only
    if not ok.any():
        return False
    return history.write(box, np.asarray(value, dtype=labels.array.dtype), mask=ok, description=description)
