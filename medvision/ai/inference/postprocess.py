"""Stage 4: the card's post-processing of the label map (each label's largest connected component,
its holes filled), in place, within the region the model saw."""

from __future__ import annotations

import numpy as np

from ...core.labels import LabelMap
from ..masks import fill_holes, largest_component

__all__ = ["padded_bbox", "postprocess"]


def padded_bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The box of ``mask``'s voxels widened by one voxel each side (within the array); None if empty."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(max(0, int(hit[0]) - 1), min(mask.shape[axis], int(hit[-1]) + 2)))
    return tuple(box)


def postprocess(card: dict, labels: LabelMap, region: tuple[slice, ...]) -> None:
    """Apply the card's ``postprocessing`` to ``labels`` within ``region`` (the part of the source
    the model saw), label by label."""
    post = card.get("postprocessing") or {}
    if not (post.get("largest_component") or post.get("fill_holes")):
        return
    for value in labels.table.values():
        sub = labels.array[region]
        mask = sub == value
        box = padded_bbox(mask)
        if box is None:
            continue
        # on the label's bounding box plus one voxel: the same components and holes, less to scan
        sub, mask = sub[box], mask[box]
        if post.get("largest_component"):
            mask = largest_component(mask)
        if post.get("fill_holes"):
            mask = fill_holes(mask)
        sub[(sub == value) & ~mask] = 0
        sub[mask & (sub == 0)] = value
