"""Paint and erase brushes: a disk in one slice (2D) or a ball (3D), sized in millimetres.

The shapes are physical: on a grid with 0.7 mm pixels and 5 mm slices a 3D ball of radius 10 mm
covers 29 pixels across and 5 slices, and a disk drawn in a sagittal view of that grid is round on
screen. A drag is a stroke: the dabs along it are joined (no gaps when the mouse moves fast) and
the whole stroke is one undo step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.edits import Box, History, box_union
from ..core.labels import LabelMap
from .rules import EditRules, paint, spacing_zyx

__all__ = ["BrushShape", "brush_mask", "Stroke"]


@dataclass(frozen=True)
class BrushShape:
    """``radius_mm``; ``axis``: the array axis (0 z, 1 y, 2 x) normal to the slice for a 2D disk,
    or None for a 3D ball."""

    radius_mm: float
    axis: int | None = 0


def brush_mask(center_zyx, shape: BrushShape, spacing: np.ndarray) -> tuple[Box, np.ndarray]:
    """The box and boolean mask of one dab centred at ``center_zyx`` (voxel indices, floats allowed).

    The box may reach outside the grid; :func:`medvision.annotate.rules.paint` clips it.
    """
    center = np.asarray(center_zyx, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    # half-size in voxels per axis; at least the voxel under the cursor
    half = np.floor(shape.radius_mm / spacing + 1e-9).astype(int)
    c = np.rint(center).astype(int)
    if shape.axis is not None:
        half[shape.axis] = 0
    lo = c - half
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, c + half, strict=True))
    axes = [(np.arange(lo[i], c[i] + half[i] + 1) - center[i]) * spacing[i] for i in range(3)]
    if shape.axis is not None:
        axes[shape.axis] = np.zeros(1)  # the slice itself
    dz, dy, dx = np.ix_(*axes)
    r2 = shape.radius_mm ** 2
    mask = (dz * dz + dy * dy + dx * dx) <= r2 + 1e-9
    if not mask.any():  # a radius under half a voxel still paints the voxel clicked
        mask[tuple(np.clip(c - lo, 0, None))] = True
    return box, mask


@dataclass
class Stroke:
    """One drag of the brush: :meth:`dab` at each mouse position, :meth:`finish` at release.

    ``value`` 0 erases (every label, or only ``erase_only``).
    """

    history: History
    labels: LabelMap
    shape: BrushShape
    value: int
    rules: EditRules = field(default_factory=EditRules)
    image: np.ndarray | None = None
    erase_only: int | None = None
    _last: np.ndarray | None = None
    _open: bool = False
    changed: bool = False

    def __post_init__(self) -> None:
        self.spacing = spacing_zyx(self.labels.affine)
        what = "erase" if self.value == 0 else f"paint {self._name()}"
        self.history.begin(f"{what} ({'3D' if self.shape.axis is None else '2D'} brush)")
        self._open = True

    def _name(self) -> str:
        table = self.labels.table
        return table[self.value].name if self.value in table else f"label {self.value}"

    def dab(self, center_zyx) -> Box | None:
        """Paint at ``center_zyx`` and along the line from the previous dab; returns the changed box."""
        center = np.asarray(center_zyx, dtype=np.float64)
        points = [center]
        if self._last is not None:
            step_mm = max(self.shape.radius_mm * 0.5, 0.5 * float(self.spacing.min()))
            dist = float(np.linalg.norm((center - self._last) * self.spacing))
            n = int(np.ceil(dist / step_mm))
            points = [self._last + (center - self._last) * k / n for k in range(1, n + 1)] if n > 1 else [center]
        self._last = center
        changed_box = None
        for p in points:
            box, mask = brush_mask(p, self.shape, self.spacing)
            if paint(self.history, self.labels, box, mask, self.value, self.rules, self.image,
                     erase_only=self.erase_only):
                self.changed = True
                changed_box = box_union(changed_box, box)
        return changed_box

    def finish(self):
        """End the stroke: one undo step (None when nothing changed)."""
        if not self._open:
            return None
        self._open = False
        return self.history.end()
