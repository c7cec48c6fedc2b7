"""Vendor diffusion rules checked against the installed dcm2niix on crafted series: GE private
b-values and logical-frame gradients, Toshiba/Canon ImageComments vectors, United Imaging private
tags, Siemens CSA and public tags. For each: the same volumes in the same order, the same b-values,
and the same gradient directions in patient space (dcm2niix stores rows flipped, so its b-vectors
are compared after mapping both to patient coordinates)."""

from __future__ import annotations

import numpy as np
import pytest

from medvision.io import load_all
from medvision.io.sidecars import fsl_gradients

from .dwigen import (
    PLANES,
    canon_comment_elements,
    dcm2niix_gradients,
    ge_elements,
    read_nifti,
    run_dcm2niix,
    siemens_elements,
    uih_elements,
    write_dwi,
    write_siemens_mosaic,
)
from .test_dcm2niix_dcm_qa import world_bvecs
from .test_dicom_conformance import assert_same_grid_and_voxels

B0 = 1.2e-7


def assert_matches_dcm2niix(folder, tmp_path) -> tuple[list[float], np.ndarray]:
    """Our first stack against dcm2niix's image: voxels of every volume, order, bval, bvec."""
    images = [p for p in run_dcm2niix(folder, tmp_path / "dcm2niix") if "_ADC" not in p.name]
    assert len(images) == 1, images
    theirs = read_nifti(images[0])
    ours = load_all(folder)[0]
    assert ours.n_frames == theirs.n_frames
    assert_same_grid_and_voxels(ours, theirs)
    ref = dcm2niix_gradients(images[0])
    assert ref is not None, "dcm2niix wrote no .bval/.bvec"
    grads = fsl_gradients(ours)
    assert grads is not None, "medvision found no diffusion gradients"
    bvals, vecs = grads
    np.testing.assert_allclose(bvals, ref[0], rtol=1e-5, atol=1e-6)
    weighted = np.array(bvals) > B0
    np.testing.assert_allclose(world_bvecs(vecs, ours.affine)[:, weighted],
                               world_bvecs(ref[1], theirs.affine)[:, weighted], atol=2e-6)
    np.testing.assert_array_equal(vecs[:, ~weighted], 0.0)
    np.testing.assert_array_equal(ref[1][:, ~weighted], 0.0)
    return bvals, world_bvecs(vecs, ours.affine)


GE_BVALS = [0, 1000, 1000, 1000, 1000, 1000, 1000]
GE_VECTORS = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0.6, 0.8, 0), (0.5, 0.0, 0.0),  # |g|=0.5: b*0.25
              (0.0, 0.0, 0.0)]  # GE's isotropic image: b>0, no direction


@pytest.mark.parametrize("pe", ["COL", "ROW"])
@pytest.mark.parametrize("plane", sorted(PLANES))
def test_ge_diffusion_matches_dcm2niix(tmp_path, plane, pe):
    folder = tmp_path / "ge"
    write_dwi(folder, GE_BVALS, GE_VECTORS, manufacturer="GE MEDICAL SYSTEMS", iop=PLANES[plane],
              header={"InPlanePhaseEncodingDirection": pe}, private=ge_elements(GE_BVALS, GE_VECTORS))
    bvals, world = assert_matches_dcm2niix(folder, tmp_path)
    assert bvals == [0, 1000, 1000, 1000, 1000, 250, 0]  # 10^9 flag removed, |g|^2 scaling, trace b=0
    assert np.allclose(np.linalg.norm(world[:, 1:6], axis=0), 1.0)


def test_ge_descending_slices_and_plain_b_values(tmp_path):
    folder = tmp_path / "ge"
    vectors = [(0, 0, 0), (0.0, 0.6, 0.8), (1, 0, 0), (0, 0, 1)]
    bvals = [0, 750, 1500, 3000]
    write_dwi(folder, bvals, vectors, manufacturer="GE MEDICAL SYSTEMS", dz=-2.0,
              private=ge_elements(bvals, vectors, offset=False))
    got, _world = assert_matches_dcm2niix(folder, tmp_path)
    assert got == bvals


SIEMENS_BVALS = [0, 1000, 1000, 2000]
SIEMENS_VECTORS = [(0, 0, 0), (0.86243188, -0.36244097, 0.35333803), (0.0, 0.6, -0.8), (-1.0, 0.0, 0.0)]


@pytest.mark.parametrize("plane", ["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("where", ["csa", "private", "public"])
def test_siemens_single_slice_files_match_dcm2niix(tmp_path, where, plane):
    folder = tmp_path / "si"
    write_dwi(folder, SIEMENS_BVALS, SIEMENS_VECTORS, manufacturer="SIEMENS", iop=PLANES[plane],
              private=siemens_elements(SIEMENS_BVALS, SIEMENS_VECTORS, where=where))
    bvals, world = assert_matches_dcm2niix(folder, tmp_path)
    assert bvals == SIEMENS_BVALS
    np.testing.assert_allclose(world[:, 1:].T, SIEMENS_VECTORS[1:], atol=1e-6)  # Siemens: patient frame


@pytest.mark.parametrize("with_private", [False, True])
@pytest.mark.parametrize("plane", ["axial", "oblique"])
def test_siemens_mosaic_csa_matches_dcm2niix(tmp_path, plane, with_private):
    folder = tmp_path / "mosaic"
    write_siemens_mosaic(folder, SIEMENS_BVALS, SIEMENS_VECTORS, iop=PLANES[plane], with_private=with_private)
    bvals, world = assert_matches_dcm2niix(folder, tmp_path)
    assert bvals == SIEMENS_BVALS
    np.testing.assert_allclose(world[:, 1:].T, SIEMENS_VECTORS[1:], atol=1e-6)


CANON_BVALS = [0, 1000, 1000, 1000, 1500]
CANON_VECTORS = [(0, 0, 0), (0.140, 0.134, -0.981), (1.0, 0.0, 0.0), (0.0, 0.6, 0.8), (-0.6, 0.0, 0.8)]


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("plane", sorted(PLANES))
def test_canon_image_comments_vectors_match_dcm2niix(tmp_path, plane, public):
    folder = tmp_path / "canon"
    write_dwi(folder, CANON_BVALS, CANON_VECTORS, manufacturer="CANON_MEC", iop=PLANES[plane],
              private=canon_comment_elements(CANON_BVALS, CANON_VECTORS,
                                             public_vector=(0.0, 0.0, 1.0) if public else None))
    bvals, world = assert_matches_dcm2niix(folder, tmp_path)  # the comment wins over (0018,9089)
    assert bvals == CANON_BVALS
    np.testing.assert_allclose(np.linalg.norm(world[:, 1:], axis=0), 1.0, atol=1e-4)  # 3 decimals, as written


@pytest.mark.parametrize("order", ["LINEAR", "REVERSE_LINEAR", None])
@pytest.mark.parametrize("pe", ["COL", "ROW"])
@pytest.mark.parametrize("plane", ["axial", "sagittal"])
def test_ge_phase_encoding_polarity_matches_dcm2niix(tmp_path, plane, pe, order):
    import json

    from medvision.io.sidecars import bids_sidecar

    from .test_dcm2niix_dcm_qa import world_phase

    header = {"InPlanePhaseEncodingDirection": pe}
    if order:
        header["RectilinearPhaseEncodeReordering"] = order  # GE Rx27 and later
    folder = tmp_path / "ge"
    write_dwi(folder, [0, 1000], [(0, 0, 0), (1, 0, 0)], manufacturer="GE MEDICAL SYSTEMS", iop=PLANES[plane],
              header=header, private=ge_elements([0, 1000], [(0, 0, 0), (1, 0, 0)]))
    image = run_dcm2niix(folder, tmp_path / "dcm2niix")[0]
    theirs = json.loads(image.with_suffix(".json").read_text())
    ours = load_all(folder)[0]
    mine = bids_sidecar(ours)
    if order is None:  # polarity unknown from public tags: only the axis, never a guess
        assert "PhaseEncodingDirection" not in mine and mine["PhaseEncodingAxis"] == ("j" if pe == "COL" else "i")
        return
    np.testing.assert_allclose(world_phase(mine["PhaseEncodingDirection"], ours.affine),
                               world_phase(theirs["PhaseEncodingDirection"], read_nifti(image).affine), atol=1e-6)


@pytest.mark.parametrize("plane", sorted(PLANES))
def test_uih_private_diffusion_matches_dcm2niix(tmp_path, plane):
    folder = tmp_path / "uih"
    bvals = [0, 1000, 1000, 1000, 2000]
    vectors = [(0, 0, 0), (1, 0, 0), (0, 0.6, 0.8), (0.6, 0.8, 0), (0.0, 0.0, -1.0)]
    write_dwi(folder, bvals, vectors, manufacturer="UIH", iop=PLANES[plane], private=uih_elements(bvals, vectors))
    got, world = assert_matches_dcm2niix(folder, tmp_path)
    assert got == bvals
    row, col = np.array(PLANES[plane][:3], float), np.array(PLANES[plane][3:], float)
    frame = np.stack([row, col, np.cross(row, col)], axis=1)
    np.testing.assert_allclose(world[:, 1:].T, (frame @ np.array(vectors[1:]).T).T, atol=1e-6)  # image frame


def test_ge_directions_unknown_in_patient_space_write_no_bvec(tmp_path, capsys):
    """GE's gradients are turned into patient space only for a head-first supine patient (as dcm2niix);
    feet first, the directions are unknown: no .bvec (zero vectors would read as b=0 volumes), the
    .bval and the reason written, the image as it is."""
    from medvision.cli import main

    folder = tmp_path / "ge"
    bvals, vectors = [0, 1000, 1000], [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    write_dwi(folder, bvals, vectors, manufacturer="GE MEDICAL SYSTEMS", header={"PatientPosition": "FFS"},
              private=ge_elements(bvals, vectors))
    out = tmp_path / "dwi.nii.gz"
    assert main(["convert", str(folder), "-o", str(out), "-q"]) == 0
    assert (tmp_path / "dwi.bval").read_text().split() == ["0", "1000", "1000"]
    assert not (tmp_path / "dwi.bvec").exists()
    assert "dwi.bvec not written: the gradient direction of 2 diffusion-weighted volumes" in capsys.readouterr().err
    assert read_nifti(out).n_frames == 3
