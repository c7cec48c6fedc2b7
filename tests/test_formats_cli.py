"""NIfTI/NRRD/MHA through SimpleITK, atomic saves, and the `medvision` command."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from medvision.cli import main
from medvision.core import Volume, affine_from_geometry
from medvision.io import MedvisionIOError, UnsupportedDataError, load, save

from .conftest import SAMPLE_CT


def _oblique_volume(four_d=False):
    a = np.radians(30)
    d = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    shape = (2, 5, 6, 7) if four_d else (5, 6, 7)
    arr = np.arange(np.prod(shape), dtype=np.int16).reshape(shape) - 50
    return Volume(arr, affine_from_geometry((0.6, 0.8, 2.5), (-3, 4, 5), d), metadata={"frame_interval": 2.0})


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
@pytest.mark.parametrize("four_d", [False, True])
def test_volume_formats_round_trip(tmp_path, suffix, four_d):
    if four_d and suffix in (".nrrd",):
        pytest.skip("ITK's NRRD writer handles 4D scalar images as vectors")
    v = _oblique_volume(four_d)
    path = save(v, tmp_path / f"vol{suffix}")
    back = load(path)
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, v.array)
    np.testing.assert_allclose(back.affine, v.affine, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_nifti_ras_is_converted_to_lps_at_the_file_edge(tmp_path):
    # a grid whose index axes point Right, Anterior, Superior (RAS), written as NIfTI
    arr = np.zeros((4, 3, 2), np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # ITK (LPS) direction of a RAS-aligned grid
    sitk.WriteImage(img, str(tmp_path / "ras.nii"))
    import struct

    header = (tmp_path / "ras.nii").read_bytes()[:348]
    srow_x = struct.unpack_from("<4f", header, 280)
    assert srow_x[0] == pytest.approx(1.0)  # NIfTI stores it in RAS: +1 along R
    v = load(tmp_path / "ras.nii")
    assert v.orientation == "RAS"
    np.testing.assert_allclose(v.direction, np.diag([-1, -1, 1]))


def test_save_refuses_unknown_formats_and_keeps_existing_files(tmp_path):
    v = _oblique_volume()
    with pytest.raises(UnsupportedDataError, match=".png"):
        save(v, tmp_path / "x.png")
    target = tmp_path / "keep.nii.gz"
    target.write_bytes(b"old")
    sheared = Volume(v.array, np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float))
    with pytest.raises(MedvisionIOError, match="sheared"):
        save(sheared, target)
    assert target.read_bytes() == b"old"


def test_unreadable_volume_file_names_it(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(MedvisionIOError, match="bad.nii.gz"):
        load(bad)


def test_cli_info_table_and_json(capsys):
    assert main(["info", str(SAMPLE_CT), "-q"]) == 0
    out = capsys.readouterr().out
    assert "Anonymous^CT" in out and "CT Body 3.0" in out and "20 files" in out
    assert main(["info", str(SAMPLE_CT), "--json", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    series = data["patients"][0]["studies"][0]["series"][0]
    assert series["instances"] == 20 and series["modality"] == "CT" and series["body_part"] == "PARTIALBODY"


def test_cli_convert_dicom_to_nifti_and_back(tmp_path, capsys):
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(SAMPLE_CT), "-o", str(out), "-q"]) == 0
    assert "wrote" in capsys.readouterr().out
    a, b = load(SAMPLE_CT), load(out)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    nrrd = tmp_path / "ct.nrrd"
    assert main(["convert", str(out), "-o", str(nrrd), "-q"]) == 0
    np.testing.assert_array_equal(load(nrrd).array, a.array)


def test_cli_convert_4d_series_writes_a_4d_nifti(shared_data, tmp_path):
    src = shared_data / "dicom" / "mr_epi_ge_siemens" / "In" / "20180918GE" / "mr_0004"
    out = tmp_path / "epi.nii.gz"
    assert main(["convert", str(src), "-o", str(out), "-q"]) == 0
    img = sitk.ReadImage(str(out))
    assert img.GetDimension() == 4 and img.GetSize() == (64, 64, 15, 10)


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["convert", str(tmp_path / "empty"), "-o", str(tmp_path / "x.nii.gz"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medvision: ") and "Traceback" not in err
    assert main(["info", str(tmp_path / "missing"), "-q"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_entry_point_runs_as_a_program(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "medvision.cli", "info", str(SAMPLE_CT), "-q"],
                          capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "CT Body 3.0" in proc.stdout
