"""Saliency maps: a planted cause found by each method (a network trained here on volumes where a label
depends only on a marker elsewhere), the randomisation check passing for the real explainers and failing
for one that ignores the model, the job on the shipped brain model (the map on the exact grid in any
storage order, deterministic, its mass on the brain), the `medvision explain` command and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvision.ai.explain.methods import RegionScore, default_layer, gradcam, integrated_gradients, occlusion
from medvision.ai.explain.planted import SIZE, TARGET, hit, marker, sample, target_region, train
from medvision.ai.explain.sanity import randomisation_check, spearman


@pytest.fixture(scope="module")
def planted():
    """A small monai UNet trained (seeded, one CPU thread) until it labels TARGET when the marker is there."""
    return train()


@pytest.mark.slow
def test_each_method_points_at_the_planted_cause_and_a_random_model_does_not(planted):
    rng = np.random.default_rng(42)
    region = target_region()
    score = RegionScore(1, region)
    layer = default_layer(planted, torch.zeros(1, 1, SIZE, SIZE, SIZE))
    hits = {"gradcam": 0, "ig": 0, "occlusion": 0, "random": 0}
    from medvision.ai.explain.sanity import randomised

    random_net = randomised(planted, 10_000, seed=3)
    for _ in range(10):
        x_np, _y, where = sample(rng, True)
        x = torch.from_numpy(x_np)[None]
        with torch.no_grad():  # the network learnt the rule: the label with the marker, none without
            assert (planted(x).argmax(1)[0][TARGET] == 1).float().mean() > 0.8
            bare = torch.from_numpy(sample(rng, False)[0])[None]
            assert (planted(bare).argmax(1)[0][TARGET] == 1).float().mean() < 0.2
        hits["gradcam"] += hit(gradcam(planted, x, score, layer), where, 3)
        ig = integrated_gradients(planted, x, torch.zeros_like(x), score, tolerance=0.05, max_steps=32)
        hits["ig"] += hit(ig.attributions, where, 1)
        full = (slice(0, SIZE),) * 3
        hits["occlusion"] += hit(occlusion(planted, x, score, (4, 4, 4), full, 0.0), where, 3)
        rig = integrated_gradients(random_net, x, torch.zeros_like(x), score, tolerance=0.05, max_steps=16)
        hits["random"] += hit(rig.attributions, where, 1)
    assert hits["gradcam"] >= 9 and hits["ig"] >= 9 and hits["occlusion"] >= 9, hits
    assert hits["random"] <= 3, hits
    # (in one test: the network is trained once, not once per test worker)
    _completeness(planted)
    _randomisation(planted)


def _completeness(planted) -> None:
    """Integrated gradients meet completeness by doubling their steps, and are deterministic on the CPU."""
    x = torch.from_numpy(sample(np.random.default_rng(5), True)[0])[None]
    region = target_region()
    # from the same image without its marker (a black image is no baseline for a network with instance norm:
    # blind to the input's scale, it changes only at the path's very start, where the steps cannot see it)
    bare = x.clone()
    bare[x > 1.2] = 0.0
    ig = integrated_gradients(planted, x, bare, RegionScore(1, region), tolerance=0.01, start_steps=4,
                              max_steps=256)
    assert ig.completeness_error <= 0.01 and ig.steps in (4, 8, 16, 32, 64, 128, 256)
    assert abs(float(ig.attributions.sum()) - ig.score_change) <= 0.01 * abs(ig.score_change)
    assert ig.score_change > 0.5  # the marker raises the label's score
    again = integrated_gradients(planted, x, bare, RegionScore(1, region), tolerance=0.01, start_steps=4,
                                 max_steps=256)
    assert torch.equal(ig.attributions, again.attributions)  # deterministic on the CPU
    # the job's baseline for such a network (instance norm): the image blurred, not a constant
    from medvision.ai.explain.methods import blurred, scale_blind

    assert scale_blind(planted)
    soft = integrated_gradients(planted, x, blurred(x, 2.0), RegionScore(1, region), tolerance=0.05, max_steps=64)
    assert soft.completeness_error <= 0.05 and hit(soft.attributions, marker(x), 1)


def _randomisation(planted) -> None:
    """The randomisation check passes a real map and fails an edge detector."""
    x = torch.from_numpy(sample(np.random.default_rng(7), True)[0])[None]
    region = target_region()
    score = RegionScore(1, region)
    layer = default_layer(planted, x)

    def real(net):
        return gradcam(net, x, score, layer)

    check = randomisation_check(planted, real, real(planted))
    assert check.passed, check.summary()
    assert [n for n, _ in check.cascade][0] == 1 and "passes" in check.summary()

    def edges(_net):  # ignores the model: the image's gradient magnitude
        g = torch.stack(torch.gradient(x[0, 0]))
        return g.norm(dim=0)

    broken = randomisation_check(planted, edges, edges(planted))
    assert not broken.passed and "fails randomisation check" in broken.summary()
    assert spearman(torch.arange(10.0), torch.arange(10.0)) == pytest.approx(1.0)
    assert spearman(torch.zeros(10), torch.arange(10.0)) == 0.0


@pytest.mark.slow
def test_gradcam_on_the_shipped_brain_model_lands_on_the_exact_grid_in_any_storage_order(shared_data, tmp_path,
                                                                                          capsys):
    """The job on MRIcrop as stored, and `medvision explain` on a copy stored in another order: the maps, on
    each image's exact grid, agree voxel for voxel once brought to the same order."""
    from medvision.ai.explain.job import ExplainOptions, explain_job
    from medvision.ai.package import Registry
    from medvision.cli import main
    from medvision.core.jobs import run_job
    from medvision.io import load, save

    volume = load(shared_data / "labeled" / "MRIcrop-orig.gipl.gz")
    pkg = Registry().get("deepbet-t1-brain")
    result = run_job(explain_job(pkg, volume, ExplainOptions(label="brain", device="cpu")))
    assert result.map.shape == volume.shape and result.map.dtype == np.float32
    assert result.layer and 0.5 < float(result.map.max()) <= 1.0
    flipped = save(volume.reoriented("RAI"), tmp_path / "rai.nii.gz")
    out = tmp_path / "map.nii.gz"
    assert main(["explain", str(flipped), "--model", "deepbet-t1-brain", "--label", "brain", "-o", str(out),
                 "--device", "cpu", "-q"]) == 0
    assert "Grad-CAM at layer" in capsys.readouterr().out and (tmp_path / "map.json").is_file()
    other = load(out)
    assert other.same_grid(load(flipped)) and other.metadata.get("synthetic")
    back = other.reoriented(volume.orientation).array
    assert spearman(torch.from_numpy(back), torch.from_numpy(result.map)) > 0.95
    # (determinism on the CPU: integrated gradients on the planted network, above)


def test_the_explain_command_refuses_in_one_sentence(tmp_path, capsys, shared_data):
    from medvision.cli import main
    from medvision.cli_explain import parse_box

    image = shared_data / "labeled" / "MRIcrop-orig.gipl.gz"
    out = tmp_path / "map.nii.gz"
    for args, words in (
        (["--label", "liver"], "no label 'liver'"),
        (["--box", "1:2,3"], "three ranges"),
        (["--box", "0:2,0:2,900:901"], "outside the image"),
        (["--model", "brainchop-gwm", "--label", "x"], "brainchop's own pipeline"),
        (["--label", "brain", "--box", "0:1,0:1,0:1"], "outside the part of the image the model looks at"),
    ):
        model = [] if "--model" in args else ["--model", "deepbet-t1-brain"]
        assert main(["explain", str(image), *model, *args, "-o", str(out), "--device", "cpu", "-q"]) == 2, args
        assert words in capsys.readouterr().err, args
    assert main(["explain", str(image), "--model", "deepbet-t1-brain", "-o", str(tmp_path / "x.png")]) == 2
    assert parse_box("1:5,2:6,3:7") == (slice(1, 5), slice(2, 6), slice(3, 7))


@pytest.mark.slow
def test_the_explain_dialog_shows_a_checked_map_over_the_image(qtbot, window, shared_data, screenshot_dir):
    """Models dock -> deepbet -> Explain...: Grad-CAM for "brain" runs as a job with the randomisation check;
    the map is an overlay on the image's grid with its colour scale; a second map (occlusion is too slow here:
    integrated gradients would be too) is listed beside it; closing the dialog removes the overlay."""
    from PySide6.QtWidgets import QApplication

    from medvision.ui.dialogs.explain import SALIENCY, codes

    from .qtutil import open_and_wait

    assert open_and_wait(qtbot, window, shared_data / "labeled" / "MRIcrop-orig.gipl.gz")
    panel = window.annotating.models
    window.annotating.models_dock.raise_()
    assert panel.select("deepbet-t1-brain") and panel.explain_button.isEnabled()
    dialog = panel.open_explain()
    assert dialog.label_combo.currentData() == "brain" and dialog.sanity_check.isChecked()
    dialog.sanity_check.setChecked(False)  # (the check itself: test_explain's planted network, and the CLI)
    assert dialog.run()
    qtbot.waitUntil(lambda: len(dialog.maps) == 1 or "could not" in dialog.status.text(), timeout=300_000)
    assert len(dialog.maps) == 1, dialog.status.text()
    layer = window.viewer.layer(SALIENCY)
    assert layer is not None and layer.array.shape == window.viewer.volume.shape and layer.array.max() > 0
    assert "not checked" in dialog.status.text() and "gradcam" in dialog.map_list.item(0).text()
    assert dialog.scale_label.text() and not dialog.colour_bar.pixmap().isNull()
    for _ in range(5):
        QApplication.processEvents()
    window.save_screenshot(str(screenshot_dir / "explain_gradcam.png"))
    dialog.grab().save(str(screenshot_dir / "explain_dialog.png"))
    dialog.threshold.setValue(0.9)
    assert (window.viewer.layer(SALIENCY).array > 0).sum() < (layer.array > 0).sum()
    # a map that fails the randomisation check is listed in red and says so
    import dataclasses

    from medvision.ai.explain.sanity import RandomisationCheck

    failing = dataclasses.replace(dialog.maps[0][1], check=RandomisationCheck([(1, 0.99)], 0.2, False))
    dialog._finished(failing, window.viewer.volume)
    assert "FAILS randomisation check" in dialog.map_list.item(1).text()
    assert dialog.map_list.item(1).foreground().color().name() == "#e04040"
    assert "may not reflect the model" in dialog.status.text()
    signed, _peak = codes(np.array([-2.0, -0.1, 0.0, 1.0, 2.0]), True, 0.2)
    assert list(signed) == [1, 0, 0, 192, 255]
    dialog.close()
    assert window.viewer.layer(SALIENCY) is None
    assert panel.select("brainchop-gwm") and not panel.explain_button.isEnabled()


def _unet_package(folder):
    """A small monai UNet (random weights) as a CT segmentation package: what a user's fine-tuned model is."""
    from monai.networks.nets import UNet
    from safetensors.torch import save_file

    from medvision.ai.package import ModelPackage, sha256_of, write_card

    torch.manual_seed(0)
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]}
    net = UNet(**args)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "weights.safetensors"))
    write_card(folder, {
        "format": "medvision-model", "format_version": 1, "id": "tiny-unet", "version": "1.0", "name": "tiny unet",
        "task": "segmentation", "modality": "CT", "dims": 3, "architecture": {"name": "monai.UNet", "args": args},
        "weights": {"file": "weights.safetensors", "sha256": sha256_of(folder / "weights.safetensors")},
        "input": {"orientation": "LPS", "normalization": {"kind": "ct", "low": -200, "high": 300}},
        "inference": {"mode": "whole"}, "output": {"activation": "softmax"},
        "labels": [{"value": 1, "name": "thing", "color": [255, 0, 0, 255]}], "license": "test"})
    return ModelPackage.open(folder)


def test_a_map_of_a_dicom_series_is_written_as_a_derived_series_dciodvfy_accepts(tmp_path, capsys):
    """`medvision explain ... -o FOLDER` on the sample CT: a new series on the image's grid (new UIDs, DERIVED,
    each slice pointing at its source), marked as a model's, valid for dciodvfy where it is installed."""
    import shutil
    import subprocess

    import pydicom

    from medvision.ai.package import user_dir
    from medvision.cli import main
    from medvision.io import load

    from .conftest import SAMPLE_CT

    pkg = _unet_package(tmp_path / "pkg")
    shutil.copytree(pkg.folder, user_dir() / "tiny-unet")
    out = tmp_path / "map-series"
    assert main(["explain", str(SAMPLE_CT), "--model", "tiny-unet", "--box", "8:12,200:300,200:300", "-o", str(out),
                 "--device", "cpu", "-q"]) == 0, capsys.readouterr().err
    source, derived = load(SAMPLE_CT), load(out)
    assert derived.same_grid(source) and float(derived.array.max()) > 0
    files = sorted(out.glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and ds.SeriesDescription.startswith("AI saliency map")
    assert "tiny-unet" in ds.DerivationDescription and "SourceImageSequence" in ds
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(files[0])], capture_output=True, text=True).stderr
        assert not [ln for ln in report.splitlines() if ln.startswith("Error")], report
    assert main(["explain", str(SAMPLE_CT), "--model", "tiny-unet", "--label", "thing", "-o",
                 str(tmp_path / "x.dcm")]) == 2
    assert "new folder" in capsys.readouterr().err
