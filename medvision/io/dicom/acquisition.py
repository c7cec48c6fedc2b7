"""A series' acquisition parameters under the names BIDS gives them (times in seconds), for the
JSON sidecar written beside a converted NIfTI file (see :mod:`medvision.io.sidecars`)."""

from __future__ import annotations

import logging
import math

from pydicom.dataset import Dataset

from .diffusion import SIEMENS_MR, manufacturer, private_value

log = logging.getLogger(__name__)

# BIDS key -> (DICOM keyword, factor to BIDS units); ms -> s where BIDS asks for seconds
_NUMBERS = {
    "MagneticFieldStrength": ("MagneticFieldStrength", 1.0),
    "FlipAngle": ("FlipAngle", 1.0),
    "EchoTime": ("EchoTime", 0.001),
    "RepetitionTime": ("RepetitionTime", 0.001),
    "InversionTime": ("InversionTime", 0.001),
    "SliceThickness": ("SliceThickness", 1.0),
    "SpacingBetweenSlices": ("SpacingBetweenSlices", 1.0),
    "EchoTrainLength": ("EchoTrainLength", 1.0),
    "PixelBandwidth": ("PixelBandwidth", 1.0),
    "ImagingFrequency": ("ImagingFrequency", 1.0),
    "SeriesNumber": ("SeriesNumber", 1.0),
}
_TEXTS = {
    "Manufacturer": "Manufacturer",
    "ManufacturersModelName": "ManufacturerModelName",
    "SoftwareVersions": "SoftwareVersions",
    "SeriesDescription": "SeriesDescription",
    "ProtocolName": "ProtocolName",
    "Modality": "Modality",
    "BodyPartExamined": "BodyPartExamined",
    "PatientPosition": "PatientPosition",
    "ScanningSequence": "ScanningSequence",
    "SequenceVariant": "SequenceVariant",
    "SequenceName": "SequenceName",
    "MRAcquisitionType": "MRAcquisitionType",
}
# where enhanced objects keep them: shared/per-frame functional group sequence -> keyword
_FUNCTIONAL = {
    "RepetitionTime": ("MRTimingAndRelatedParametersSequence", "RepetitionTime"),
    "FlipAngle": ("MRTimingAndRelatedParametersSequence", "FlipAngle"),
    "EchoTrainLength": ("MRTimingAndRelatedParametersSequence", "EchoTrainLength"),
    "EchoTime": ("MREchoSequence", "EffectiveEchoTime"),
    "SliceThickness": ("PixelMeasuresSequence", "SliceThickness"),
    "SpacingBetweenSlices": ("PixelMeasuresSequence", "SpacingBetweenSlices"),
}


def _float(value) -> float | None:
    if value is None or value == "":
        return None
    if hasattr(value, "__len__") and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _functional(ds: Dataset, sequence: str, keyword: str):
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(group)
        if not items:
            continue
        seq = items[0].get(sequence)
        if seq:
            value = seq[0].get(keyword)
            if value is not None:
                return value
    return None


def _number_text(x: float):
    return int(x) if float(x).is_integer() and abs(x) < 1e15 else x


def acquisition_fields(ds: Dataset, csa: dict[str, list[str]] | None = None) -> dict:
    """BIDS-named acquisition fields of one image's header (only those the header has)."""
    out: dict = {}
    for key, keyword in _TEXTS.items():
        value = ds.get(keyword)
        if value not in (None, ""):
            text = "\\".join(str(v) for v in value) if isinstance(value, list | tuple) or (
                hasattr(value, "__iter__") and not isinstance(value, str)) else str(value)
            if text.strip():
                out[key] = text.strip()
    image_type = ds.get("ImageType")
    if image_type:
        out["ImageType"] = [str(v) for v in image_type]
    for key, (keyword, factor) in _NUMBERS.items():
        value = _float(ds.get(keyword))
        if value is None and key in _FUNCTIONAL:
            value = _float(_functional(ds, *_FUNCTIONAL[key]))
        if value is not None and (value > 0 or key == "SeriesNumber"):
            out[key] = _number_text(round(value * factor, 9))
    direction = str(ds.get("InPlanePhaseEncodingDirection", "")
                    or _functional(ds, "MRFOVGeometrySequence", "InPlanePhaseEncodingDirection") or "").strip().upper()
    if direction in ("ROW", "COL"):
        out["InPlanePhaseEncodingDirectionDICOM"] = direction
        axis = "i" if direction == "ROW" else "j"
        positive = _phase_polarity(ds, csa)
        if positive is None:
            out["PhaseEncodingAxis"] = axis
        else:
            # i runs along a row (DICOM column index), j down a column (row index), as stored
            out["PhaseEncodingDirection"] = axis + ("" if positive else "-")
        bandwidth = _float(private_value(ds, 0x0019, SIEMENS_MR, 0x28)) if manufacturer(ds) == "siemens" else None
        if bandwidth is None and csa:
            bandwidth = _float((csa.get("BandwidthPerPixelPhaseEncode") or (None,))[0])
        lines = int(ds.get("Rows" if direction == "COL" else "Columns") or 0)
        if csa and "MOSAIC" in str(ds.get("ImageType", "")):
            n = int(_float((csa.get("NumberOfImagesInMosaic") or (0,))[0]) or 0)
            grid = math.ceil(math.sqrt(n)) if n > 1 else 1
            lines //= grid
        if bandwidth and lines > 1:
            spacing = 1.0 / (bandwidth * lines)
            out["EffectiveEchoSpacing"] = round(spacing, 9)
            out["TotalReadoutTime"] = round(spacing * (lines - 1), 9)
    out["ConversionSoftware"] = "medvision"
    return out


def _phase_polarity(ds: Dataset, csa: dict[str, list[str]] | None) -> bool | None:
    """True when phase encoding runs along the stored axis (Siemens says so), None when unknown."""
    if manufacturer(ds) == "ge":
        # GE Rx27 and later: (0018,9034) LINEAR runs along the stored axis, REVERSE_LINEAR against it
        # (as dcm2niix reads it); older GE software keeps it only in a proprietary block: unknown
        order = str(ds.get("RectilinearPhaseEncodeReordering", "") or "").strip().upper()
        return {"LINEAR": True, "REVERSE_LINEAR": False}.get(order)
    value = None
    if csa:
        value = _float((csa.get("PhaseEncodingDirectionPositive") or (None,))[0])
    if value is None and manufacturer(ds) == "siemens":
        value = _float(private_value(ds, 0x0021, "SIEMENS MR SDS 01", 0x1C))
    if value is None:
        return None
    return value > 0
