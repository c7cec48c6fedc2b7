"""The built-in fill (no model): a smooth 3D fill given the image's grain from nearby tissue of the same
brightness. The grain: as strong as the surroundings' (each tissue its own), nothing read inside the region,
the same result every time, every voxel outside the region untouched; the method through the job, the
`medvision inpaint` command and the Models dock."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medvision.ai.inpainting.builtin import BUILTIN_ID, BuiltinInpainter, describe, find_inpainter
from medvision.ai.inpainting.data import coarse_fill
from medvision.ai.inpainting.infer import InpaintOptions, inpaint_job
from medvision.ai.inpainting.metrics import texture_ratio
from medvision.ai.inpainting.texture import add_neighbour_texture
from medvision.ai.package import PackageError
from medvision.core.jobs import run_job
from medvision.core.volume import Volume
from medvision.io.derived import is_synthetic_text, synthetic_label


def _two_tissues(shape=(10, 90, 120), seed=3):
    """Left: bright, fine grain (sd 0.02); right: dark, coarse grain (sd 0.08); a gentle slope across."""
    rng = np.random.default_rng(seed)
    _, _, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    left = x < shape[2] // 2
    base = np.where(left, 0.7, 0.3) + 0.001 * x
    sd = np.where(left, 0.02, 0.08)
    return (base + rng.normal(0, 1, shape) * sd).astype(np.float32), left, sd


def _ball(shape, centre, radius):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    c = centre
    return ((z - c[0]) * 2.0) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < radius ** 2


def test_the_grain_is_each_tissues_own_and_nothing_inside_the_region_is_read():
    image, left, _sd = _two_tissues()
    hole = _ball(image.shape, (5, 45, 60), 14)  # across the border of the two tissues
    smooth = coarse_fill(image, hole, "biharmonic_3d", (2.0, 1.0, 1.0))
    grained = smooth.copy()
    assert add_neighbour_texture(grained, hole) == 0
    assert np.array_equal(grained[~hole], smooth[~hole])  # outside: untouched
    added = grained - smooth
    x = np.arange(image.shape[2])[None, None, :]
    off_border = np.abs(x - image.shape[2] // 2) > 7  # (the border itself: the step's own sharpness comes too)
    for side, want in ((left, 0.02), (~left, 0.08)):
        part = added[hole & side & off_border]
        assert 0.7 * want < part.std() < 1.3 * want, (want, part.std())  # the grain of that tissue
        assert abs(part.mean()) < 0.3 * want  # no shift of brightness
    # the texture measure: the smooth fill far below 1, the grained one about 1
    zs = [z for z in range(image.shape[0]) if hole[z].sum() > 30]
    smooth_ratio = np.mean([texture_ratio(smooth[z], image[z], hole[z]) for z in zs])
    grained_ratio = np.mean([texture_ratio(grained[z], image[z], hole[z]) for z in zs])
    assert smooth_ratio < 0.3 and 0.75 < grained_ratio < 1.3, (smooth_ratio, grained_ratio)
    # the region's own values never read: other values there give the same fill; the same call, the same grain
    other = image.copy()
    other[hole] = np.random.default_rng(9).uniform(0, 1, int(hole.sum()))
    again = coarse_fill(other, hole, "biharmonic_3d", (2.0, 1.0, 1.0))
    assert add_neighbour_texture(again, hole) == 0
    assert np.array_equal(again, grained)


def test_a_region_with_no_free_place_around_it_is_left_smooth_and_said():
    image, _, _ = _two_tissues(shape=(4, 40, 40))
    hole = np.zeros(image.shape, bool)
    hole[1:3, 2:38, 2:38] = True  # nearly the whole slice: no donor clear of it
    smooth = coarse_fill(image, hole, "biharmonic_3d", (1.0, 1.0, 1.0))
    grained = smooth.copy()
    assert add_neighbour_texture(grained, hole) == int(hole.sum())
    assert np.array_equal(grained, smooth)
    # a region wider than the usual search radius still finds places past its edge, even at its middle
    wide_image, _, _ = _two_tissues(shape=(4, 200, 200))
    wide = np.zeros(wide_image.shape, bool)
    wide[1:3, 50:150, 50:150] = True
    wide_smooth = coarse_fill(wide_image, wide, "biharmonic_3d", (1.0, 1.0, 1.0))
    wide_grained = wide_smooth.copy()
    assert add_neighbour_texture(wide_grained, wide) == 0
    assert (wide_grained - wide_smooth)[1:3, 96:104, 96:104].std() > 0.01


def _phantom(dtype=np.int16) -> Volume:
    rng = np.random.default_rng(1)
    shape = (12, 80, 90)
    _, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - 40) / 34) ** 2 + ((x - 45) / 40) ** 2 < 1
    array = np.where(body, 40.0, -1000.0) + rng.normal(0, 12, shape)
    affine = np.diag([0.9, 0.8, 2.0, 1.0])
    affine[:3, 3] = (-20, -30, 50)
    return Volume(np.rint(array).astype(dtype), affine, "1.2.3", {"modality": "CT"})


def test_the_builtin_fill_in_the_job_in_any_storage_order_with_and_without_grain():
    method = find_inpainter(BUILTIN_ID)
    assert method.card["task"] == "inpainting" and not method.card["trainable"]
    with pytest.raises(PackageError, match="no network"):
        method.network()
    volume = _phantom()
    region = np.zeros(volume.shape, bool)
    region[4:8, 30:50, 30:55] = True
    grained = run_job(inpaint_job(method, volume, region))
    out = grained.volume.array
    assert out.dtype == np.int16 and np.array_equal(out[~region], volume.array[~region])
    assert grained.volume.metadata["derived"]["grain"] and grained.device == "cpu"
    inside = out[region].astype(float)
    assert 6 < inside.std() < 18 and abs(inside.mean() - 40) < 4  # the body's grain (sd 12) and brightness
    smooth = run_job(inpaint_job(method, volume, region, InpaintOptions(texture=False))).volume.array
    assert smooth.dtype == np.int16 and smooth[region].std() < 0.6 * inside.std()
    assert not grained.notes
    # stored in another order: the same fill on the same voxels
    flipped = volume.reoriented("RAI")
    mask = Volume(region.view(np.uint8), volume.affine, None, {}).reoriented("RAI").array.astype(bool)
    back = run_job(inpaint_job(method, flipped, mask)).volume.reoriented(volume.orientation)
    assert np.array_equal(back.array, out)


def test_the_builtin_fill_from_the_command_and_what_it_is_called(tmp_path, capsys):
    from medvision.cli import main
    from medvision.core.labels import LabelMap
    from medvision.io import load, save
    from medvision.io.labels import save_labels

    volume = _phantom()
    image = save(volume, tmp_path / "ct.nii.gz")
    region = np.zeros(volume.shape, bool)
    region[4:8, 30:50, 30:55] = True
    mask = save_labels(LabelMap(region.astype(np.uint8), volume.affine), tmp_path / "mask.nii.gz")
    out, flat = tmp_path / "filled.nii.gz", tmp_path / "smooth.nii.gz"
    assert main(["inpaint", str(image), "--model", BUILTIN_ID, "--mask", str(mask), "-o", str(out), "-q"]) == 0
    assert main(["inpaint", str(image), "--model", BUILTIN_ID, "--mask", str(mask), "-o", str(flat), "--smooth",
                 "-q"]) == 0
    filled, smooth = load(out), load(flat)
    assert np.array_equal(filled.array[~region], volume.array[~region])
    assert filled.array[region].std() > 2 * smooth.array[region].std()
    sidecar = json.loads((tmp_path / "filled.json").read_text())
    assert sidecar["DerivationDescription"].startswith(f"Inpainted ({BUILTIN_ID} ")
    assert "grain" in sidecar["DerivationDescription"]
    assert "grain" not in json.loads((tmp_path / "smooth.json").read_text())["DerivationDescription"]
    assert filled.metadata["synthetic"] and synthetic_label(filled.metadata).startswith("SYNTHETIC: Inpainted")
    amap = tmp_path / "anomaly.nii.gz"
    assert main(["inpaint", str(image), "--model", BUILTIN_ID, "--anomaly", str(amap), "--hole-mm", "8", "-q"]) == 0
    assert load(amap).array.max() > 0
    assert main(["inpaint", str(image), "--model", "no-such-fill", "--mask", str(mask), "-o",
                 str(tmp_path / "x.nii.gz")]) == 2
    assert "no-such-fill" in capsys.readouterr().err
    assert main(["models", "list"]) == 0
    assert f"{BUILTIN_ID} " in capsys.readouterr().out
    # what a series it made is called, and that the window takes it for a synthetic one
    method = BuiltinInpainter()
    assert describe(method) == f"Inpainted ({BUILTIN_ID} {method.version}, no network)"
    assert describe(method, "anomaly map").startswith("Anomaly map (")
    assert all(is_synthetic_text(describe(method, w)) for w in ("inpainted", "anomaly map"))
    assert not is_synthetic_text("Inpainting study") and not is_synthetic_text(None)


def test_the_models_dock_offers_the_builtin_fill(qtbot, ct, screenshot_dir):
    """Without any inpainting model installed the dock lists the built-in fill: its own part (grain on, no
    device to choose, Fine-tune off), the painted region filled in place and accepted as a new series."""
    from PySide6.QtWidgets import QApplication

    from medvision.ui.panels.inpaint_box import FILLED

    from .qtutil import click, view_point

    window = ct
    panel, ann = window.annotating.models, window.annotating.annotation
    window.annotating.models_dock.raise_()
    panel.refresh()
    assert panel.select(BUILTIN_ID)
    box = panel.inpaint_box
    assert box.isVisibleTo(panel) and box.grain_check.isChecked() and not box.device_combo.isEnabled()
    assert not panel.train_button.isEnabled()
    ann.add_label("text to remove")
    window.annotating.panel.set_tool("paint")
    axial = window.views.slice_views["axial"]
    click(axial.viewport(), view_point(axial, [300, 250, int(window.viewer.cursor[2])]))
    region = ann.labels.array == ann.active
    qtbot.waitUntil(box.run_button.isEnabled, timeout=5000)
    original = window.viewer.volume
    assert box.run()
    qtbot.waitUntil(lambda: box.result is not None, timeout=60_000)
    assert window.viewer.layer(FILLED) is not None
    assert np.array_equal(box.result.volume.array[~region], original.array[~region])
    for _ in range(5):
        QApplication.processEvents()
    window.save_screenshot(str(screenshot_dir / "inpaint_builtin.png"))
    assert box.accept()
    qtbot.waitUntil(lambda: window.viewer.volume is not original and window.viewer.volume is not None
                    and not window.viewer.volume.metadata.get("partial"), timeout=60_000)
    assert window.viewer.volume.metadata.get("derivation", "").startswith(f"Inpainted ({BUILTIN_ID}")
    assert any(line.startswith("SYNTHETIC") for line in axial.info_lines())
    panel.select("deepbet-t1-brain")
    assert panel.train_button.isEnabled()


def _poor_package(root: Path, model_id: str = "poor-inpaint") -> Path:
    """A tiny inpainting package whose last layer is random: it fills worse than the smooth fill it refines
    (a model that has something to learn on the user's images)."""
    import torch

    from medvision.ai.inpainting.network import InpaintingUNet
    from medvision.ai.inpainting.train import InpaintTrainConfig, export_package

    torch.manual_seed(0)
    g = InpaintingUNet(context=1, base=4, levels=2, dilations=(2,))
    last = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(last.weight, 0, 0.05)
    # (push-pull: its coarse fill is a tenth of the 3D biharmonic fill's time, which the samples spend most on)
    cfg = InpaintTrainConfig(train=["a"], held_out=["b"], modality="CT", new_id=model_id, base=4, levels=2,
                             dilations=(2,), coarse="push_pull")
    return export_package(cfg, {"generator": g.state_dict(), "steps": 0, "minutes": 0.0, "history": []}, root)


@pytest.mark.slow
def test_fine_tuning_an_inpainting_model_on_one_case_improves_its_held_out_slices(tmp_path, capsys):
    """`medvision train --base INPAINTING-MODEL --datalist` (images only, no labels): 30 steps on the sample CT
    raise the masked PSNR on its held-out slices (the last fifth) above the base's; the new model is installed
    with its parent, figures and the image's hash (not its name); a run that ends below its base is not
    registered; segmentation-only flags are refused."""
    import shutil

    from medvision.ai.package import Registry, user_dir
    from medvision.cli import main

    from .conftest import SAMPLE_CT

    shutil.copytree(_poor_package(tmp_path / "pkgs"), user_dir() / "poor-inpaint")
    datalist = tmp_path / "images.json"
    datalist.write_text(json.dumps({"training": [{"image": str(SAMPLE_CT)}]}))
    args = ["train", "--base", "poor-inpaint", "--datalist", str(datalist), "-o", "poor-tuned", "--steps", "30",
            "--batch-size", "4", "--lr", "1e-3", "--workdir", str(tmp_path / "work"), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    figures = out.split("held-out masked PSNR ")[1]
    final, base = float(figures.split(" dB")[0]), float(figures.split("(base ")[1].split(" dB")[0])
    assert final > base + 0.3, out
    card = Registry().get("poor-tuned").card
    prov = card["provenance"]
    assert prov["parent"] == "poor-inpaint 1.0" and prov["metrics"]["val_masked_psnr"] > prov["metrics"][
        "base_val_masked_psnr"]
    assert card["task"] == "inpainting" and "ct_abdomen" not in json.dumps(card)  # (hashes, not names)
    assert prov["training_data"][0].startswith("image-001 sha256:")
    # the same command with more steps resumes from its checkpoint
    assert main([a if a != "30" else "35" for a in args]) == 0
    assert "resumed at step 30" in capsys.readouterr().out
    # a run that ends below its base: said, not registered
    assert main(["train", "--base", "poor-tuned", "--datalist", str(datalist), "-o", "worse", "--steps", "2",
                 "--lr", "0.5", "--workdir", str(tmp_path / "work2"), "-q"]) == 3
    assert "not registered" in capsys.readouterr().out
    assert "worse" not in {p.id for p in Registry().packages()}
    assert main(["train", "--base", "poor-tuned", "--datalist", str(datalist), "-o", "x", "--epochs", "3"]) == 2
    assert "--epochs" in capsys.readouterr().err


@pytest.mark.slow
def test_the_fine_tune_dialog_trains_an_inpainting_model_on_images_in_another_process(qtbot, window, tmp_path,
                                                                                       screenshot_dir):
    """The Fine-tune dialog offers an inpainting model (not the built-in fill) as a base: epochs, folds and
    from-scratch are off, the curves are L1 and held-out masked PSNR; the run goes in its own process and
    the new model is selected in the dock."""
    import shutil

    from medvision.ai.package import user_dir

    from .conftest import SAMPLE_CT

    shutil.copytree(_poor_package(tmp_path / "pkgs"), user_dir() / "poor-inpaint")
    panel = window.annotating.models
    panel.refresh()
    assert panel.select("poor-inpaint")
    dialog = panel.open_training()
    ids = [dialog.base_combo.itemData(i) for i in range(dialog.base_combo.count())]
    assert "poor-inpaint" in ids and BUILTIN_ID not in ids
    assert dialog.base_combo.currentData() == "poor-inpaint"
    assert dialog.minutes_radio.isChecked() and not dialog.epochs_radio.isEnabled()
    assert not dialog.validation_combo.isEnabled() and not dialog.scratch_check.isEnabled()
    assert "PSNR" in dialog.dice_plot.plotItem.titleLabel.text
    datalist = tmp_path / "images.json"
    datalist.write_text(json.dumps({"training": [{"image": str(SAMPLE_CT)}]}))
    dialog.datalist_edit.setText(str(datalist))
    dialog.datalist_radio.setChecked(True)
    dialog.id_edit.setText("poor-dialog")
    config, _data = dialog.config()
    assert config["task"] == "inpainting" and "from_scratch" not in config
    real = dialog.config
    dialog.config = lambda: ({**real()[0], "steps": 12, "validate_every_s": 0.0}, real()[1])  # (a short run)
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.final is not None, timeout=300_000)
    kind, payload = dialog.final
    assert kind == "done" and payload["inpainting"]["final_psnr"] > payload["inpainting"]["base_psnr"], payload
    assert len(dialog.history) >= 3 and "held-out masked PSNR" in dialog.status.text()
    dialog.grab().save(str(screenshot_dir / "training_dialog_inpainting.png"))
    assert panel.package is not None and panel.package.id == "poor-dialog"
    panel.select("deepbet-t1-brain")
    other = panel.open_training()
    other.base_combo.setCurrentIndex(other.base_combo.findData("deepbet-t1-brain"))
    assert other.epochs_radio.isEnabled() and other.label_table.isVisibleTo(other)
