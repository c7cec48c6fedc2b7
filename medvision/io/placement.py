"""Placing labels made on another grid onto an image's grid: the step every label reader shares
(NIfTI/NRRD label files in :mod:`.labels`, DICOM SEG in :mod:`.seg`), below both of them."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.volume import Volume

__all__ = ["onto_grid"]


def onto_grid(array: np.ndarray, affine: np.ndarray, reference: Volume) -> tuple[np.ndarray, str]:
    """Labels ``(array, affine)`` placed on ``reference``'s grid: as they are when the grids match,
    reoriented (exact) when they are the same grid stored another way, else resampled by nearest
    neighbour. Returns the array and how it was placed ("same grid", "reoriented", "resampled")."""
    source = Volume(array, affine, None, {})
    if source.same_grid(reference):
        return array, "same grid"
    if reference.is_orthogonal() and source.is_orthogonal():
        turned = source.reoriented(reference.orientation)
        if turned.same_grid(reference):
            return turned.array, "reoriented"
    ref_image = reference.frame(0).to_sitk() if reference.is_4d else reference.to_sitk()
    out = sitk.Resample(source.to_sitk(), ref_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                        sitk.sitkUInt16 if array.dtype == np.uint16 else sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out), "resampled"
