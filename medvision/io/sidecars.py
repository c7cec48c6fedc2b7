"""Files written beside a converted NIfTI image, as dcm2niix writes them: ``.bval`` and ``.bvec``
for a diffusion series (FSL's convention) and a ``.json`` sidecar with the acquisition fields
BIDS names (times in seconds).

FSL's b-vectors are in the image's voxel axes (the NIfTI file's i, j, k), with the first
component negated when the voxel-to-world matrix has a positive determinant (FSL's radiological
voxel convention). Volumes with b=0 (b at or below float epsilon, as dcm2niix) get a zero vector;
when a diffusion-weighted volume's direction is unknown in patient space no ``.bvec`` is written
(the reason goes into the volume's warnings), rather than a zero vector that reads as b=0.
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
from .volumes import json_sidecar, sidecar_base

log = logging.getLogger(__name__)


def fsl_gradients(volume: Volume) -> tuple[list[float], np.ndarray | None] | None:
    """(b-values, 3 x N b-vectors in the voxel frame of ``volume`` as written) or None when the
    volume is not a diffusion series. The b-vectors are None when a diffusion-weighted volume's
    direction is not known in patient space (a zero vector there would read as a b=0 volume's)."""
    entries = volume.metadata.get("diffusion")
    if not entries or len(entries) != volume.n_frames:
        return None
    directions = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    flip_x = np.linalg.det(directions) > 0
    bvals, vecs = [], np.zeros((3, len(entries)))
    unknown = 0
    for t, entry in enumerate(entries):
        b = float(entry["b"])
        bvals.append(b)
        if b <= B0_EPS:
            continue
        g = entry.get("gradient")
        if g is None:  # diffusion-weighted, direction not known in patient space
            unknown += 1
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
    if unknown:
        return bvals, None
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
        path = json_sidecar(image_path)
        write_text(path, json.dumps(sidecar, indent=2) + "\n")
        written.append(path)
    grads = fsl_gradients(volume)
    if grads is not None:
        bvals, vecs = grads
        path = base.with_name(base.name + ".bval")
        write_text(path, " ".join(_g(b) for b in bvals) + "\n")
        written.append(path)
        path = base.with_name(base.name + ".bvec")
        if vecs is None:
            unknown = sum(1 for e in volume.metadata["diffusion"]
                          if float(e["b"]) > B0_EPS and e.get("gradient") is None)
            note = (f"{path.name} not written: the gradient direction of {unknown} diffusion-weighted volumes is not "
                    "known in patient space (e.g. GE with the patient not head-first supine)")
            log.warning("%s", note)
            volume.metadata.setdefault("warnings", []).append(note)
        else:
            write_text(path, "".join(" ".join(_g(v) for v in row) + "\n" for row in vecs))
            written.append(path)
    return written
