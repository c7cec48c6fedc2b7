"""Label files: NIfTI/NRRD + JSON table, ITK-SNAP label descriptions, placing labels onto an image's
grid, DICOM SEG written by medvision (validated by dciodvfy, re-read voxel-identical) and by
other tools, and the `medvision convert` commands for labels."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medvision.core.labels import LabelMap
from medvision.core.terminology import lookup
from medvision.core.volume import Volume
from medvision.io import load, save
from medvision.io.errors import MedvisionIOError, UnsupportedDataError
from medvision.io.labels import load_labels, read_itksnap_labels, save_labels, table_path_for
from medvision.io.seg import is_seg, read_seg, write_seg

from .cliutil import run_cli
from .conftest import SAMPLE_CT, SAMPLE_LABELS


@pytest.fixture(scope="module")
def ct():
    return load(SAMPLE_CT)


@pytest.fixture(scope="module")
def totalseg(ct):
    return load_labels(SAMPLE_LABELS, reference=ct)


def test_sample_labels_are_placed_on_the_ct_grid_exactly(ct, totalseg):
    assert totalseg.placement == "reoriented" and totalseg.on_grid_of(ct)
    assert len(totalseg.present_values()) == 31 and max(totalseg.present_values()) == 117
    liver = totalseg.array == 5
    assert 60 < ct.array[liver].mean() < 120  # on the liver, in HU: the flip was undone


def test_nifti_and_json_round_trip(tmp_path, totalseg):
    lm = totalseg.copy()
    lm.table[5].name = "liver"
    lm.table[5].locked = True
    lm.table[1].visible = False
    path = save_labels(lm, tmp_path / "case.nii.gz")
    assert table_path_for(path).name == "case.labels.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.labels.json", "case.nii.gz"]  # no temp files
    back = load_labels(path)
    assert np.array_equal(back.array, lm.array) and np.allclose(back.affine, lm.affine)
    assert back.table[5].name == "liver" and back.table[5].locked and not back.table[1].visible
    nrrd = save_labels(lm, tmp_path / "case.seg.nrrd")
    assert np.array_equal(load_labels(nrrd).array, lm.array)
    assert back.metadata["warnings"] == [] and load_labels(nrrd).metadata["warnings"] == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".seg.nrrd", ".mha"])
def test_a_label_table_left_from_another_version_of_its_file_is_said(tmp_path, suffix):
    """The table records its voxels' digest: read with the file it was saved with, nothing is said
    (any format, any orientation, uint8 or uint16 values); with another version of the file (a save cut
    short between the image and its table, a file replaced by hand) a warning says so, and the names stay."""
    from medvision.core.labels import LabelTable

    rng = np.random.default_rng(3)
    for code, high in (("LPS", 5), ("RAS", 5), ("PIL", 300)):
        array = rng.integers(0, high, (6, 7, 8)).astype(np.uint16)
        grid = Volume(np.zeros((6, 7, 8), np.int16), np.diag([0.8, 0.9, 2.0, 1.0])).reoriented(code)
        table = LabelTable.default_for(np.unique(array))
        table[1].name = "kidney"
        path = tmp_path / f"{code}{suffix}"
        save_labels(LabelMap(array.reshape(grid.shape), grid.affine, table), path)
        back = load_labels(path)
        assert back.metadata["warnings"] == [] and back.table[1].name == "kidney", code
        changed = back.array.copy()
        changed[0, 0, 0] = 2 if changed[0, 0, 0] != 2 else 3
        table_text = table_path_for(path).read_text()
        save_labels(LabelMap(changed, back.affine, back.table), path)
        table_path_for(path).write_text(table_text)  # the table of the version before
        stale = load_labels(path)
        assert len(stale.metadata["warnings"]) == 1 and "saved with another version" in stale.metadata["warnings"][0]
        assert stale.table[1].name == "kidney"


def test_itksnap_label_descriptions(tmp_path):
    text = ('# ITK-SNAP Label Description File\n'
            '    0     0    0    0        0  0  0    "Clear Label"\n'
            '    1   255    0    0        1  1  1    "tumour"\n'
            '    2     0  255    0      0.5  0  1    "oedema"\n')
    (tmp_path / "seg.label").write_text(text)
    table = read_itksnap_labels(tmp_path / "seg.label")
    assert [(la.value, la.name, la.color, la.visible) for la in table] == [
        (1, "tumour", (255, 0, 0, 255), True), (2, "oedema", (0, 255, 0, 128), False)]
    # found beside a label image of the same name
    save(Volume(np.array([[[0, 1, 2]]], np.uint8), np.eye(4)), tmp_path / "seg.nii.gz")
    assert load_labels(tmp_path / "seg.nii.gz").table[1].name == "tumour"
    (tmp_path / "bad.label").write_text("this is not a label file\n")
    with pytest.raises(MedvisionIOError, match="ITK-SNAP"):
        read_itksnap_labels(tmp_path / "bad.label")


@pytest.mark.usefixtures("shared_data")
def test_the_itksnap_labelled_mr_opens_with_its_names(shared_data):
    lm = load_labels(shared_data / "labeled" / "MRIcrop-seg.gipl.gz",
                     table=read_itksnap_labels(shared_data / "labeled" / "MRIcrop-seg.label"))
    assert lm.table[1].name == "vent-lat" and lm.table[8].name == "corpus-callosum"
    assert lookup(lm.table[1].name).type.meaning == "Lateral Ventricle"


def test_labels_on_another_grid_are_resampled_and_bad_files_refused(tmp_path, ct, totalseg):
    coarse = Volume(totalseg.array[:, ::2, ::2].copy(), ct.affine @ np.diag([2.0, 2.0, 1.0, 1.0]), None, {})
    save(coarse, tmp_path / "coarse.nii.gz")
    lm = load_labels(tmp_path / "coarse.nii.gz", reference=ct)
    assert lm.placement == "resampled" and lm.shape == ct.shape
    agree = np.count_nonzero(lm.array == totalseg.array) / lm.array.size
    assert agree > 0.99
    prob = Volume(np.random.default_rng(0).random((4, 8, 8)).astype(np.float32), np.eye(4), None, {})
    save(prob, tmp_path / "prob.nii.gz")
    with pytest.raises(UnsupportedDataError, match="non-integer"):
        load_labels(tmp_path / "prob.nii.gz")
    save(Volume(np.zeros((2, 3, 4, 5), np.uint8), np.eye(4), None, {}), tmp_path / "four.nii.gz")
    with pytest.raises(UnsupportedDataError, match="4D"):
        load_labels(tmp_path / "four.nii.gz")
    save(Volume(np.ones((2, 3, 4), np.uint8), np.eye(4), None, {}), tmp_path / "x.nii.gz")
    (tmp_path / "x.labels.json").write_text("{not json")
    with pytest.raises(MedvisionIOError, match="x.labels.json"):
        load_labels(tmp_path / "x.nii.gz")


def _dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (bash packaging/setup.sh --dev installs dicom3tools)")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


def test_dicom_seg_of_the_117_class_map_is_valid_and_reads_back_identical(tmp_path, ct, totalseg):
    lm = totalseg.copy()
    lm.table[5].name = "liver"
    lm.table[1].name = "spleen"
    lm.table[5].color = (200, 120, 60, 255)
    path = write_seg(lm, ct, tmp_path / "labels.dcm")
    assert is_seg(path) and not is_seg(next(SAMPLE_CT.iterdir()))
    assert _dciodvfy_errors(path) == []
    back = read_seg(path, reference=ct)
    assert np.array_equal(back.array, lm.array)
    assert back.table[5].name == "liver" and back.table[5].type.meaning == "Liver"
    assert back.table[5].category.meaning == "Anatomical Structure"
    assert np.abs(np.array(back.table[5].color[:3]) - (200, 120, 60)).max() <= 2  # via CIELab
    assert back.table[117].type.meaning == "Tissue"  # no name match: a generic code
    # on its own grid (no reference): the same voxels once placed on the CT
    own = read_seg(path)
    assert own.placement == "as stored"
    from medvision.io.labels import onto_grid

    assert np.array_equal(onto_grid(own.array, own.affine, ct)[0], lm.array)


def test_seg_needs_a_dicom_reference_and_labels(tmp_path, ct, totalseg):
    nifti = Volume(ct.array, ct.affine, None, {"modality": "CT"})
    with pytest.raises(UnsupportedDataError, match="DICOM images"):
        write_seg(totalseg, nifti, tmp_path / "x.dcm")
    with pytest.raises(MedvisionIOError, match="empty"):
        write_seg(LabelMap.empty_like(ct), ct, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 64)
    with pytest.raises(MedvisionIOError, match="not a readable DICOM SEG"):
        read_seg(tmp_path / "junk.dcm")


def test_a_seg_made_by_another_tool_opens():
    path = get_testdata_file("liver.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    lm = read_seg(path)
    assert [la.name for la in lm.table] == ["Liver"] and lm.table[1].type.meaning == "Liver"
    assert lm.shape == (3, 512, 512) and np.count_nonzero(lm.array) > 1000


@pytest.mark.slow
def test_convert_labels_to_seg_and_back(tmp_path, ct, totalseg, capsys):
    seg = tmp_path / "out.dcm"
    r = run_cli(capsys, "convert", SAMPLE_LABELS, "--reference", SAMPLE_CT, "-o", seg, "-q")
    assert r.returncode == 0, r.stderr
    assert "31 labels" in r.stdout and _dciodvfy_errors(seg) == []
    r = run_cli(capsys, "convert", seg, "--reference", SAMPLE_CT, "-o", tmp_path / "back.nii.gz", "-q")
    assert r.returncode == 0, r.stderr
    back = load_labels(tmp_path / "back.nii.gz")
    assert np.array_equal(back.array, totalseg.array) and back.on_grid_of(ct)
    # without --reference, the series is looked for beside the SEG
    folder = tmp_path / "study"
    shutil.copytree(SAMPLE_CT, folder / "ct")
    shutil.copy(seg, folder / "seg.dcm")
    r = run_cli(capsys, "convert", folder / "seg.dcm", "-o", tmp_path / "found.nii.gz", "-q")
    assert r.returncode == 0 and "onto the reference" in r.stdout, r.stderr
    assert np.array_equal(load_labels(tmp_path / "found.nii.gz").array, totalseg.array)
    r = run_cli(capsys, "convert", SAMPLE_LABELS, "-o", tmp_path / "no_ref.dcm", "-q")
    assert r.returncode != 0 and "--reference" in r.stderr
