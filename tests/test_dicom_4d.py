"""4D series on synthetic files with known truth: volume order as dcm2niix orders it, derived
diffusion images split off, Philips scaling, and the .bval/.bvec/.json sidecars."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medvision.io import load, load_all
from medvision.io.sidecars import fsl_gradients, write_sidecars

from .dicomgen import slice_values, write_series

DIRS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.6, 0.8, 0.0), (0.0, 0.6, 0.8)]


def _volume(k_count: int, t: int, rows: int = 24, cols: int = 20) -> np.ndarray:
    return np.stack([slice_values(k, rows, cols, t) for k in range(k_count)])


def test_canon_b0_without_b_value_stays_the_first_volume(tmp_path):
    # Toshiba/Canon leave DiffusionBValue out of the b=0 images: the order must not depend on it
    def extra(k, t):
        out = {"Manufacturer": "TOSHIBA"}
        if t > 0:
            out.update(DiffusionBValue=1000.0, DiffusionGradientOrientation=list(DIRS[t - 1]))
        return out

    write_series(tmp_path / "c", n=4, frames=4, modality="MR", slope=None, intercept=None, extra_per_slice=extra)
    v = load(tmp_path / "c")
    assert v.is_4d and v.n_frames == 4
    for t in range(4):
        np.testing.assert_array_equal(v.array[t], _volume(4, t), err_msg=f"volume {t}")
    assert v.metadata["frame_axis"] == "diffusion"
    assert v.metadata["frame_values"] == [0.0, 1000.0, 1000.0, 1000.0]


@pytest.mark.parametrize("numbering", ["volume-major", "position-major"])
def test_philips_volume_order_follows_instance_numbers_not_b_values(tmp_path, numbering):
    bvals = [0.0, 1000.0, 0.001, 1000.0]  # b=0.001 acquired between two diffusion directions
    n, frames = 3, 4

    def extra(k, t):
        out = {"Manufacturer": "Philips Medical Systems", "DiffusionBValue": bvals[t],
               "DiffusionGradientOrientation": list(DIRS[t]), "TemporalPositionIdentifier": 1}
        if numbering == "position-major":  # Philips classic: all volumes of slice 1, then slice 2 ...
            out["InstanceNumber"] = k * frames + t + 1
        return out

    write_series(tmp_path / "p", n=n, frames=frames, modality="MR", slope=None, intercept=None, extra_per_slice=extra)
    v = load(tmp_path / "p")
    for t in range(frames):
        np.testing.assert_array_equal(v.array[t], _volume(n, t), err_msg=f"volume {t}")
    assert [d["b"] for d in v.metadata["diffusion"]] == bvals


def test_philips_derived_trace_volume_is_split_into_its_own_stack(tmp_path):
    # b=0, two directions and the scanner's isotropic image (b=1000, zero gradient) in one series
    vectors = [DIRS[0], DIRS[0], (0.0, 0.0, 0.0), DIRS[1]]
    bvals = [0.0, 1000.0, 1000.0, 1000.0]

    def extra(k, t):
        return {"Manufacturer": "Philips", "DiffusionBValue": bvals[t],
                "DiffusionGradientOrientation": list(vectors[t])}

    write_series(tmp_path / "t", n=3, frames=4, modality="MR", slope=None, intercept=None, extra_per_slice=extra)
    stacks = load_all(tmp_path / "t")
    assert len(stacks) == 2
    acquired, trace = stacks
    assert acquired.n_frames == 3 and not trace.is_4d
    for out_t, t in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(acquired.array[out_t], _volume(3, t))
    np.testing.assert_array_equal(trace.array, _volume(3, 2))
    assert "trace/ADC" in trace.metadata["stack"]
    assert "trace/ADC" not in acquired.metadata.get("stack", "")
    assert [d["b"] for d in acquired.metadata["diffusion"]] == [0.0, 1000.0, 1000.0]


def test_adc_image_type_in_a_diffusion_series_is_split(tmp_path):
    def extra(k, t):
        kind = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"] if t < 2 else ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
        return {"Manufacturer": "SIEMENS", "ImageType": kind}

    write_series(tmp_path / "a", n=3, frames=3, modality="MR", slope=None, intercept=None, extra_per_slice=extra)
    stacks = load_all(tmp_path / "a")
    assert [s.n_frames for s in stacks] == [2, 1]
    np.testing.assert_array_equal(stacks[1].array, _volume(3, 2))


def _philips_series(folder, *, slope=1.51477411477411, scale=0.026934709399938583, intercept=0.0):
    def extra(k, t):
        return {"Manufacturer": "Philips"}

    paths = write_series(folder, n=3, modality="MR", slope=slope, intercept=intercept, extra_per_slice=extra)
    import pydicom

    for p in paths:  # the private scale slope in its Philips block, as the scanner writes it
        ds = pydicom.dcmread(p)
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0E, "FL", scale)
        ds.save_as(p)
    return paths


def test_philips_scaling_precise_by_default_and_display_on_request(tmp_path):
    _philips_series(tmp_path / "s")
    precise = load(tmp_path / "s")
    display = load(tmp_path / "s", philips_scaling="display")
    stored = np.stack([slice_values(k, 24, 20) for k in range(3)]).astype(np.float64)
    rs, ss = np.float32(1.51477411477411), np.float32(0.026934709399938583)
    slope32 = (np.float32(1) * rs) / (rs * ss) - np.float32(0)
    assert precise.dtype == display.dtype == np.float32
    # values as dcm2niix writes them: float32 slope/intercept, rounded once to float32
    np.testing.assert_array_equal(precise.array, (stored * float(slope32)).astype(np.float32))
    np.testing.assert_array_equal(display.array, (stored * float(rs)).astype(np.float32))
    np.testing.assert_allclose(precise.array, stored / 0.026934709399938583, rtol=1e-6)  # FP = SV / SS
    assert precise.metadata["philips_scaling"] == "precise"
    assert display.metadata["philips_scaling"] == "display"
    with pytest.raises(Exception, match="Philips scaling"):
        load(tmp_path / "s", philips_scaling="both")


def test_fsl_bvecs_are_in_the_voxel_frame(tmp_path):
    # a sagittal series: voxel axes are (posterior, inferior, left) in patient space
    def extra(k, t):
        out = {"Manufacturer": "SIEMENS"}
        if t:
            out.update(DiffusionBValue=800.0, DiffusionGradientOrientation=list(DIRS[t - 1]))
        else:
            out.update(DiffusionBValue=0.0)
        return out

    write_series(tmp_path / "g", n=3, frames=3, iop=(0, 1, 0, 0, 0, -1), modality="MR", slope=None,
                 intercept=None, extra_per_slice=extra)
    v = load(tmp_path / "g")
    bvals, vecs = fsl_gradients(v)
    assert bvals == [0.0, 800.0, 800.0]
    np.testing.assert_array_equal(vecs[:, 0], 0.0)
    directions = v.affine[:3, :3] / np.linalg.norm(v.affine[:3, :3], axis=0)
    for t in (1, 2):
        fsl = vecs[:, t].copy()
        if np.linalg.det(directions) > 0:
            fsl[0] = -fsl[0]  # FSL's radiological voxel convention
        np.testing.assert_allclose(directions @ fsl, DIRS[t - 1], atol=1e-12)
    written = write_sidecars(v, tmp_path / "out.nii.gz")
    assert sorted(p.name for p in written) == ["out.bval", "out.bvec", "out.json"]
    assert (tmp_path / "out.bval").read_text() == "0 800 800\n"
    rows = [[float(x) for x in line.split()] for line in (tmp_path / "out.bvec").read_text().splitlines()]
    np.testing.assert_allclose(np.array(rows), vecs, atol=1e-6)
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["Manufacturer"] == "SIEMENS" and sidecar["ConversionSoftware"] == "medvision"


def test_convert_writes_sidecars_and_honours_philips_scaling(tmp_path, capsys):
    from medvision.cli import main
    from medvision.io.volumes import read_volume

    _philips_series(tmp_path / "s")
    out = tmp_path / "out" / "p.nii.gz"
    assert main(["convert", str(tmp_path / "s"), "-o", str(out), "-q"]) == 0
    assert "Philips precise" in capsys.readouterr().out
    sidecar = json.loads((tmp_path / "out" / "p.json").read_text())
    assert sidecar["PhilipsScaling"] == "precise" and sidecar["Manufacturer"] == "Philips"
    assert not (tmp_path / "out" / "p.bval").exists()  # not a diffusion series
    precise = read_volume(out).array
    assert main(["convert", str(tmp_path / "s"), "-o", str(out), "-q", "--philips-scaling", "display"]) == 0
    display = read_volume(out).array
    np.testing.assert_allclose(precise, display / (1.51477411477411 * 0.026934709399938583), rtol=1e-5)
    assert json.loads((tmp_path / "out" / "p.json").read_text())["PhilipsScaling"] == "display"
