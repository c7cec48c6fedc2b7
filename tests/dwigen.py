"""Small synthetic diffusion series as the vendors write them (their Manufacturer text, private
creators and private elements), for checking medvision against the installed dcm2niix."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medvision.core import Volume

from .dicomgen import write_series

PLANES = {  # ImageOrientationPatient of the usual planes and an oblique one
    "axial": (1, 0, 0, 0, 1, 0),
    "coronal": (1, 0, 0, 0, 0, -1),
    "sagittal": (0, 1, 0, 0, 0, -1),
    "oblique": (1, 0, 0, 0, 0.8, -0.6),
}


def write_dwi(folder: Path, bvals: list, vectors: list, *, manufacturer: str, n: int = 3, iop=PLANES["axial"],
              dz: float = 2.0, public=None, private=None, header=None) -> list[Path]:
    """A classic (one file per slice) diffusion series of ``len(bvals)`` volumes of 8x8x``n``.

    ``public(t, ds)`` / ``private(t, ds)`` add volume t's diffusion elements to each file;
    ``header`` adds series-wide attributes."""
    def extra(k, t):
        out = {"Manufacturer": manufacturer, "PatientPosition": "HFS", "InPlanePhaseEncodingDirection": "COL",
               "ScanningSequence": "EP", "SequenceVariant": "NONE", "MRAcquisitionType": "2D",
               "EchoTime": 80.0, "RepetitionTime": 5000.0, "MagneticFieldStrength": 3.0, "FlipAngle": 90.0}
        out.update(header or {})
        return out

    paths = write_series(folder, n=n, frames=len(bvals), rows=8, cols=8, iop=iop, dz=dz, modality="MR",
                         slope=None, intercept=None, extra_per_slice=extra)
    for p in paths:
        ds = pydicom.dcmread(p)
        t = int(ds.TemporalPositionIdentifier) - 1
        del ds.TemporalPositionIdentifier  # vendors' classic DWI: volume order from instance numbers
        if public:
            public(t, ds)
        if private:
            private(t, ds)
        ds.save_as(p)
    return paths


def ge_elements(bvals: list, vectors: list, *, offset: bool = True):
    """GE: b in (0043,1039) (with GE's 10^9 flag), gradient in (0019,10BB..BD) in GE's logical frame."""
    def add(t, ds):
        acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        acq.add_new(0x9C, "LO", "epi2")
        acq.add_new(0x9E, "LO", "EPI2")
        for off, v in zip((0xBB, 0xBC, 0xBD), vectors[t], strict=True):
            acq.add_new(off, "DS", f"{v:.6f}")
        parm = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        b = int(bvals[t]) + (1_000_000_000 if offset else 0)
        parm.add_new(0x39, "IS", [str(b), "8", "0", "0"])
    return add


def run_dcm2niix(src: Path, out: Path) -> list[Path]:
    """Run the installed dcm2niix on a folder; its NIfTI files (skips the test when it is absent)."""
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix is not installed")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-z", "n", "-b", "y", "-ba", "y", "-f", "ref", "-o", str(out), str(src)],
                   check=True, capture_output=True)
    return sorted(out.glob("ref*.nii"))


def read_nifti(path: Path) -> Volume:
    return Volume.from_sitk(sitk.ReadImage(str(path)))


def dcm2niix_gradients(image: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """dcm2niix's (b-values, 3 x N b-vectors) beside ``image``, or None when it wrote none."""
    stem = image.with_suffix("")
    if not stem.with_suffix(".bval").exists():
        return None
    return (np.loadtxt(stem.with_suffix(".bval"), ndmin=1),
            np.loadtxt(stem.with_suffix(".bvec"), ndmin=2))


def csa_header(fields: dict[str, list[str]]) -> bytes:
    """A Siemens CSA2 ('SV10') header holding ``fields`` (name -> values as text)."""
    import struct

    out = bytearray(b"SV10\x04\x03\x02\x01" + struct.pack("<II", len(fields), 77))
    for name, values in fields.items():
        out += name.encode("latin-1").ljust(64, b"\0")
        out += struct.pack("<i4siii", len(values), b"DS\0\0", 3, len(values), 77)
        for value in values:
            data = value.encode("latin-1") + b"\0"
            out += struct.pack("<4i", len(data), len(data), 77, len(data))
            out += data.ljust((len(data) + 3) // 4 * 4, b"\0")
    return bytes(out)


def siemens_elements(bvals: list, vectors: list, *, where: str):
    """Siemens diffusion elements of volume t: in the CSA image header ('csa', older VB/VD), the
    SIEMENS MR HEADER private group ('private') or the public (0018,9087)/(0018,9089) ('public')."""
    def add(t, ds):
        b, g = bvals[t], vectors[t]
        if where == "csa":
            fields = {"B_value": [f"{b:g}"]}
            if b > 0:
                fields["DiffusionGradientDirection"] = [f"{v:.8f}" for v in g]
            block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
            block.add_new(0x10, "OB", csa_header(fields))
        elif where == "private":
            block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            block.add_new(0x0C, "IS", str(int(b)))
            if b > 0:
                block.add_new(0x0E, "FD", [float(v) for v in g])
        else:
            ds.DiffusionBValue = float(b)
            if b > 0:
                ds.DiffusionGradientOrientation = [float(v) for v in g]
    return add


def write_siemens_mosaic(folder: Path, bvals: list, vectors: list, *, n: int = 4, iop=PLANES["axial"],
                         with_private: bool = False) -> list[Path]:
    """A Siemens mosaic diffusion series: one file per volume, ``n`` 8x8 slices tiled in it, the
    diffusion values in the CSA image header (and the SIEMENS MR HEADER group when asked)."""
    import math

    from pydicom.uid import generate_uid

    from .dicomgen import make_dataset

    folder.mkdir(parents=True, exist_ok=True)
    grid = math.ceil(math.sqrt(n))
    tile, spacing, dz = 8, (2.0, 2.0), 3.0
    row, col = np.array(iop[:3], float), np.array(iop[3:], float)
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    first = np.array([-10.0, -20.0, 30.0])
    # the header's position is that of a whole-mosaic image centred like the first tile
    ipp = first - row * spacing[1] * (grid - 1) * tile / 2 - col * spacing[0] * (grid - 1) * tile / 2
    series, study = generate_uid(), generate_uid()
    paths = []
    for t, (b, g) in enumerate(zip(bvals, vectors, strict=True)):
        image = np.zeros((grid * tile, grid * tile), np.uint16)
        for k in range(n):
            r, c = divmod(k, grid)
            yy, xx = np.mgrid[0:tile, 0:tile]
            image[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = xx + 2 * yy + 100 * k + 1000 * t + 1
        ds = make_dataset(image, ipp=ipp, iop=iop, spacing=spacing, series_uid=series, study_uid=study,
                          modality="MR", instance=t + 1, slope=None, intercept=None,
                          extra={"Manufacturer": "SIEMENS", "PatientPosition": "HFS",
                                 "ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"],
                                 "InPlanePhaseEncodingDirection": "COL", "SpacingBetweenSlices": dz,
                                 "SliceThickness": dz, "EchoTime": 80.0, "RepetitionTime": 5000.0,
                                 "AcquisitionMatrix": [0, tile, tile, 0]})
        fields = {"NumberOfImagesInMosaic": [str(n)], "SliceNormalVector": [f"{v:.8f}" for v in normal],
                  "B_value": [f"{b:g}"]}
        if b > 0:
            fields["DiffusionGradientDirection"] = [f"{v:.8f}" for v in g]
        ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(0x10, "OB", csa_header(fields))
        if with_private:
            block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            block.add_new(0x0A, "US", n)
            block.add_new(0x0C, "IS", str(int(b)))
            if b > 0:
                block.add_new(0x0E, "FD", [float(v) for v in g])
        path = folder / f"mosaic{t:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def canon_comment_elements(bvals: list, vectors: list, *, public_vector=None):
    """Older Toshiba/Canon: b in (0018,9087) only for b>0 images, the gradient in Image Comments
    (``b=1000(0.140,0.134,-0.981)``); ``public_vector`` also writes a (0018,9089)."""
    def add(t, ds):
        if bvals[t] > 0:
            ds.DiffusionBValue = float(bvals[t])
            ds.ImageComments = "b={}({:.3f},{:.3f},{:.3f})".format(int(bvals[t]), *vectors[t])
            if public_vector is not None:
                ds.DiffusionGradientOrientation = [float(v) for v in public_vector]
    return add


def uih_elements(bvals: list, vectors: list):
    """United Imaging: b in (0065,1009) FD, gradient in (0065,1037) FD (image frame)."""
    def add(t, ds):
        block = ds.private_block(0x0065, "Image Private Header", create=True)
        block.add_new(0x09, "FD", float(bvals[t]))
        block.add_new(0x37, "FD", [float(v) for v in vectors[t]])
    return add
