"""The plausibility guard: a result whose volumes no adult structure can have, or made from an image of
another modality than the model's, is flagged in the result, by the CLI (exit status 3, the reasons on
stderr, the labels still written) and in the window (in red; Accept asks first)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medvision.ai.plausibility import (
    PlausibilityError,
    extents_mm,
    implausibilities,
    label_volumes_ml,
    max_extents,
    symmetry,
    volume_ranges,
)
from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume

from .test_engine import Brightness, make_package

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CT = ROOT / "resources" / "sample" / "ct_abdomen_siemens_j2k"


def _labels(array: np.ndarray, spacing=(2.0, 1.0, 1.0), names=("brain", "tumour")) -> LabelMap:
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    table = LabelTable()
    for name in names:
        table.add(name)
    return LabelMap(array.astype(np.uint8), affine, table)


def _card(**ranges) -> dict:
    return {"id": "m", "name": "the model", "modality": "MR", "plausibility": {"volume_ml": ranges}}


def test_volumes_in_ml_per_label_absent_ones_zero():
    a = np.zeros((10, 20, 20), np.uint8)
    a[:5] = 1  # 5 * 400 voxels of 2 uL
    found = label_volumes_ml(_labels(a))
    assert found == pytest.approx({"brain": 4.0, "tumour": 0.0})


def test_outside_the_cards_range_is_flagged_inside_is_not():
    a = np.zeros((10, 20, 20), np.uint8)
    a[:5] = 1
    labels = _labels(a)
    mr = Volume(np.zeros(a.shape, np.int16), labels.affine, None, {"modality": "MR"})
    assert implausibilities(_card(brain=[1, 10]), labels, mr) == []
    big = implausibilities(_card(brain=[0.5, 2]), labels, mr)
    assert len(big) == 1 and "brain 4.0 mL is above" in big[0] and "0.5 mL to 2.0 mL" in big[0]
    small = implausibilities(_card(brain=[600, 2200]), labels, mr)
    assert "below" in small[0] and "600.0 mL to 2.20 L" in small[0] and "hold all of it" in small[0]
    absent = implausibilities(_card(tumour=[1, 5]), labels, mr)  # a label with no voxel: 0 mL
    assert len(absent) == 1 and absent[0].startswith("tumour 0.0 mL is below")
    # a label the card names but the table lacks is not judged; a region run does not judge volumes
    assert implausibilities(_card(liver=[1, 5]), labels, mr) == []
    assert implausibilities(_card(brain=[600, 2200]), labels, mr, whole=False) == []


def test_another_modality_is_flagged_guessed_or_not():
    labels = _labels(np.zeros((4, 4, 4), np.uint8))
    ct = Volume(np.zeros((4, 4, 4), np.int16), labels.affine, None, {"modality": "CT"})
    why = implausibilities(_card(), labels, ct)
    assert why == ["this is a CT image and the model was made for MR only: its output means nothing here"]
    guessed = Volume(np.zeros((4, 4, 4), np.int16), labels.affine, None, {"modality": "CT", "modality_guessed": True})
    assert "CT image (guessed from its intensities)" in implausibilities(_card(), labels, guessed)[0]
    unknown = Volume(np.zeros((4, 4, 4), np.int16), labels.affine, None, {})
    assert implausibilities(_card(), labels, unknown) == []


def test_a_label_wider_than_the_structure_can_be_is_flagged_along_the_patients_axes():
    a = np.zeros((10, 40, 40), np.uint8)
    a[4:6, 10:12, 0:40] = 1  # 40 voxels along x
    card = {"id": "m", "plausibility": {"extent_mm": {"brain": 30, "tumour": 5}}}
    assert extents_mm(_labels(a), {"brain", "tumour"}) == {"brain": 40.0, "tumour": 0.0}
    assert implausibilities(card, _labels(a)) == ["brain reaches 40 mm across, more than an adult brain can (30 mm)"]
    # the same voxels on a grid turned 45 degrees in the axial plane: 40 mm along the diagonal
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    turned = _labels(a)
    turned.affine = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1.0]])
    assert extents_mm(turned, {"brain"})["brain"] == pytest.approx(40 * c + 2 * s, abs=1e-6)
    assert implausibilities({"id": "m", "plausibility": {"extent_mm": {"brain": 50}}}, _labels(a)) == []


@pytest.mark.parametrize("bad", [{"brain": [5]}, {"brain": ["a", 3]}, {"brain": [10, 1]}, {"brain": [-1, 3]},
                                 {"brain": [0, float("inf")]}, ["brain", 1, 2]])
def test_a_malformed_range_is_named_and_then_ignored(bad, caplog):
    with pytest.raises(PlausibilityError, match="plausibility.volume_ml"):
        volume_ranges({"id": "m", "plausibility": {"volume_ml": bad}})
    labels = _labels(np.ones((4, 4, 4), np.uint8))
    with caplog.at_level(logging.WARNING):
        assert implausibilities({"id": "m", "plausibility": {"volume_ml": bad}}, labels) == []
    assert "plausibility.volume_ml" in caplog.text


SIDES = ("Left-WM", "Right-WM", "ctx-lh-a", "ctx-lh-b", "ctx-rh-a", "ctx-rh-b")


def _sided(left_wm: int, right_wm: int, lh: tuple[int, int], rh: tuple[int, int]) -> LabelMap:
    """Slabs of (z) slices of 1 mL each (1 x 1 x 2 mm voxels, 20 x 25 per slice) for each label."""
    counts = [left_wm, right_wm, *lh, *rh]
    a = np.zeros((sum(counts), 20, 25), np.uint8)
    z = 0
    for value, n in enumerate(counts, start=1):
        a[z:z + n] = value
        z += n
    return _labels(a, names=SIDES)


SYMMETRIC = {"id": "m", "plausibility": {"symmetry": {"max_ratio": 1.5, "pairs": [
    ["Left-WM", "Right-WM"], ["ctx-lh-*", "ctx-rh-*"]]}}}


def test_one_side_much_larger_than_the_other_is_flagged_hemisphere_sums_included():
    assert implausibilities(SYMMETRIC, _sided(10, 9, (3, 3), (2, 3))) == []
    # the dkt-104 model on a post-contrast thick-slice T1: left white matter 3.4 times the right
    lop = implausibilities(SYMMETRIC, _sided(34, 10, (3, 3), (3, 3)))
    assert lop == ["Left-WM 34.0 mL is 3.4 times Right-WM 10.0 mL: an adult's two sides differ far less "
                   "(at most 1.5 times)"]
    # each cortex label within 1.5 of its twin, their sums (8 against 4 mL) not
    cortex = implausibilities(SYMMETRIC, _sided(10, 10, (4, 4), (3, 1)))
    assert len(cortex) == 1 and cortex[0].startswith(
        "the ctx-lh-* labels together 8.0 mL is 2.0 times the ctx-rh-* labels together 4.0 mL")
    empty = implausibilities(SYMMETRIC, _sided(0, 7, (3, 3), (3, 3)))
    assert empty == ["Right-WM measures 7.0 mL while Left-WM is empty: an adult's two sides differ far less "
                     "(at most 1.5 times)"]
    # both sides empty, a region run, or a card naming labels the table lacks: nothing to judge
    assert implausibilities(SYMMETRIC, _sided(0, 0, (3, 3), (3, 3))) == []
    assert implausibilities(SYMMETRIC, _sided(34, 10, (3, 3), (3, 3)), whole=False) == []
    other = {"id": "m", "plausibility": {"symmetry": {"max_ratio": 1.5, "pairs": [["Left-X", "Right-X"]]}}}
    assert implausibilities(other, _sided(34, 10, (3, 3), (3, 3))) == []


@pytest.mark.parametrize("bad", [{"max_ratio": 0.5, "pairs": []}, {"max_ratio": "x", "pairs": []},
                                 {"max_ratio": 1.5, "pairs": [["a"]]}, {"max_ratio": 1.5, "pairs": "a,b"},
                                 {"max_ratio": 1.5, "pairs": [["a", 3]]}, [1.5]])
def test_a_malformed_symmetry_is_named_and_then_ignored(bad, caplog):
    card = {"id": "m", "plausibility": {"symmetry": bad}}
    with pytest.raises(PlausibilityError, match="plausibility.symmetry"):
        symmetry(card)
    with caplog.at_level(logging.WARNING):
        assert implausibilities(card, _sided(34, 10, (3, 3), (3, 3))) == []
    assert "plausibility.symmetry" in caplog.text


@pytest.mark.parametrize("bad", [{"brain": 0}, {"brain": "wide"}, {"brain": -3}, {"brain": None}, [220]])
def test_a_malformed_extent_is_named(bad):
    with pytest.raises(PlausibilityError, match="plausibility.extent_mm"):
        max_extents({"id": "m", "plausibility": {"extent_mm": bad}})


@pytest.fixture
def bright_models(tmp_path, monkeypatch):
    """A shipped 'bright' CT model (bright = normalised intensity > 0.5) whose card says bright measures
    at most 1 mL."""
    from medvision.ai import architectures
    from medvision.ai.package import write_card

    monkeypatch.setitem(architectures._OWN, "test.Brightness", lambda args: Brightness(**args))
    monkeypatch.setenv("MEDVISION_SHIPPED_MODELS", str(tmp_path / "shipped"))
    pkg = make_package(tmp_path / "shipped" / "bright")
    write_card(pkg.folder, dict(pkg.card, plausibility={"volume_ml": {"bright": [0, 1]}}))
    return tmp_path / "shipped"


def _ct(value: int = 900, modality: str = "CT") -> Volume:
    array = np.zeros((10, 20, 20), np.int16)
    array[2:8, 5:15, 5:15] = value  # 600 voxels of 8 uL: 4.8 mL
    return Volume(array, np.diag([2.0, 2.0, 2.0, 1.0]), None, {"modality": modality})


def test_the_engine_flags_the_result_it_returns(bright_models):
    from medvision.ai.engine import InferenceOptions, infer_job
    from medvision.ai.package import Registry
    from medvision.core.jobs import run_job

    pkg = Registry().get("test-bright")
    result = run_job(infer_job(pkg, _ct(), InferenceOptions(device="cpu")))
    assert result.implausible == ["bright 4.8 mL is above what an adult bright measures (0.0 mL to 1.0 mL)"]
    ok = run_job(infer_job(pkg, _ct(0), InferenceOptions(device="cpu")))
    assert ok.implausible == []
    box = run_job(infer_job(pkg, _ct(), InferenceOptions(device="cpu", box=(slice(0, 10), slice(0, 20),
                                                                              slice(0, 20)))))
    assert box.implausible == []  # a region: volumes not judged
    mr = run_job(infer_job(pkg, _ct(0, "MR"), InferenceOptions(device="cpu")))
    assert mr.implausible == ["this is a MR image and bright was made for CT only: its output means nothing here"]


def test_the_cli_says_so_once_writes_the_labels_and_exits_3(bright_models, tmp_path, capsys):
    from medvision.cli import main
    from medvision.io.labels import load_labels
    from medvision.io.volumes import write_volume

    image = tmp_path / "mr.nii.gz"
    write_volume(_ct(900, "MR"), image)  # NIfTI keeps no modality: guessed from the intensities (not CT)
    out = tmp_path / "out.nii.gz"
    assert main(["infer", "--model", "test-bright", str(image), "-o", str(out), "--device", "cpu", "-q"]) == 3
    err = capsys.readouterr().err
    assert "IMPLAUSIBLE RESULT: bright 4.8 mL is above" in err and "was written as the model gave it" in err
    assert (load_labels(out).array == 1).sum() == 600  # nothing lost: the labels are there to check
    image.unlink()
    write_volume(_ct(0, "MR"), image)
    assert main(["infer", "--model", "test-bright", str(image), "-o", str(out), "--device", "cpu"]) == 0
    assert "IMPLAUSIBLE" not in capsys.readouterr().err


@pytest.mark.slow
def test_deepbet_on_the_abdominal_ct_is_flagged_and_the_modality_said_once(tmp_path):
    """The case the issue met: deepbet (MR brain extraction) on the bundled abdominal CT wrote
    'brain 3188.5 mL' after printing the modality warning twice."""
    out = tmp_path / "brain.nii.gz"
    proc = subprocess.run([sys.executable, "-m", "medvision.cli", "infer", "--model", "deepbet-t1-brain",
                           str(SAMPLE_CT), "-o", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 3, proc.stderr
    said = proc.stdout + proc.stderr
    assert said.count("was made for MR") == 2  # once before the run, once in the verdict
    assert "IMPLAUSIBLE RESULT: this is a CT image and deepbet T1 brain extraction was made for MR only" in said
    assert "IMPLAUSIBLE RESULT: brain reaches" in said  # 372 mm across: no head holds that, whatever the modality
    assert out.exists()


def test_the_window_shows_it_in_red_and_accept_asks(qtbot, ct, bright_models, monkeypatch):
    window = ct
    panel, ann = window.annotating.models, window.annotating.annotation
    panel.refresh()
    assert panel.select("test-bright")
    assert panel.run()
    qtbot.waitUntil(lambda: panel.proposal is not None, timeout=60_000)
    from medvision.ui.panels.model_panel import ALARM

    text = panel.status.text()
    red, rest = text.split("</span>")
    assert red.startswith(f'<span style="color:{ALARM}; font-weight:bold">IMPLAUSIBLE RESULT')
    assert "above what an adult bright measures" in red and "done on cpu" in rest
    asked = []
    monkeypatch.setattr(panel, "confirm_implausible", lambda: asked.append(1) or False)
    assert not panel.accept() and asked == [1]
    assert ann.labels is None or not ann.labels.array.any()  # declined: nothing went in
    monkeypatch.setattr(panel, "confirm_implausible", lambda: asked.append(2) or True)
    assert panel.accept() and asked == [1, 2]
    assert ann.labels.array.any()
