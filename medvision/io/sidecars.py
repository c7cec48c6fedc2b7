"""Files written beside a converted NIfTI image, as dcm2niix writes them: ``.bval`` and ``.bvec``
for a diffusion series (FSL's convention) and a ``.json`` sidecar with the acquisition fields
BIDS names (times in seconds).

FSL's b-vectors are in the image's voxel axes (the NIfTI file's i, j, k), with the first
component negated when the voxel-to-world matrix has a positive determinant (FSL's radiological
voxel convention). Volumes with b=0 (b at or below float epsilon, as dcm2niix) or no gradient get
a zero vector.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..core.atomic import write_text
from ..core.volume import Volume
from .dicom.diffusion import B0_EPS

log = logging.getLogger(__name__)


def sidecar_base(path: str | os.PathLike) -> Path:
    """``out.nii.gz`` -> ``out`` (the stem the sidecars share)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_suffix("")


def fsl_gradients(volume: Volume) -> tuple[list[float], np.ndarray] | None:
    """(b-values, 3 x N b-vectors in the voxel frame of ``volume`` as written) or None when the
    volume is not a diffusion series."""
    entries = volume.metadata.get("diffusion")
    if not entries or len(entries) != volume.n_frames:
        return None
    directions = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    flip_x = np.linalg.det(directions) > 0
    bvals, vecs = [], np.zeros((3, len(entries)))
    for t, entry in enumerate(entries):
        b = float(entry["b"])
        bvals.append(b)
        g = entry.get("gradient")
        if b <= B0_EPS or g is None:
            continue
        g = np.asarray(g, dtype=np.float64)
        if np.linalg.norm(g) <= B0_EPS:
            continue
        # LPS patient vector -> components along the voxel axes (columns of the LPS affine);
        # the same in RAS, since the file's RAS axes are the LPS ones with x and y negated
        v = directions.T @ g  # not renormalised: the readers normalise where dcm2niix does
        if flip_x:
            v[0] = -v[0]
        vecs[:, t] = v
    return bvals, vecs


def _g(x: float) -> str:
    text = f"{x:.6g}"
    return "0" if text in ("-0", "0") else text


def bids_sidecar(volume: Volume) -> dict | None:
    """The JSON sidecar's fields, or None for a volume that did not come from DICOM."""
    fields = volume.metadata.get("acquisition")
    if not fields:
        return None
    out = dict(fields)
    timing = volume.metadata.get("slice_timing")
    if timing and volume.shape[0] == len(timing):  # shape is (z, y, x) for 3D and 4D
        out["SliceTiming"] = list(timing)
    if volume.metadata.get("philips_scaling"):
        out["PhilipsScaling"] = volume.metadata["philips_scaling"]
    if volume.metadata.get("stack"):
        out["MedvisionStack"] = volume.metadata["stack"]
    return out


def write_sidecars(volume: Volume, image_path: str | os.PathLike) -> list[Path]:
    """Write the ``.json`` (and for diffusion series ``.bval``/``.bvec``) beside ``image_path``."""
    base = sidecar_base(image_path)
    written = []
    sidecar = bids_sidecar(volume)
    if sidecar is not None:
        path = base.with_name(base.name + ".json")
        write_text(path, json.dumps(sidecar, indent=2) + "\n")
        written.append(path)
    grads = fsl_gradients(volume)
    if grads is not None:
        bvals, vecs = grads
        path = base.with_name(base.name + ".bval")
        write_text(path, " ".join(_g(b) for b in bvals) + "\n")
        written.append(path)
        path = base.with_name(base.name + ".bvec")
        write_text(path, "".join(" ".join(_g(v) for v in row) + "\n" for row in vecs))
        written.append(path)
    return written
