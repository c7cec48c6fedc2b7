"""Diffusion b-values and gradient directions that vendors keep in private elements or in text,
turned into patient-space (LPS) directions the way dcm2niix reads them.

GE (rules of dcm2niix's GE reader, checked against the installed dcm2niix on crafted files):

* The b-value is the first value of (0043,1039) ``GEMS_PARM_01``, modulo 10^9 (GE adds 10^9 as a
  flag: ``1000000750\\8\\0\\0`` is b=750).
* The gradient (0019,10BB/10BC/10BD ``GEMS_ACQU_01``) is in GE's logical frame (frequency,
  phase, slice), not the patient's. Its patient direction depends on the in-plane phase-encoding
  axis (0018,1312 ROW or COL) and on the acquisition plane (the patient axis closest to the slice
  normal): see ``_VOXEL_SIGNS``. dcm2niix only reorients for head-first-supine patients; for
  any other Patient Position (0018,5100) the direction is unknown here and left out.
* A direction whose length is between 0.03 and 0.97 scales the b-value by its squared length and
  is then normalised (GE scales b this way for low-b shells).
* A b>0 image with no direction (GE's isotropic trace image) is reported as b=0, as dcm2niix does.

United Imaging (UIH): (0065,1009) b-value and (0065,1037) gradient in the image's frame.

Toshiba/Canon: older software leaves (0018,9089) out and writes the gradient into Image Comments
(``b=1000(0.140,0.134,-0.981)``), in the image's frame: see :func:`canon_comment_gradient`.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
from pydicom.dataset import Dataset

from .private import B0_EPS, GE_ACQU, GE_PARM, UIH_IMAGE, number, private_value, texts, vector

log = logging.getLogger(__name__)

# Signs that put a vector given in dcm2niix's output voxel frame (as GE's COL-encoded gradients and
# Canon's ImageComments vectors are, once dcm2niix has read them) onto the image's (row cosines,
# column cosines, slice normal), by acquisition plane. Measured with the installed dcm2niix.
_VOXEL_SIGNS = {"axial": (-1, -1, 1), "coronal": (-1, 1, 1), "sagittal": (1, 1, -1)}


def _plane(normal: np.ndarray) -> str:
    """The acquisition plane as dcm2niix names it: the patient axis nearest the slice normal
    (ties go to the later axis)."""
    x, y, z = np.abs(normal)
    if z >= x and z >= y:
        return "axial"
    if y >= x and y >= z:
        return "coronal"
    return "sagittal"


def ge_b_value(ds: Dataset) -> float | None:
    """GE's b-value from (0043,1039): first value, modulo 10^9."""
    items = texts(private_value(ds, 0x0043, GE_PARM, 0x39))
    if not items:
        return None
    try:
        value = int(float(items[0]))
    except ValueError:
        return None
    return float(value % 1_000_000_000)


def ge_logical_gradient(ds: Dataset) -> np.ndarray | None:
    """GE's gradient (frequency, phase, slice) from (0019,10BB..10BD), or None."""
    parts = [number(private_value(ds, 0x0019, GE_ACQU, off)) for off in (0xBB, 0xBC, 0xBD)]
    if any(p is None for p in parts):
        return None
    return np.array(parts, dtype=np.float64)


def ge_to_patient(logical: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """A GE logical gradient as a patient LPS direction; None when the header does not say enough
    (no orientation, phase-encoding axis neither ROW nor COL, patient not head-first supine)."""
    position = str(ds.get("PatientPosition", "") or "").strip().upper()
    axis = str(ds.get("InPlanePhaseEncodingDirection", "") or "").strip().upper()
    frame = _orientation(ds)
    if position != "HFS" or axis not in ("ROW", "COL") or frame is None:
        return None
    row, col = frame
    if axis == "ROW":  # GE swaps frequency and phase when the phase is encoded along a row
        logical = np.array([logical[1], -logical[0], logical[2]])
    return _voxel_to_patient(logical, row, col)


def _voxel_to_patient(v: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    normal = np.cross(row, col)
    signs = _VOXEL_SIGNS[_plane(normal)]
    return signs[0] * v[0] * row + signs[1] * v[1] * col + signs[2] * v[2] * normal


def _orientation(ds: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    iop = ds.get("ImageOrientationPatient")
    try:
        values = [float(v) for v in iop]
    except (TypeError, ValueError):
        return None
    if len(values) != 6:
        return None
    row, col = np.array(values[:3]), np.array(values[3:])
    if np.linalg.norm(row) == 0 or np.linalg.norm(col) == 0:
        return None
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def ge_diffusion(ds: Dataset, b: float | None, grad: np.ndarray | None) -> tuple[float | None, np.ndarray | None]:
    """(b, patient gradient) of a GE image; the public values are kept where GE's are absent."""
    b_ge = ge_b_value(ds)
    if b_ge is not None:
        b = b_ge
    logical = ge_logical_gradient(ds)
    if logical is None or b is None:
        return b, grad
    length = float(np.linalg.norm(logical))
    if b <= B0_EPS or length <= B0_EPS:
        return (0.0 if length <= B0_EPS else b), None
    if 0.03 < length < 0.97:  # dcm2niix normalises (and rescales b) only in this range
        b = float(np.float32(b) * np.float32(length) ** 2)
        logical = logical / length
    patient = ge_to_patient(logical, ds)
    if patient is None:
        log.debug("GE gradient directions need a head-first-supine patient and ROW/COL phase encoding")
    return b, patient


_COMMENT_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def canon_comment_gradient(ds: Dataset, b: float | None) -> np.ndarray | None:
    """Older Toshiba/Canon DWI: the gradient in Image Comments, e.g. ``b=1000(0.140,0.134,-0.981)``,
    in the image's frame with the first two components swapped; used when the comment names the
    image's own b-value (0018,9087), as dcm2niix requires. Returns the patient direction."""
    if b is None or b <= 0:
        return None
    comment = str(ds.get("ImageComments", "") or "")
    key = f"b={int(math.floor(b + 0.5))}("
    at = comment.find(key)
    if at < 0:
        return None
    values = [float(v) for v in _COMMENT_NUMBER.findall(comment[at + len(key):])[:3]]
    frame = _orientation(ds)
    if len(values) != 3 or frame is None or not np.all(np.isfinite(values)):
        return None
    v = np.array([values[1], values[0], values[2]])
    if np.linalg.norm(v) <= B0_EPS:
        return None
    return _voxel_to_patient(v, *frame)  # as written (3 decimals), not renormalised, as dcm2niix


def uih_diffusion(ds: Dataset, b: float | None, grad: np.ndarray | None
                  ) -> tuple[float | None, np.ndarray | None]:
    """United Imaging: b in (0065,1009), gradient in (0065,1037) (both FD), the gradient in the
    image's frame (row cosines, column cosines, slice normal); both preferred to the public tags,
    and the vector kept as stored, as dcm2niix does."""
    b_uih = number(private_value(ds, 0x0065, UIH_IMAGE, 0x09))
    if b_uih is not None:
        b = b_uih
    v = vector(private_value(ds, 0x0065, UIH_IMAGE, 0x37))
    frame = _orientation(ds)
    if v is not None and frame is not None:
        row, col = frame
        grad = v[0] * row + v[1] * col + v[2] * np.cross(row, col)
    return b, grad


#: vendors whose patient-frame vectors dcm2niix normalises (the others are written as stored)
_NORMALISED = frozenset({"siemens", "philips", "bruker", "hitachi"})


def vendor_diffusion(ds: Dataset, vendor: str, b: float | None, grad: np.ndarray | None
                     ) -> tuple[float | None, np.ndarray | None]:
    """Apply the vendor's private b-value/direction rules to what the public tags gave."""
    if vendor in _NORMALISED and grad is not None and np.linalg.norm(grad) > B0_EPS:
        grad = grad / np.linalg.norm(grad)
    if vendor == "ge":
        return ge_diffusion(ds, b, grad)
    if vendor == "uih":
        return uih_diffusion(ds, b, grad)
    if vendor == "canon":
        comment = canon_comment_gradient(ds, b)
        if comment is not None:
            return b, comment  # dcm2niix prefers the comment to (0018,9089)
    return b, grad
