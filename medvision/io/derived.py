"""A derived DICOM series: new pixel values on the grid of a series loaded from DICOM (an inpainted
image, for instance), written as a new series that says what it is and where it came from, never
over its source.

Each slice is its source file's header with: a new Series Instance UID (one for the series) and SOP
Instance UID, ImageType ``DERIVED\\SECONDARY``, a DerivationDescription, a Source Image Sequence
pointing at the source slice, the Series Description given, and the pixel data uncompressed
(explicit VR little endian). Whole-number values that fit 16 bits are stored exactly (slope 1,
intercept 0); other values are scaled to 16 bits with the RescaleSlope/Intercept that map them back."""

from __future__ import annotations

import datetime
import io
import os
from pathlib import Path

import numpy as np

from ..core.atomic import write_bytes
from ..core.volume import Volume
from .errors import MedvisionIOError, UnsupportedDataError

__all__ = ["write_derived_series", "write_synthetic_volume", "stored_values", "synthetic_label", "AI_PREFIX",
           "SYNTHETIC_PREFIXES", "is_synthetic_text"]

#: how the DerivationDescription of an image made by a model starts (medvision inpaint writes it)
AI_PREFIX = "AI "
#: ... and of one medvision's built-in fill made (no model, still not an acquired image)
SYNTHETIC_PREFIXES = (AI_PREFIX, "Inpainted (", "Anomaly map (")


def is_synthetic_text(text: str | None) -> bool:
    """Whether a Series or Derivation Description is one medvision writes for an image it made."""
    return (text or "").startswith(SYNTHETIC_PREFIXES)

#: "Source image for image processing operation" (DICOM CID 7202)
_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def synthetic_label(metadata: dict) -> str:
    """"SYNTHETIC: <what made it>" for an image a model made (its DerivationDescription, or a sidecar that
    says so), else "": what the window shows wherever the image is."""
    derivation = str(metadata.get("derivation") or "")
    if metadata.get("synthetic") or is_synthetic_text(derivation):
        return "SYNTHETIC: " + (derivation.split(":")[0] if derivation else "made by a model")
    return ""


def write_synthetic_volume(volume: Volume, path: str | os.PathLike, *, derivation: str, **record) -> Path:
    """Write ``volume`` (NIfTI/NRRD/MHA by suffix) and a JSON sidecar beside it that says it is a derived,
    synthetic image and how it was made (``derivation``; ``record``: more fields, e.g. Source, Model);
    :func:`~medvision.io.volumes.read_volume` reads the mark back. Returns the sidecar's path."""
    import json

    from ..core.atomic import write_text
    from .volumes import json_sidecar, write_volume

    write_volume(volume, path)
    sidecar = json_sidecar(path)
    write_text(sidecar, json.dumps({"ImageType": ["DERIVED", "SECONDARY"], "DerivationDescription": derivation,
                                    **record, "Synthetic": True}, indent=1))
    return sidecar


def stored_values(array: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """(stored 16-bit array, RescaleSlope, RescaleIntercept, signed) that give ``array`` back as
    ``stored * slope + intercept``: exactly for whole numbers within int16 or uint16, else to 1/65535 of the range."""
    values = np.asarray(array)
    whole = values.dtype.kind in "iub" or bool(np.all(np.isfinite(values)) and np.array_equal(values, np.rint(values)))
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if whole and low >= -32768 and high <= 32767:
        return values.astype(np.int16), 1.0, 0.0, True
    if whole and low >= 0 and high <= 65535:
        return values.astype(np.uint16), 1.0, 0.0, False
    if not np.all(np.isfinite(values)):
        raise MedvisionIOError("the image holds values that are not finite: it cannot be written as DICOM")
    slope = (high - low) / 65535 if high > low else 1.0
    slope = float(f"{slope:.10g}")  # what a DS (16 characters) holds
    intercept = float(f"{low:.10g}")
    stored = np.clip(np.rint((values - intercept) / slope), 0, 65535).astype(np.uint16)
    return stored, slope, intercept, False


def write_derived_series(image: Volume, array: np.ndarray, folder: str | os.PathLike, *, description: str,
                         derivation: str, sources: list | None = None) -> list[Path]:
    """Write ``array`` (z, y, x, on ``image``'s grid; ``image`` loaded from a DICOM series) as a new DICOM
    series in ``folder`` (created; must be empty or absent). ``description``: the Series Description;
    ``derivation``: the DerivationDescription (what was done, by what). ``sources``: the slices' source
    files (default ``image.metadata["slice_sources"]``; a 4D series' frame: its ``frame_slice_sources``)."""
    from pydicom import dcmwrite
    from pydicom.uid import generate_uid

    from .dicom.files import read_dataset
    from .seg import fill_blank_uids

    sources = sources if sources is not None else image.metadata.get("slice_sources")
    if not sources:
        raise UnsupportedDataError("a derived DICOM series is written on the series it comes from: the image must be "
                                   "loaded from DICOM (not NIfTI, and not resampled); write a NIfTI file instead")
    array = np.asarray(array)
    if array.shape != tuple(image.shape[-3:]) or len(sources) != array.shape[0]:
        raise UnsupportedDataError(f"the values ({array.shape}) do not lie on the series' grid "
                                   f"({len(sources)} slices of {image.shape[-2:]})")
    refs = [s[0] for s in sources]
    if len(set(refs)) != len(refs) or any(s[1] != 0 for s in sources):
        raise UnsupportedDataError("writing a derived series of multi-frame images is not supported yet: write a "
                                   "NIfTI file instead")
    out = Path(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MedvisionIOError(f"{out}: the derived series is written into a new or empty folder")
    headers = [read_dataset(ref, headers_only=True) for ref in refs]
    fill_blank_uids(headers, refs)
    stored, slope, intercept, signed = stored_values(array)
    series_uid = generate_uid()
    now = datetime.datetime.now()
    first_number = int(getattr(headers[0], "SeriesNumber", 0) or 0)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for z, ds in enumerate(headers):
        _as_derived(ds, series_uid=series_uid, number=first_number + 2000, description=description,
                    derivation=derivation, now=now)
        _set_pixels(ds, stored[z], slope, intercept, signed)
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        path = out / f"IM{z + 1:05d}.dcm"
        write_bytes(path, buffer.getvalue())
        written.append(path)
    return written


_DROPPED = ("PixelData", "FloatPixelData", "DoubleFloatPixelData", "PlanarConfiguration",
            "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
            "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
            "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData", "ModalityLUTSequence",
            "VOILUTSequence", "IconImageSequence", "SmallestImagePixelValue", "LargestImagePixelValue",
            "NumberOfFrames")


def _as_derived(ds, *, series_uid: str, number: int, description: str, derivation: str, now) -> None:
    """A source slice's header made the header of its derived slice (in place)."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    source_class, source_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    for keyword in _DROPPED:
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = description[:64]
    old_type = [str(v) for v in (ds.get("ImageType") or [])]
    ds.ImageType = ["DERIVED", "SECONDARY", *old_type[2:]]
    ds.DerivationDescription = derivation[:1024]
    item = Dataset()
    item.ReferencedSOPClassUID = source_class
    item.ReferencedSOPInstanceUID = source_uid
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _PURPOSE
    item.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.SourceImageSequence = Sequence([item])
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    if "Laterality" not in ds:  # type 2C: dciodvfy asks for it where the body part examined may be paired
        ds.Laterality = ""


def _set_pixels(ds, plane: np.ndarray, slope: float, intercept: float, signed: bool) -> None:
    """One slice's stored values as uncompressed 16-bit grey pixel data, with the rescale that reads them back."""
    from pydicom.uid import ExplicitVRLittleEndian

    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(plane.shape[0]), int(plane.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    if ds.get("Modality") == "CT" or slope != 1.0 or intercept != 0.0:  # (CT requires them)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        if "RescaleType" not in ds and ds.get("Modality") != "CT":
            ds.RescaleType = "US"
    else:
        for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if keyword in ds:
                delattr(ds, keyword)
    ds.PixelData = np.ascontiguousarray(plane).astype("<i2" if signed else "<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
