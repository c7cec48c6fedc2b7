"""Vendor names, private creators and robust readers of private (and odd public) values, shared
by the diffusion and acquisition readers."""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

PHILIPS_DD001 = "Philips MR Imaging DD 001"
PHILIPS_DD005 = "Philips MR Imaging DD 005"
PHILIPS_DD006 = "Philips MR Imaging DD 006"
PHILIPS_IMAGING = "Philips Imaging DD 001"
SIEMENS_MR = "SIEMENS MR HEADER"
GE_ACQU = "GEMS_ACQU_01"  # group 0019
GE_RELA = "GEMS_RELA_01"  # group 0021
GE_PARM = "GEMS_PARM_01"  # group 0043
UIH_IMAGE = "Image Private Header"  # group 0065 (dcm2niix reads the elements by number alone)
B0_EPS = 1.1920929e-07  # FLT_EPSILON: dcm2niix treats b at or below it as b=0


def private_value(ds: Dataset, group: int, creator: str, offset: int):
    """A private element by its creator (wherever the block was put), else at the usual tag."""
    try:
        block = ds.private_block(group, creator)
        if offset in block:
            return block[offset].value
    except (KeyError, ValueError, TypeError):
        pass
    tag = Tag(group, 0x1000 + offset)
    if tag in ds:
        try:
            return ds[tag].value
        except Exception:  # noqa: BLE001 - an undecodable private value: treat as absent
            return None
    return None


def texts(value) -> list[str]:
    """The values of a (possibly multi-valued, possibly undecoded) text element, as strings."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1", "replace").strip("\0 ").split("\\")
    elif isinstance(value, str):
        value = value.split("\\")
    elif not (isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str))):
        value = [value]
    return [str(v).strip("\0 ") for v in value]


def number(value) -> float | None:
    """The first value of an element as a finite float, or None."""
    if isinstance(value, bytes | bytearray | str) or (
            hasattr(value, "__len__") and not isinstance(value, str)):
        items = texts(value)
        value = items[0] if items else None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def vector(value) -> np.ndarray | None:
    """Three finite floats, or None."""
    try:
        arr = np.array([float(v) for v in (texts(value) if isinstance(value, bytes | bytearray | str) else value)],
                       dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (3,) and np.all(np.isfinite(arr)) else None


def manufacturer(ds: Dataset) -> str:
    """A short vendor name: philips, siemens, ge, canon (Toshiba too), uih, hitachi, bruker, or the
    header's text."""
    text = str(ds.get("Manufacturer", "")).upper()
    for key, name in (("PHILIPS", "philips"), ("SIEMENS", "siemens"), ("GE ", "ge"), ("GE_", "ge"),
                      ("GENERAL ELECTRIC", "ge"), ("CANON", "canon"), ("TOSHIBA", "canon"), ("BRUKER", "bruker"),
                      ("UIH", "uih"), ("UNITED IMAGING", "uih"), ("HITACHI", "hitachi")):
        if key in text + " ":
            return name
    return text.strip().lower()
