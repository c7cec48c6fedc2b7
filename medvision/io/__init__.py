"""Files and the network -> core objects and back. No Qt, no torch."""

from .api import load, load_all, load_job, save
from .dicom import DicomIndex, ScanResult, SeriesInfo, scan
from .errors import (
    MedvisionIOError,
    MultipleSeriesError,
    NoImagesError,
    NotDicomError,
    PixelDataError,
    UnsupportedDataError,
)
from .routing import choose_series, plan_open

__all__ = [
    "DicomIndex", "MedvisionIOError", "MultipleSeriesError", "NoImagesError", "NotDicomError",
    "PixelDataError", "ScanResult", "SeriesInfo", "UnsupportedDataError", "choose_series", "load",
    "load_all", "load_job", "plan_open", "save", "scan",
]
