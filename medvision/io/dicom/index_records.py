"""The index row of one DICOM file, read from its header only: the columns the index stores (:data:`COLUMNS`),
what kind of object it is (:func:`classify`), why a header that parsed is still unusable
(:func:`incomplete_reason`), and stand-in keys for studies and series whose UIDs are empty.

:func:`header_records` is the work a scan hands to worker processes; :mod:`.index` stores its rows in SQLite.
"""

from __future__ import annotations

import hashlib
import warnings

from ..errors import NotDicomError
from .files import FoundFile, read_dataset

__all__ = ["COLUMNS", "classify", "header_record", "header_records", "incomplete_reason"]

#: the index's columns, in the order of the SQLite table
COLUMNS = (
    "path", "member", "size", "mtime_ns", "status", "error", "kind",
    "patient_name", "patient_id", "birth_date", "sex",
    "study_key", "study_uid", "study_date", "study_time", "study_description", "accession",
    "series_key", "series_uid", "series_number", "series_description", "modality", "body_part",
    "sop_class", "sop_uid", "instance_number", "rows", "columns", "frames", "transfer_syntax",
    "blank_uids",
)

# SOP class name fragments (pydicom's UID names) of objects that are not images to view.
_NON_IMAGE_SOP = (
    ("Segmentation Storage", "SEG"), ("RT Structure Set", "RTSTRUCT"), ("Key Object Selection", "KO"),
    ("Presentation State", "PR"), ("SR Storage", "SR"), ("Encapsulated PDF", "DOC"),
    ("Encapsulated CDA", "DOC"), ("Raw Data", "RAW"), ("RT Plan", "RTPLAN"), ("RT Ion Plan", "RTPLAN"),
    ("Spatial Registration", "REG"), ("Deformable Spatial Registration", "REG"),
    ("Spatial Fiducials", "FID"), ("RT Beams Treatment Record", "RTRECORD"), ("Waveform", "ECG"),
)
_NON_IMAGE_MODALITY = {"SR", "KO", "PR", "SEG", "RTSTRUCT", "RTPLAN", "REG", "DOC", "FID", "RTRECORD"}


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def _int(ds, keyword: str) -> int | None:
    """An integer the index can store (SQLite's 64 bits), or None."""
    try:
        value = ds.get(keyword)
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is None or -2**63 <= number < 2**63 else None


def classify(ds) -> str:
    """``"image"`` or what the object is (``"SEG"``, ``"RTSTRUCT"``, ``"SR"``, ``"KO"``, ``"PR"``...)."""
    sop = ds.get("SOPClassUID") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", None)
    name = getattr(sop, "name", "") if sop else ""
    for fragment, kind in _NON_IMAGE_SOP:
        if fragment in name:
            return kind
    modality = _text(ds, "Modality").upper()
    if modality in _NON_IMAGE_MODALITY:
        return modality
    if "Rows" in ds and "Columns" in ds:
        return "image"
    return "OTHER"


def header_record(found: FoundFile) -> dict:
    """The index row for one file: what a series browser shows, or the reason it is unreadable."""
    rec: dict = {c: None for c in COLUMNS}
    rec.update(path=found.ref.path, member=found.ref.member, size=found.size, mtime_ns=found.mtime_ns)
    try:
        ds = read_dataset(found.ref, headers_only=True)
    except NotDicomError as exc:
        rec.update(status="notdicom", error=str(exc))
        return rec
    except Exception as exc:  # noqa: BLE001 - a header we cannot parse must never stop a scan
        rec.update(status="error", error=f"{found.ref}: unreadable header ({_why(exc)})")
        return rec
    try:  # pydicom converts elements when they are read: a damaged one (unknown VR, bad length) raises here
        return _fill(rec, ds, found)
    except Exception as exc:  # noqa: BLE001 - one damaged file is reported and left out, never the folder
        rec.update({c: None for c in COLUMNS if c not in ("path", "member", "size", "mtime_ns")})
        rec.update(status="error", error=f"{found.ref}: damaged header ({_why(exc)})")
        return rec


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _fill(rec: dict, ds, found: FoundFile) -> dict:
    meta = getattr(ds, "file_meta", None)
    blank = 0
    study_uid = _text(ds, "StudyInstanceUID")
    series_uid = _text(ds, "SeriesInstanceUID")
    sop_uid = _text(ds, "SOPInstanceUID") or (str(getattr(meta, "MediaStorageSOPInstanceUID", "")) if meta else "")
    sop_class = str(ds.get("SOPClassUID") or (getattr(meta, "MediaStorageSOPClassUID", "") if meta else ""))
    problem = incomplete_reason(ds, sop_class)
    if problem:
        rec.update(status="error", error=f"{found.ref}: {problem}")
        return rec
    patient_id, patient_name = _text(ds, "PatientID"), _text(ds, "PatientName")
    study_key = study_uid
    if not study_uid:
        blank = 1
        study_key = "blank-study:" + _digest(patient_id, patient_name, _text(ds, "StudyDate"),
                                              _text(ds, "StudyTime"), _text(ds, "StudyID"))
    series_key = series_uid
    if not series_uid:
        blank = 1
        series_key = "blank-series:" + _digest(study_key, _text(ds, "Modality"), _text(ds, "SeriesNumber"),
                                                _text(ds, "SeriesDescription"), _text(ds, "FrameOfReferenceUID"))
    rec.update(
        status="ok", error=None, kind=classify(ds),
        patient_name=patient_name, patient_id=patient_id,
        birth_date=_text(ds, "PatientBirthDate"), sex=_text(ds, "PatientSex"),
        study_key=study_key, study_uid=study_uid, study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"), study_description=_text(ds, "StudyDescription"),
        accession=_text(ds, "AccessionNumber"),
        series_key=series_key, series_uid=series_uid, series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"), modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"), sop_class=sop_class, sop_uid=sop_uid,
        instance_number=_int(ds, "InstanceNumber"), rows=_int(ds, "Rows"), columns=_int(ds, "Columns"),
        frames=_int(ds, "NumberOfFrames") or (1 if "Rows" in ds else 0),
        transfer_syntax=str(getattr(meta, "TransferSyntaxUID", "")) if meta else "",
        blank_uids=blank,
    )
    return rec


def incomplete_reason(ds, sop_class: str) -> str | None:
    """Why a header that parsed is still not a usable DICOM object (damaged or truncated)."""
    if not sop_class:
        return "not a valid DICOM object: no SOP Class UID (damaged, or not DICOM)"
    from pydicom.uid import UID

    if "Image Storage" in (UID(sop_class).name or "") and ("Rows" not in ds or "Columns" not in ds):
        return "the header ends before the image attributes (truncated file)"
    return None


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def header_records(found: list[FoundFile]) -> list[dict]:
    # pydicom warns about every odd file it is shown (non-DICOM files in a scanned tree, bad VRs);
    # the index records what it could not read, so the warnings are noise on a terminal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [header_record(f) for f in found]
