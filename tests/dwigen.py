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
