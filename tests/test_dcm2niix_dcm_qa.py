"""Conformance with dcm2niix on its own QA collections (dcm_qa_*: Philips DWI, Canon DTI classic and
enhanced, Siemens decubitus, nine transfer syntaxes) and on dcm_qa_nih (GE and Siemens EPI):
same grid, identical voxels in every volume and volume order, b-values and b-vectors within
dcm2niix's printed precision, and the JSON sidecar's acquisition fields.

Each folder's ``Ref/`` holds dcm2niix's outputs; where it lacks the NIfTI, dcm2niix is run here
(into a temporary folder; skipped when it is not installed). Vectors, phase-encoding directions
and slice times are compared in patient space, since dcm2niix stores rows flipped (its ``-y``)
and medvision does not: the same data, written in a different voxel order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medvision.core import Volume
from medvision.io import load_all
from medvision.io.sidecars import bids_sidecar, fsl_gradients

from .test_dicom_conformance import MR_SERIES, assert_same_grid_and_voxels

pytestmark = pytest.mark.shared_data

#: series folder (under dicom/dcm_qa) -> name of dcm2niix's outputs in its Ref/ folder (None: run it)
DCM_QA = {
    "philips_dwi/In/cl": "701_DTI_Biobank_2mm_MB3S2_EPI_cl",
    "canon_dti_sag/In/cl": "10000_SAG_DTI_PA-COR_20d_cl",
    "canon_dti_sag/In/enh": "10000_SAG_DTI_PA-COR_20d_enh",
    "decubitus/In/HFDL/2_t1_fl2d_sag": None,
    "decubitus/In/HFDL/3_ep2d_diff_mddw_20_p2": None,
    "decubitus/In/HFS/3_t1_fl2d_sag": None,
    "decubitus/In/HFS/4_ep2d_diff_mddw_20_p2": None,
    **{f"transfer_syntaxes/In/{i}.dcm": str(i) for i in range(1, 10)},
}
B0_EPS = 1.2e-7


def _ref_dir(series: str, base: Path) -> Path:
    return base / series.split("/In/")[0] / "Ref"


def _run_dcm2niix(src: Path, out: Path, *extra: str) -> Path:
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix is not installed and Ref/ lacks this NIfTI")
    out.mkdir(parents=True, exist_ok=True)
    args = [exe, "-z", "n", "-b", "y", "-ba", "y", "-f", "ref", "-o", str(out), *extra]
    args += ["-s", "y", str(src)] if src.is_file() else [str(src)]
    subprocess.run(args, check=True, capture_output=True)
    images = [p for p in sorted(out.glob("ref*.nii")) if "_ADC" not in p.name]
    assert len(images) == 1, images
    return images[0]


def reference(series: str, base: Path, tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    """(dcm2niix's NIfTI, the stem of its .bval/.bvec/.json) for a dcm_qa series."""
    name = DCM_QA[series]
    ref_dir = _ref_dir(series, base)
    if name and not extra:
        for suffix in (".nii", ".nii.gz"):
            if (ref_dir / f"{name}{suffix}").exists():
                return ref_dir / f"{name}{suffix}", ref_dir / name
    image = _run_dcm2niix(base / series, tmp_path / "dcm2niix", *extra)
    stem = ref_dir / name if name and (ref_dir / f"{name}.json").exists() and not extra else image.with_suffix("")
    return image, stem


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _axes(affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)


def world_bvecs(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL b-vectors (3 x N, voxel frame) -> patient LPS directions, undoing FSL's x flip."""
    axes = _axes(affine)
    v = np.array(bvecs, dtype=np.float64)
    if np.linalg.det(axes) > 0:
        v[0] = -v[0]
    return axes @ v


def world_phase(direction: str, affine: np.ndarray) -> np.ndarray:
    axis = "ijk".index(direction[0])
    return _axes(affine)[:, axis] * (-1.0 if direction.endswith("-") else 1.0)


def timing_by_position(times: list[float], affine: np.ndarray, normal: np.ndarray) -> list[tuple[float, float]]:
    positions = [float((affine[:3, 3] + k * affine[:3, 2]) @ normal) for k in range(len(times))]
    return sorted(zip(np.round(positions, 2), times, strict=True))


def compare_sidecars(ours: Volume, ref_image: Volume, stem: Path, timing_atol: float = 5e-5) -> list[str]:
    """Check our JSON fields (and .bval/.bvec) against dcm2niix's; returns the fields compared."""
    compared = []
    mine = bids_sidecar(ours)
    theirs = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").exists() else {}
    if theirs:
        for key in ("RepetitionTime", "EchoTime", "FlipAngle", "MagneticFieldStrength"):
            if key in theirs:
                assert key in mine, key
                assert mine[key] == pytest.approx(theirs[key], rel=1e-5), key
                compared.append(key)
        for key in ("ManufacturersModelName", "SeriesDescription"):
            if key in theirs:
                assert mine.get(key) == theirs[key], key
                compared.append(key)
        assert theirs["Manufacturer"].lower() in mine["Manufacturer"].lower()
        if "PhaseEncodingDirection" in theirs and "PhaseEncodingDirection" in mine:
            np.testing.assert_allclose(world_phase(mine["PhaseEncodingDirection"], ours.affine),
                                       world_phase(theirs["PhaseEncodingDirection"], ref_image.affine), atol=1e-4)
            compared.append("PhaseEncodingDirection")
        elif "PhaseEncodingDirection" in theirs or "PhaseEncodingAxis" in theirs:
            # polarity not in the header's public/CSA fields we read: the axis must still agree
            key = "PhaseEncodingDirection" if "PhaseEncodingDirection" in theirs else "PhaseEncodingAxis"
            assert "PhaseEncodingAxis" in mine
            a = world_phase(mine["PhaseEncodingAxis"], ours.affine)
            b = world_phase(theirs[key], ref_image.affine)
            assert abs(abs(float(a @ b)) - 1.0) < 1e-4
            compared.append("PhaseEncodingAxis")
        if "SliceTiming" in theirs and "SliceTiming" in mine:
            normal = _unit(ours.affine[:3, 2])
            a = timing_by_position(mine["SliceTiming"], ours.affine, normal)
            b = timing_by_position(theirs["SliceTiming"], ref_image.affine, normal)
            assert [p for p, _ in a] == [p for p, _ in b]
            np.testing.assert_allclose([t for _, t in a], [t for _, t in b], atol=timing_atol)
            compared.append("SliceTiming")
    bval = stem.with_suffix(".bval")
    if bval.exists():
        grads = fsl_gradients(ours)
        assert grads is not None, "a diffusion series without b-values"
        bvals, vecs = grads
        ref_b = np.loadtxt(bval, ndmin=1)
        np.testing.assert_allclose(bvals, ref_b, rtol=1e-5)  # dcm2niix prints %g: 6 digits
        ref_v = np.loadtxt(stem.with_suffix(".bvec"), ndmin=2)
        weighted = np.array(bvals) > B0_EPS
        np.testing.assert_allclose(world_bvecs(vecs, ours.affine)[:, weighted],
                                   world_bvecs(ref_v, ref_image.affine)[:, weighted], atol=2e-6)
        np.testing.assert_array_equal(vecs[:, ~weighted], 0.0)
        compared += ["bval", "bvec"]
    return compared


@pytest.mark.parametrize("series", sorted(DCM_QA))
def test_dcm_qa_series_match_dcm2niix(shared_data, tmp_path, series):
    base = shared_data / "dicom" / "dcm_qa"
    ref_path, stem = reference(series, base, tmp_path)
    stacks = load_all(base / series)
    ours = stacks[0]
    # non-image objects beside the images (Philips XX_* series data) are skipped, as by dcm2niix
    assert not any("left out" in w for w in ours.metadata["warnings"]), ours.metadata["warnings"]
    ref_image = Volume.from_sitk(sitk.ReadImage(str(ref_path)))
    assert ours.n_frames == ref_image.n_frames
    assert_same_grid_and_voxels(ours, ref_image)  # every volume, in dcm2niix's order
    assert not any("stack" in s.metadata for s in stacks[1:] if "trace" not in s.metadata.get("stack", ""))
    compared = compare_sidecars(ours, ref_image, stem)
    if ours.is_4d and "diffusion" in ours.metadata:
        assert {"bval", "bvec"} <= set(compared)
    assert {"RepetitionTime", "EchoTime"} <= set(compared) or not stem.with_suffix(".json").exists()


@pytest.mark.slow
def test_philips_display_scaling_matches_dcm2niix_p_n(shared_data, tmp_path):
    base = shared_data / "dicom" / "dcm_qa"
    series = "philips_dwi/In/cl"
    ref_path, _stem = reference(series, base, tmp_path, "-p", "n")
    ours = load_all(base / series, philips_scaling="display")[0]
    assert ours.metadata["philips_scaling"] == "display"
    assert_same_grid_and_voxels(ours, Volume.from_sitk(sitk.ReadImage(str(ref_path))))
    precise = load_all(base / series)[0]
    assert precise.metadata["philips_scaling"] == "precise"
    ratio = precise.array[ours.array > 100] / ours.array[ours.array > 100]
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-3)  # FP = DV / (RS * SS): one factor for the series


@pytest.mark.parametrize("series,ref", sorted(MR_SERIES.items()))
def test_mr_epi_sidecars_match_dcm2niix(shared_data, tmp_path, series, ref):
    base = shared_data / "dicom" / "mr_epi_ge_siemens"
    ours = load_all(base / series)[0]
    ref_image = Volume.from_sitk(sitk.ReadImage(str(base / "Ref" / f"{ref}.nii")))
    # Siemens writes each mosaic's slice times in 2.5 ms steps that jitter from volume to volume;
    # the Ref/ was made by a newer dcm2niix that reports another volume's times for some series
    compared = compare_sidecars(ours, ref_image, base / "Ref" / ref, timing_atol=2.6e-3)
    assert {"RepetitionTime", "EchoTime", "FlipAngle", "MagneticFieldStrength"} <= set(compared)
    if "Si" in series:  # Siemens mosaics: slice times and phase-encoding polarity are in the CSA header
        assert {"SliceTiming", "PhaseEncodingDirection"} <= set(compared)
        if shutil.which("dcm2niix"):  # the installed dcm2niix's choice of volume: exactly equal
            image = _run_dcm2niix(base / series, tmp_path / "dcm2niix")
            theirs = Volume.from_sitk(sitk.ReadImage(str(image)))
            assert "SliceTiming" in compare_sidecars(ours, theirs, image.with_suffix(""))
