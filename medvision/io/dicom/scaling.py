"""Philips intensity scaling: the scanner's precise floating-point values or its display values.

Philips stores pixels (SV) with a public rescale (RS, RI: the display values DV = SV * RS + RI the
console shows) and a private scale slope SS (2005,100E). The precise floating-point value is
FP = DV / (RS * SS): the physical quantity, comparable across series, and what dcm2niix writes
by default (its ``-p y``). Both are useful; the caller chooses.
"""

from __future__ import annotations

import numpy as np

from ..errors import MedvisionIOError
from .frames import Frame

PHILIPS_SCALINGS = ("precise", "display")
SCALING_TEXT = {
    "precise": "Philips precise floating-point values (private scale slope 2005,100E), as dcm2niix",
    "display": "Philips display values (Rescale Slope/Intercept)",
}


def scaling_label(mode: str) -> str:
    """The short line a view shows for a volume's ``metadata["philips_scaling"]``."""
    return {"precise": "Philips precise values (FP)", "display": "Philips display values (DV)"}.get(
        mode, f"Philips {mode} values")


def apply_philips_scaling(frames: list[Frame], mode: str) -> str | None:
    """Give Philips frames that carry a private scale slope the rescale ``mode`` asks for.

    ``precise``: FP = (SV * RS + RI) / (RS * SS), Philips' floating-point values (dcm2niix's
    default); ``display``: DV = SV * RS + RI, the values the scanner's console shows. Returns
    ``mode`` (for ``metadata["philips_scaling"]``), or None when no frame has a private scale slope."""
    if mode not in PHILIPS_SCALINGS:
        raise MedvisionIOError(f"unknown Philips scaling '{mode}': use one of {', '.join(PHILIPS_SCALINGS)}")
    scaled = [f for f in frames if f.philips_scale]
    if not scaled:
        return None
    if mode == "precise":
        for f in scaled:
            rs, ri, ss = np.float32(f.slope), np.float32(f.intercept), np.float32(f.philips_scale)
            if rs * ss == 0:
                continue
            # in single precision, as dcm2niix computes the NIfTI scl_slope/scl_inter it writes
            v0 = (np.float32(0.0) * rs + ri) / (rs * ss)
            v1 = (np.float32(1.0) * rs + ri) / (rs * ss)
            f.slope, f.intercept = float(v1 - v0), float(v0)
    return mode
