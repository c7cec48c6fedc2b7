"""Per-label statistics: voxel count, volume in mL, and the intensities inside (HU for CT)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.labels import LabelMap

__all__ = ["LabelStats", "label_statistics"]


@dataclass(frozen=True)
class LabelStats:
    value: int
    name: str
    voxels: int
    volume_ml: float
    mean: float | None
    std: float | None
    min: float | None
    max: float | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def label_statistics(labels: LabelMap, image: np.ndarray | None = None) -> list[LabelStats]:
    """Statistics of every label in the table (and any unnamed value present), in value order.

    ``image`` (same grid) adds mean, standard deviation, minimum and maximum of its values.
    """
    flat = labels.array.ravel()
    n = int(flat.max(initial=0)) + 1
    counts = np.bincount(flat, minlength=n)
    ml = labels.voxel_volume_ml()
    values = sorted(set(labels.table.values()) | {int(v) for v in np.nonzero(counts)[0] if v})
    stats = None
    if image is not None:
        if image.shape != labels.shape:
            raise ValueError(f"image {image.shape} and labels {labels.shape} are not on one grid")
        import SimpleITK as sitk

        stats = sitk.LabelStatisticsImageFilter()
        stats.Execute(sitk.GetImageFromArray(image), sitk.GetImageFromArray(labels.array))
    out = []
    for v in values:
        c = int(counts[v]) if v < n else 0
        name = labels.table[v].name if v in labels.table else f"Label {v}"
        mean = std = lo = hi = None
        if stats is not None and c:
            # sample standard deviation (n - 1), as ITK-SNAP and Slicer's Segment Statistics report
            mean, std = float(stats.GetMean(v)), float(stats.GetSigma(v)) if c > 1 else 0.0
            lo, hi = float(stats.GetMinimum(v)), float(stats.GetMaximum(v))
        out.append(LabelStats(v, name, c, c * ml, mean, std, lo, hi))
    return out


