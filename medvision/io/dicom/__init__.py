"""DICOM: scanning and indexing headers, assembling series into volumes, decoding pixel data."""

from .files import FileRef, iter_source, read_dataset
from .index import DicomIndex, PatientInfo, ScanResult, SeriesInfo, StudyInfo, scan
from .series import load_series_job

__all__ = [
    "DicomIndex", "FileRef", "PatientInfo", "ScanResult", "SeriesInfo", "StudyInfo",
    "iter_source", "load_series_job", "read_dataset", "scan",
]
