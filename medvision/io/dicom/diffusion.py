"""Per-image diffusion and vendor keys: b-value, gradient direction, derived (trace/ADC) images,
Philips' private scale slope, and the keys that put the volumes of a 4D series in acquisition
order the way dcm2niix does.

Rules (from how the scanners store them and how dcm2niix reads them):

* Volume order of classic (one image per file) series follows the Instance Number; ties are
  broken by the vendor's volume counter (Philips DiffusionVolumeNumber 2005,1596 from software
  5.6 on, else its GradientOrientationNumber 2005,1413; GE RawDataRunNumber 0019,10A2; the public
  TemporalPositionIdentifier), then by the CRC-32 of the SOP Instance UID. Never by b-value: some
  vendors (Toshiba/Canon) leave the b-value out of their b=0 images.
* Old Philips classic DTI with series numbers above 99999 repeat instance numbers across b-value
  groups: the BValueNumber (2005,1412) comes first.
* Enhanced multi-frame objects: frames follow their Dimension Index Values, the later dimensions
  most significant when the in-stack position comes before them (Philips), the first dimension
  most significant otherwise (Canon, Bruker).
* Derived diffusion images (isotropic trace, ADC, FA) kept in the series of the acquired ones are
  marked so that they form their own stack: DiffusionDirectionality ISOTROPIC, such an Image Type,
  or (Philips) a b-value above zero with a zero gradient vector.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from .private import (
    B0_EPS,
    PHILIPS_DD001,
    PHILIPS_DD005,
    PHILIPS_DD006,
    PHILIPS_IMAGING,
    SIEMENS_MR,
    manufacturer,
    private_value,
)
from .private import number as _number
from .private import vector as _vector
from .vendor_dwi import vendor_diffusion

log = logging.getLogger(__name__)

_DERIVED_TYPES = frozenset({"ADC", "EADC", "TRACEW", "TRACE", "ISOTROPIC", "FA", "EXP"})


def diffusion(ds: Dataset, item: Dataset | None, csa: dict[str, list[str]] | None = None  # noqa: C901 - vendors
              # in dcm2niix's order of precedence (standard, enhanced, Siemens CSA, GE, Philips, Toshiba)
              ) -> tuple[float | None, np.ndarray | None, str]:
    """(b-value s/mm², gradient direction in patient LPS, DiffusionDirectionality) of one image.

    ``item`` is the image's MR Diffusion functional group item (enhanced objects), else None."""
    b = grad = None
    directionality = ""
    for source in (item, ds):
        if source is None:
            continue
        if b is None:
            b = _number(source.get("DiffusionBValue"))
        if not directionality:
            directionality = str(source.get("DiffusionDirectionality", "") or "").strip().upper()
        if grad is None:
            grad = _vector(source.get("DiffusionGradientOrientation") or [])
            seq = source.get("DiffusionGradientDirectionSequence")
            if grad is None and seq:
                grad = _vector(seq[0].get("DiffusionGradientOrientation") or [])
    vendor = manufacturer(ds)
    if vendor == "siemens":
        if b is None:
            b = _number(private_value(ds, 0x0019, SIEMENS_MR, 0x0C))
        if grad is None:
            grad = _vector(private_value(ds, 0x0019, SIEMENS_MR, 0x0E) or [])
        if csa:
            if b is None:
                b = _number((csa.get("B_value") or (None,))[0])
            if grad is None:
                grad = _vector(csa.get("DiffusionGradientDirection") or [])
    elif vendor == "philips":
        if b is None:
            b = _number(private_value(ds, 0x2001, PHILIPS_IMAGING, 0x03))
        if grad is None:
            parts = [_number(private_value(ds, 0x2005, PHILIPS_DD001, off)) for off in (0xB0, 0xB1, 0xB2)]
            if all(p is not None for p in parts):
                grad = np.array(parts, dtype=np.float64)
        if not directionality:
            text = private_value(ds, 0x2001, PHILIPS_IMAGING, 0x04)
            if str(text or "").strip().upper() == "I":
                directionality = "ISOTROPIC"
    b, grad = vendor_diffusion(ds, vendor, b, grad)
    return b, grad, directionality


def derived_kind(ds: Dataset, b: float | None, grad: np.ndarray | None, directionality: str,
                 frame_type=None) -> str:
    """Why an image is not an acquired volume of its series ("" when it is one)."""
    image_type = [str(v).strip().upper() for v in (frame_type or ds.get("ImageType") or [])]
    if directionality == "ISOTROPIC" or any(t in _DERIVED_TYPES for t in image_type[2:]):
        return "derived trace/ADC"
    if (manufacturer(ds) == "philips" and b is not None and b > B0_EPS and grad is not None
            and np.all(np.abs(grad) < 1e-4)):
        return "derived trace/ADC"  # Philips stores its isotropic image as b>0 with no direction
    if image_type and image_type[0] == "DERIVED":
        return "derived"
    return ""


def philips_scale(ds: Dataset, per_frame: Dataset | None = None) -> float | None:
    """Philips' private scale slope (2005,100E) of an image or frame; None when absent or zero."""
    for source in (per_frame, ds):
        if source is None:
            continue
        value = _number(private_value(source, 0x2005, PHILIPS_DD001, 0x0E))
        if value is None:
            seq = private_value(source, 0x2005, PHILIPS_DD005, 0x0F)  # (2005,140F) per-frame private group
            if seq:
                try:
                    value = _number(private_value(seq[0], 0x2005, PHILIPS_DD001, 0x0E))
                except (TypeError, IndexError, AttributeError):
                    value = None
        if value:
            return value
    return None


def crc32(text: str) -> int:
    return zlib.crc32(text.encode("latin-1", "replace")) & 0xFFFFFFFF


def classic_order_key(ds: Dataset, instance: int | None, b: float | None, grad: np.ndarray | None) -> tuple:
    """The key dcm2niix sorts the images of a classic series on (see the module docstring)."""
    vendor = manufacturer(ds)
    sop = str(ds.get("SOPInstanceUID", "") or "")
    group = 0
    run = 0
    if vendor == "philips":
        b_number = int(_number(private_value(ds, 0x2005, PHILIPS_DD005, 0x12)) or 0)
        series = int(_number(ds.get("SeriesNumber")) or 0)
        if series > 99999 and b_number > 0:
            group = b_number
        volume = int(_number(private_value(ds, 0x2005, PHILIPS_DD006, 0x96)) or 0)
        gradient_number = int(_number(private_value(ds, 0x2005, PHILIPS_DD005, 0x13)) or 0)
        if b is not None and b > B0_EPS and grad is not None and np.all(np.abs(grad) < 1e-4):
            gradient_number = 1 << 20  # a derived trace image sorts after the acquired ones
        run = volume if volume > 0 else gradient_number
    elif vendor == "ge":
        run = int(_number(private_value(ds, 0x0019, "GEMS_ACQU_01", 0xA2)) or 0)
    run = max(run, int(_number(ds.get("TemporalPositionIdentifier")) or 0))
    if instance is None:  # as dcm2niix: the SOP Instance UID's CRC stands in for a missing number
        instance = crc32(sop) % 2147483647 or 1
    return (group, instance, run, crc32(sop))


def dimension_keys(ds: Dataset, per_frame_seq, n_frames: int) -> list[tuple]:
    """Per-frame sort keys from the Dimension Index Values of an enhanced object ([] if absent)."""
    values = []
    for i in range(n_frames):
        item = per_frame_seq[i] if i < len(per_frame_seq) else None
        content = item.get("FrameContentSequence") if item is not None else None
        div = content[0].get("DimensionIndexValues") if content else None
        if div is None:
            return []
        div = [int(v) for v in (div if isinstance(div, list | tuple) or hasattr(div, "__iter__") else [div])]
        values.append(div)
    if not values or len({len(v) for v in values}) != 1:
        return []
    n = len(values[0])
    pointers = [Tag(item.get("DimensionIndexPointer")) for item in (ds.get("DimensionIndexSequence") or [])
                if item.get("DimensionIndexPointer") is not None]
    stack_item = 0
    for j, pointer in enumerate(pointers[:n]):
        if pointer in (Tag(0x0020, 0x9057), Tag(0x0020, 0x0032)):  # InStackPositionNumber, ImagePositionPatient
            stack_item = j
    variable = [j for j in range(n) if len({v[j] for v in values}) > 1]
    max_variable = max(variable) if variable else 0
    if stack_item < max_variable:
        return [tuple(reversed(v)) for v in values]  # last dimension most significant
    return [tuple(v) for v in values]
