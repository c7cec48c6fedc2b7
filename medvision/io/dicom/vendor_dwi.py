"""Diffusion b-values and gradient directions that vendors keep in private elements or in text,
turned into patient-space (LPS) directions the way dcm2niix reads them.

GE (rules of dcm2niix's GE reader, checked against the installed dcm2niix on crafted files):

* The b-value is the first value of (0043,1039) ``GEMS_PARM_01``, modulo 10^9 (GE adds 10^9 as a
  flag: ``1000000750\\8\\0\\0`` is b=750).
* The gradient (0019,10BB/10BC/10BD ``GEMS_ACQU_01``) is in GE's logical frame (frequency,
  phase, slice), not the patient's. Its patient direction depends on the in-plane phase-encoding
  axis (0018,1312 ROW or COL) and on the acquisition plane (the patient axis closest to the slice
  normal): see :func:`_GE_FRAME`. dcm2niix only reorients for head-first-supine patients; for
  any other Patient Position (0018,5100) the direction is unknown here and left out.
* A direction whose length is between 0.03 and 0.97 scales the b-value by its squared length and
  is then normalised (GE scales b this way for low-b shells).
* A b>0 image with no direction (GE's isotropic trace image) is reported as b=0, as dcm2niix does.
"""

from __future__ import annotations

import logging

import numpy as np
from pydicom.dataset import Dataset

from .private import B0_EPS, GE_ACQU, GE_PARM, number, private_value, texts

log = logging.getLogger(__name__)

# GE logical (a, b, c) -> components along (row cosines, column cosines, slice normal) of the image,
# by acquisition plane and phase-encoding axis: ((index of a/b/c for each image axis), (signs))
_GE_FRAME = {
    ("axial", "COL"): ((0, 1, 2), (-1, -1, 1)),
    ("axial", "ROW"): ((1, 0, 2), (-1, 1, 1)),
    ("coronal", "COL"): ((0, 1, 2), (-1, 1, 1)),
    ("coronal", "ROW"): ((1, 0, 2), (-1, -1, 1)),
    ("sagittal", "COL"): ((0, 1, 2), (1, 1, -1)),
    ("sagittal", "ROW"): ((1, 0, 2), (1, -1, -1)),
}


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
    iop = ds.get("ImageOrientationPatient")
    if position != "HFS" or axis not in ("ROW", "COL") or iop is None or len(iop) != 6:
        return None
    row = np.array([float(v) for v in iop[:3]])
    col = np.array([float(v) for v in iop[3:]])
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    order, signs = _GE_FRAME[(_plane(normal), axis)]
    image = [signs[i] * logical[order[i]] for i in range(3)]
    return image[0] * row + image[1] * col + image[2] * normal


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
    if 0.03 < length < 0.97:
        b = float(np.float32(b) * np.float32(length) ** 2)
    patient = ge_to_patient(logical / length, ds)
    if patient is None:
        log.debug("GE gradient directions need a head-first-supine patient and ROW/COL phase encoding")
    return b, patient


def vendor_diffusion(ds: Dataset, vendor: str, b: float | None, grad: np.ndarray | None
                     ) -> tuple[float | None, np.ndarray | None]:
    """Apply the vendor's private b-value/direction rules to what the public tags gave."""
    if vendor == "ge":
        return ge_diffusion(ds, b, grad)
    return b, grad
