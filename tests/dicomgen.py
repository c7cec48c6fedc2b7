"""Write small synthetic DICOM series with known geometry and voxel values for tests."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid


def slice_values(k: int, rows: int, cols: int, t: int = 0) -> np.ndarray:
    """Stored values of slice k (and frame t): unique per slice so misordering is visible."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    return (xx + 2 * yy + 100 * k + 1000 * t).astype(np.uint16)


def make_dataset(
    pixels: np.ndarray, *, ipp=(0.0, 0.0, 0.0), iop=(1, 0, 0, 0, 1, 0), spacing=(0.8, 0.7),
    series_uid: str, study_uid: str, modality: str = "CT", instance: int = 1, slope: float | None = 1.0,
    intercept: float | None = -1024.0, extra: dict | None = None,
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Synthetic"
    ds.PatientID = "SYN001"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyDate = "20260101"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = "synthetic"
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
    if ipp is not None:
        ds.ImagePositionPatient = [float(v) for v in ipp]
    if iop is not None:
        ds.ImageOrientationPatient = [float(v) for v in iop]
    if spacing is not None:
        ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12 if pixels.dtype == np.uint16 else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write_series(
    folder: Path, n: int = 8, *, rows: int = 24, cols: int = 20, spacing=(0.8, 0.7), dz: float = 2.0,
    iop=(1, 0, 0, 0, 1, 0), origin=(-10.0, -20.0, 30.0), positions: list | None = None,
    frames: int = 1, shuffle: bool = True, modality: str = "CT", series_uid: str | None = None,
    study_uid: str | None = None, extra_per_slice=None, **kwargs,
) -> list[Path]:
    """A series of n slices (times ``frames`` time points); slice k holds slice_values(k)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    row, col = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row, col)
    if positions is None:
        positions = [np.array(origin) + k * dz * normal for k in range(n)]
    order = list(range(n * frames))
    if shuffle:
        random.Random(1).shuffle(order)
    paths = []
    for file_no, idx in enumerate(order):
        t, k = divmod(idx, n)
        extra = dict(extra_per_slice(k, t)) if extra_per_slice else {}
        if frames > 1:
            extra.setdefault("TemporalPositionIdentifier", t + 1)
        ds = make_dataset(slice_values(k, rows, cols, t), ipp=positions[k], iop=iop, spacing=spacing,
                          series_uid=series_uid, study_uid=study_uid, modality=modality,
                          instance=idx + 1, extra=extra, **kwargs)
        path = folder / f"img{file_no:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


#: DICOM ImageOrientationPatient and the orientation code of (column, row, slice) index axes for
#: the usual acquisition planes (sagittal: columns run posterior, rows inferior, slices to the left)
ACQUISITIONS = {
    "axial": ((1, 0, 0, 0, 1, 0), "LPS"),
    "coronal": ((1, 0, 0, 0, 0, -1), "LIP"),
    "sagittal": ((0, 1, 0, 0, 0, -1), "PIL"),
}


def write_volume_as_series(volume, folder: Path, plane: str = "sagittal", *, modality: str = "MR",
                           description: str | None = None) -> list[Path]:
    """Write a real volume as a DICOM series acquired in ``plane`` (one file per slice), keeping
    every voxel at its patient position: the same anatomy, acquired another way."""
    from pydicom.uid import generate_uid

    iop, code = ACQUISITIONS[plane]
    acquired = volume.reoriented(code)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    sx, sy, _sz = acquired.spacing
    array = acquired.array
    signed = array.dtype.kind == "i"
    stored = array.astype(np.int16 if signed else np.uint16)
    paths = []
    for k in range(array.shape[0]):
        ds = make_dataset(stored[k], ipp=acquired.index_to_world([0, 0, k]), iop=iop, spacing=(sy, sx),
                          series_uid=series_uid, study_uid=study_uid, modality=modality, instance=k + 1,
                          slope=None, intercept=None,
                          extra={"SeriesDescription": description or f"{plane} {modality}",
                                 "SliceThickness": float(_sz)})
        ds.BitsStored = 16
        ds.HighBit = 15
        path = folder / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
