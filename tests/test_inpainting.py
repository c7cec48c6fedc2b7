"""Inpainting: the holes users make (sizes in mm at any spacing), the generator and discriminator, the
job on a package (exact grid in any storage order, every voxel outside the region bit-identical, the
image's dtype kept), the region's checks, the `medvision inpaint` command and its refusals, a short
training run that writes a package the registry accepts and that learns, and the guards that keep an
inpainting model out of `infer` and the Models dock."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medvision.ai.inpainting.holes import KINDS, equivalent_diameter_mm, random_hole, size_bin
from medvision.ai.inpainting.infer import MAX_SHARE, InpaintError, InpaintOptions, canonical_code, inpaint_job
from medvision.ai.inpainting.metrics import hole_ssim, masked_mae, masked_psnr, texture_ratio, through_plane_ratio
from medvision.ai.inpainting.network import InpaintingUNet, composite, make_discriminator, network_input
from medvision.ai.package import PackageError, Registry
from medvision.core.jobs import run_job
from medvision.core.volume import Volume


def _phantom(shape=(12, 60, 70), spacing=(2.0, 0.8, 0.9), dtype=np.int16) -> Volume:
    """A CT-like phantom: a body ellipse with a brighter disc and some texture."""
    rng = np.random.default_rng(1)
    _, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) / (shape[1] * 0.42)) ** 2 + ((x - shape[2] / 2) / (shape[2] * 0.45)) ** 2 < 1
    array = np.where(body, 40, -1000).astype(np.float32) + rng.normal(0, 8, shape)
    array[((y - 25) ** 2 + (x - 30) ** 2 < 60)] += 200
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    affine[:3, 3] = (-20, -30, 50)
    return Volume(np.rint(array).astype(dtype), affine, "1.2.3", {"modality": "CT"})


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    """A small randomly initialised generator written as a package (the job and the checks do not depend on
    what it learnt)."""
    from medvision.ai.inpainting.train import InpaintTrainConfig, export_package

    torch.manual_seed(0)
    g = InpaintingUNet(context=1, base=4, levels=2, dilations=(2,))
    cfg = InpaintTrainConfig(train=["a"], held_out=["b"], modality="CT", new_id="tiny-inpaint", base=4, levels=2,
                             dilations=(2,))
    root = tmp_path_factory.mktemp("models")
    export_package(cfg, {"generator": g.state_dict(), "steps": 0, "minutes": 0.0, "history": []}, root)
    return Registry([root]).get("tiny-inpaint")


# ---- holes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "label"])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.5, 0.5), (6.5, 0.78, 0.78)])
def test_holes_have_the_size_asked_in_mm_at_any_spacing(kind, spacing):
    shape = (40, 200, 200)
    for seed, size in enumerate((6.0, 20.0, 45.0)):
        rng = np.random.default_rng(seed)
        inside = np.zeros(shape, bool)
        inside[20, 100, 100] = True  # centred in the middle
        mask, got = random_hole(shape, spacing, rng, kind=kind, size_mm=size, inside=inside)
        assert got == kind and mask.any()
        z = int(np.flatnonzero(mask.any(axis=(1, 2)))[len(np.flatnonzero(mask.any(axis=(1, 2)))) // 2])
        extent = max(equivalent_diameter_mm(mask[k], spacing[1:]) for k in range(shape[0]))
        assert 0.45 * size <= extent <= 1.6 * size + 2 * max(spacing[1:]), (kind, spacing, size, extent)
        assert mask[z].any()
        again, _ = random_hole(shape, spacing, np.random.default_rng(seed), kind=kind, size_mm=size, inside=inside)
        assert np.array_equal(again, mask)  # the same seed, the same hole


def test_label_holes_take_a_structure_and_size_bins():
    labels = np.zeros((10, 50, 50), np.uint8)
    labels[3:6, 10:20, 10:20] = 4
    mask, kind = random_hole(labels.shape, (1.0, 1.0, 1.0), np.random.default_rng(0), kind="label", size_mm=20,
                             labels=labels)
    assert kind == "label" and np.array_equal(mask, labels == 4)
    plane = np.zeros((100, 100), bool)
    plane[10:15, 10:14] = True
    assert size_bin(plane, (1.0, 1.0)) == "<10 mm" and size_bin(plane, (3.0, 3.0)) == "10-30 mm"
    assert size_bin(plane, (8.0, 8.0)) == ">30 mm"


# ---- networks and metrics --------------------------------------------------------------------------------
def test_generator_takes_any_size_and_compositing_keeps_the_rest_bit_identical():
    g = InpaintingUNet(context=1, base=4, levels=3, dilations=(2, 4))
    slices = torch.rand(2, 3, 37, 50)
    masks = torch.zeros(2, 3, 37, 50)
    masks[:, :, 10:20, 12:30] = 1
    x, (h, w) = network_input(slices, masks, 8)
    assert x.shape == (2, 6, 40, 56) and (h, w) == (37, 50)
    changed = slices.clone()
    changed[masks > 0] = 7.0
    assert torch.equal(network_input(changed, masks, 8)[0], x)  # nothing of the hole reaches the network
    assert torch.equal(x[:, :3][..., :37, :50][masks == 0], slices[masks == 0])  # the rest as it is
    out = g(x)[..., :h, :w]
    filled = composite(slices[:, 1:2], out, masks[:, 1:2])
    outside = masks[:, 1:2] == 0
    assert torch.equal(filled[outside], slices[:, 1:2][outside]) and not torch.equal(filled, slices[:, 1:2])
    scores = make_discriminator(channels=8)(torch.cat([filled, masks[:, 1:2]], 1))
    assert len(scores) >= 3 and scores[-1].shape[:2] == (2, 1)


def test_the_biharmonic_fill_continues_smooth_surfaces_and_keeps_every_known_pixel():
    from medvision.ai.inpainting.network import biharmonic, push_pull

    y, x = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    surfaces = torch.stack([0.3 * y - 0.2 * x + 5, 0.01 * (x - 30) ** 2 + 0.02 * x * y])[:, None]  # (2, 1, H, W)
    valid = torch.ones_like(surfaces)
    valid[..., 12:36, 20:50] = 0  # a hole 24 x 30 pixels
    valid[1, ..., 40:, :6] = 0  # and one at the edge of the second image
    image = torch.where(valid > 0, surfaces, torch.full_like(surfaces, 1e4))  # what was in the holes is not used
    filled, rough = biharmonic(image, valid), push_pull(image, valid)
    assert torch.equal(filled[valid > 0], surfaces[valid > 0])
    inner = torch.zeros_like(valid, dtype=torch.bool)
    inner[..., 12:36, 20:50] = True
    error, rough_error = (filled - surfaces)[inner].abs().max(), (rough - surfaces)[inner].abs().max()
    assert error < 0.05 and rough_error > 20 * error  # planes and quadrics are biharmonic: continued exactly
    edge, rough_edge = ((f - surfaces)[1, 0, 40:, :6].abs().max() for f in (filled, rough))
    # at the edge, taken as flat beyond it, no worse than push-pull
    assert bool(torch.isfinite(filled).all()) and edge < 1.2 * rough_edge



def test_the_3d_fill_takes_the_slices_above_and_below_weighted_by_the_voxel_size():
    from medvision.ai.inpainting.data import coarse_fill

    spacing = (3.0, 0.8, 1.1)  # (z, y, x) mm
    z, y, x = (torch.arange(n, dtype=torch.float32)[:, None, None] * s for n, s in zip((12, 40, 50), spacing,
                                                                                         strict=True))
    z, y, x = (t.expand(12, 40, 50) for t in (z, y.transpose(0, 1), x.transpose(0, 2)))
    quadric = 0.3 * z - 0.2 * y + 0.01 * (x - 20) ** 2 + 0.02 * z * x  # biharmonic in millimetres
    wave = (z / 3.0) * torch.sin(x / 4.0)  # linear through the planes, a wave in them
    hole = np.zeros((12, 40, 50), bool)
    hole[4:7, 10:34, 12:42] = True  # three slices deep, 19 x 33 mm
    for truth, bound in ((quadric, 0.02), (wave, None)):
        image = np.where(hole, 1e4, truth.numpy()).astype(np.float32)  # what was in the hole is not used
        flat = coarse_fill(image, hole, "biharmonic", spacing)
        deep = coarse_fill(image, hole, "biharmonic_3d", spacing)
        assert np.array_equal(deep[~hole], truth.numpy()[~hole]) and np.array_equal(flat[~hole], deep[~hole])
        error, flat_error = (np.abs(f - truth.numpy())[hole].max() for f in (deep, flat))
        if bound is not None:
            assert error < bound  # continued exactly, in any voxel size
        else:
            assert error < 0.2 * flat_error, (error, flat_error)  # the wave is known above and below the hole


def test_metrics_on_known_cases():
    truth = torch.rand(32, 32)
    mask = torch.zeros(32, 32)
    mask[8:20, 8:20] = 1
    assert math.isinf(masked_psnr(truth, truth, mask)) and masked_mae(truth, truth, mask) == 0
    off = truth.clone()
    off[mask > 0] += 0.1
    assert masked_psnr(off.clamp(0, 1), truth, mask) > 19 and hole_ssim(truth, truth, mask) == pytest.approx(1.0)
    blurred = torch.full_like(truth, 0.5)
    assert texture_ratio(blurred, truth, mask) < 0.05 and texture_ratio(truth, truth, mask) == pytest.approx(1.0)
    stack = torch.rand(4, 16, 16)
    m3 = torch.ones(4, 16, 16)
    assert through_plane_ratio(stack, stack, m3) == pytest.approx(1.0)


# ---- the job -------------------------------------------------------------------------------------------
def _region(volume: Volume) -> np.ndarray:
    mask = np.zeros(volume.shape, bool)
    mask[4:8, 20:34, 25:40] = True
    return mask


def test_the_job_fills_only_the_region_keeps_the_dtype_and_is_the_same_in_any_storage_order(tiny_package):
    volume = _phantom()
    region = _region(volume)
    result = run_job(inpaint_job(tiny_package, volume, region, InpaintOptions(device="cpu")))
    out = result.volume
    assert out.same_grid(volume) and out.array.dtype == volume.array.dtype
    assert np.array_equal(out.array[~region], volume.array[~region])  # bit-identical outside
    assert not np.array_equal(out.array[region], volume.array[region])
    assert np.array_equal(result.difference[~region], np.zeros(int((~region).sum()), np.float32))
    assert np.allclose(result.difference[region], out.array[region].astype(np.float32) - volume.array[region])
    assert out.metadata["derived"]["model"] == "tiny-inpaint" and volume.metadata.get("derived") is None
    # stored with flipped and swapped in-plane axes, or the slice direction reversed: the same fill in patient space
    for code in ("RAS", "PLI", "RPS"):
        moved = volume.reoriented(code)
        moved_region = Volume(region.view(np.uint8), volume.affine, None, {}).reoriented(code).array.astype(bool)
        again = run_job(inpaint_job(tiny_package, moved, moved_region, InpaintOptions(device="cpu"))).volume
        assert again.same_grid(moved), code
        back = again.reoriented(volume.orientation)
        assert np.array_equal(back.array, out.array), code
    assert canonical_code(volume.reoriented("PSL")) == "PIL" and canonical_code(volume.reoriented("LAI")) == "LPS"



def test_a_new_network_gives_its_cards_3d_coarse_fill_in_any_storage_order(tiny_package):
    """The job hands the network the fill its card names, in 3D with the image's own voxel size: a network
    that adds nothing yet (its head starts at zero) returns exactly that fill, stored in any order."""
    from medvision.ai.inpainting.data import coarse_fill, intensity_range

    assert tiny_package.card["input"]["coarse"] == "biharmonic_3d"
    volume = _phantom(dtype=np.float32)
    region = _region(volume)
    got = run_job(inpaint_job(tiny_package, volume, region, InpaintOptions(device="cpu"))).volume.array
    low, high = intensity_range(volume.array, region)
    scaled = (volume.array - low) / (high - low)
    expected = coarse_fill(scaled, region, "biharmonic_3d", volume.spacing[::-1]) * (high - low) + low
    assert np.abs(got - expected)[region].max() < 1e-3 * (high - low)
    flat = coarse_fill(scaled, region, "biharmonic", volume.spacing[::-1]) * (high - low) + low
    assert np.abs(flat - expected)[region].max() > 0.05 * (high - low)  # (3D is not the slices' own fill)
    stored = volume.reoriented("RAI")
    other = run_job(inpaint_job(tiny_package, stored, Volume(region.view(np.uint8), volume.affine, None, {})
                                .reoriented("RAI").array.astype(bool), InpaintOptions(device="cpu"))).volume
    assert np.allclose(other.reoriented(volume.orientation).array, got, atol=1e-3 * (high - low))


def test_the_adversarial_loss_counts_only_the_patches_on_the_hole():
    from medvision.ai.inpainting.train import hinge

    hole_cells = torch.zeros(1, 1, 4, 4)
    hole_cells[..., 1, 2] = 1
    scores = torch.full((1, 1, 4, 4), -5.0)  # elsewhere: anything (the composite is the real image there)
    scores[..., 1, 2] = 2.0
    assert float(hinge(scores, hole_cells, real=True)) == 0.0  # sure it is real on the hole
    assert float(hinge(-scores, hole_cells, real=False)) == 0.0  # and sure the fill is fake
    assert float(hinge(torch.zeros(1, 1, 4, 4), hole_cells, real=True)) == 1.0  # blind: 1 + 1 for the pair
    assert float(hinge(scores, hole_cells, real=True, for_discriminator=False)) == -2.0  # the generator's


def test_float_images_and_4d_series(tiny_package):
    volume = _phantom(dtype=np.int16)
    flt = Volume(volume.array.astype(np.float32) * 0.5, volume.affine, None, {"modality": "CT"})
    region = _region(volume)
    out = run_job(inpaint_job(tiny_package, flt, region, InpaintOptions(device="cpu"))).volume
    assert out.array.dtype == np.float32 and np.array_equal(out.array[~region], flt.array[~region])
    four = Volume(np.stack([volume.array, volume.array + 5]), volume.affine, None, {"modality": "CT"})
    result = run_job(inpaint_job(tiny_package, four, region, InpaintOptions(device="cpu", frame=1)))
    assert result.volume.shape == volume.shape and "frame 2 of 2" in " ".join(result.notes)
    assert np.array_equal(result.volume.array[~region], four.array[1][~region])


def test_bad_regions_and_models_are_refused_in_one_sentence(tiny_package):
    volume = _phantom()
    with pytest.raises(InpaintError, match="empty"):
        run_job(inpaint_job(tiny_package, volume, np.zeros(volume.shape, bool)))
    big = np.zeros(volume.shape, bool)
    big[:, :, : int(volume.shape[2] * (MAX_SHARE + 0.1))] = True
    with pytest.raises(InpaintError, match="covers"):
        run_job(inpaint_job(tiny_package, volume, big))
    with pytest.raises(InpaintError, match="grid"):
        run_job(inpaint_job(tiny_package, volume, np.ones((3, 3, 3), bool)))
    mr = Volume(volume.array, volume.affine, None, {"modality": "MR"})
    result = run_job(inpaint_job(tiny_package, mr, _region(volume), InpaintOptions(device="cpu")))
    assert any("made for CT" in n for n in result.notes)  # another modality: a warning
    # a segmentation model is not an inpainting one, and the other way round
    seg = Registry().get("deepbet-t1-brain")
    with pytest.raises(PackageError, match="not an inpainting"):
        run_job(inpaint_job(seg, volume, _region(volume)))
    from medvision.ai.engine import infer_job

    with pytest.raises(PackageError, match="inpainting model"):
        run_job(infer_job(tiny_package, volume))


def test_the_inpaint_command(tiny_package, tmp_path, capsys):
    from medvision.cli import main
    from medvision.core.labels import LabelMap
    from medvision.io import load, save
    from medvision.io.labels import save_labels

    _installed(tiny_package)
    volume = _phantom()
    image = save(volume, tmp_path / "ct.nii.gz")
    region = _region(volume)
    mask = save_labels(LabelMap(region.astype(np.uint8), volume.affine), tmp_path / "mask.nii.gz")
    out = tmp_path / "filled.nii.gz"
    assert main(["inpaint", str(image), "--model", "tiny-inpaint", "--mask", str(mask), "-o", str(out), "-q"]) == 0
    filled = load(out)
    assert filled.same_grid(volume) and np.array_equal(filled.array[~region], volume.array[~region])
    sidecar = json.loads((tmp_path / "filled.json").read_text())
    assert sidecar["ImageType"] == ["DERIVED", "SECONDARY"] and sidecar["Synthetic"] is True
    assert "AI inpainted (tiny-inpaint 1.0)" in sidecar["DerivationDescription"]
    assert filled.metadata["synthetic"] and filled.metadata["derivation"].startswith("AI inpainted")  # read back
    assert not load(image).metadata.get("synthetic")
    amap = tmp_path / "anomaly.nii.gz"
    assert main(["inpaint", str(image), "--model", "tiny-inpaint", "--anomaly", str(amap), "--hole-mm", "8",
                 "-q"]) == 0
    anomaly = load(amap)
    assert anomaly.same_grid(volume) and anomaly.metadata["synthetic"] and anomaly.array.max() > 0
    assert main(["inpaint", str(image), "--model", "tiny-inpaint", "-q"]) == 2
    assert "--mask" in capsys.readouterr().err
    capsys.readouterr()
    # refusals: an empty mask, an output over the input, a format it cannot write, a segmentation model
    empty = save_labels(LabelMap(np.zeros(volume.shape, np.uint8), volume.affine), tmp_path / "empty.nii.gz")
    assert main(["inpaint", str(image), "--model", "tiny-inpaint", "--mask", str(empty), "-o", str(out)]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["inpaint", str(image), "--model", "tiny-inpaint", "--mask", str(mask), "-o", str(image)]) == 2
    assert "never over its original" in capsys.readouterr().err
    assert main(["inpaint", str(image), "--model", "tiny-inpaint", "--mask", str(mask), "-o",
                 str(tmp_path / "x.dcm")]) == 2
    assert ".nii.gz" in capsys.readouterr().err
    assert main(["inpaint", str(image), "--model", "deepbet-t1-brain", "--mask", str(mask), "-o", str(out)]) == 2
    assert "segmentation model" in capsys.readouterr().err


def _installed(package) -> None:
    """The test's package among the user's models (this test's own user folder)."""
    from medvision.ai.package import user_dir

    shutil.copytree(package.folder, user_dir() / package.folder.name)


def test_the_window_fills_a_painted_region_shows_it_in_place_and_accepts_it_as_a_new_series(
        qtbot, ct, tiny_package, screenshot_dir):
    """Models dock -> an inpainting model: its own part replaces Run and Proposal; the painted label's voxels
    are filled as a job; the fill is drawn in place (O shows the original), a difference map on demand; Accept
    writes a derived DICOM series that opens marked SYNTHETIC (views and browser), the original untouched;
    the Compare dialog does not offer the inpainting model."""
    from PySide6.QtWidgets import QApplication

    from medvision.ui.panels.inpaint_box import DIFFERENCE, FILLED

    from .qtutil import click, view_point

    _installed(tiny_package)
    window = ct
    panel, ann = window.annotating.models, window.annotating.annotation
    window.annotating.models_dock.raise_()
    panel.refresh()
    assert panel.select("tiny-inpaint")
    assert panel.inpaint_box.isVisibleTo(panel) and not panel.run_box.isVisibleTo(panel)
    assert not panel.inpaint_box.run_button.isEnabled()  # nothing painted yet
    ann.add_label("to fill")
    window.annotating.panel.set_tool("paint")
    axial = window.views.slice_views["axial"]
    click(axial.viewport(), view_point(axial, [300, 250, int(window.viewer.cursor[2])]))
    region = ann.labels.array == ann.active
    assert region.any()
    qtbot.waitUntil(panel.inpaint_box.run_button.isEnabled, timeout=5000)  # (counted once the edits pause)
    original = window.viewer.volume
    box = panel.inpaint_box
    assert box.run()
    qtbot.waitUntil(lambda: box.result is not None, timeout=60_000)
    assert window.viewer.layer(FILLED) is not None and "filled" in box.status.text()
    assert np.array_equal(box.result.volume.array[~region], original.array[~region])
    box.difference_check.setChecked(True)
    assert window.viewer.layer(DIFFERENCE) is not None
    box.original_check.setChecked(True)
    assert window.viewer.layer(FILLED) is None
    box.original_check.setChecked(False)
    for _ in range(5):
        QApplication.processEvents()
    window.save_screenshot(str(screenshot_dir / "inpaint_proposal.png"))
    ids = [panel.packages[i].id for i in range(len(panel.packages))]
    assert "tiny-inpaint" in ids
    from medvision.ui.dialogs.compare import CompareDialog

    compare = CompareDialog(panel, window)
    offered = {compare.combos[0].itemData(i) for i in range(compare.combos[0].count())}
    assert "tiny-inpaint" not in offered
    compare.close()
    assert box.accept()
    qtbot.waitUntil(lambda: window.viewer.volume is not None and window.viewer.volume is not original
                    and not window.viewer.volume.metadata.get("partial"), timeout=60_000)
    opened = window.viewer.volume
    assert opened.metadata.get("derivation", "").startswith("AI inpainted (tiny-inpaint 1.0)")
    assert any(line.startswith("SYNTHETIC") for line in axial.info_lines())
    assert opened.same_grid(original) and np.array_equal(opened.array[~region], original.array[~region])
    rows = window.browser.tree.model()
    texts = []

    def walk(parent):
        for r in range(rows.rowCount(parent)):
            index = rows.index(r, 0, parent)
            texts.append(index.data())
            walk(index)

    from PySide6.QtCore import QModelIndex

    walk(QModelIndex())
    assert any((t or "").startswith("[SYNTHETIC] #2001 AI inpainted (tiny-inpaint 1.0)") for t in texts), texts
    assert "written as a new series" in box.status.text()
    for _ in range(5):
        QApplication.processEvents()
    window.save_screenshot(str(screenshot_dir / "inpaint_accepted.png"))


@pytest.mark.slow
def test_a_short_training_run_learns_and_writes_a_package_the_registry_accepts(tmp_path, shared_data):
    """A few dozen steps of training on one real CT (checkpointed and resumed; the adversarial term in the
    last 40 %) fill held-out holes better than the network started; the package it writes loads and fills."""
    from medvision.ai.inpainting.train import InpaintTrainConfig, export_package, train

    cfg = InpaintTrainConfig(train=["volumes/ct_aorta_1.5mm_crop.nii.gz"],
                             held_out=["volumes/ct_abdomen_3mm_crop.nii.gz"], modality="CT", new_id="short-ct",
                             data_root=str(shared_data), workdir=str(tmp_path / "work"), minutes=5, max_steps=10,
                             batch=4, crop=48, base=8, levels=2, dilations=(2, 4), recon_share=0.6,
                             validate_every_s=600, coarse="push_pull", lr=1e-3)  # (the crude fill: room to learn)
    first = train(cfg, say=lambda _m: None)
    start = first["history"][0]
    assert start["val_masked_psnr"] == start["coarse_fill_masked_psnr"]  # a new network starts as the coarse fill
    assert (tmp_path / "work" / "inpaint-checkpoint.pt").is_file()
    cfg.max_steps = 30
    result = train(cfg, say=lambda _m: None)  # resumes where the first stopped
    psnr = [h["val_masked_psnr"] for h in result["history"]]
    # (seeded: the same steps on any machine; a few dozen steps of this small network add little, but not nothing)
    assert result["steps"] == 30 and first["steps"] == 10 and psnr[-1] > psnr[0], psnr
    folder = export_package(cfg, result, tmp_path / "models")
    pkg = Registry([folder.parent]).get("short-ct")
    assert pkg.card["task"] == "inpainting" and pkg.card["provenance"]["steps"] == result["steps"]
    volume = _phantom()
    out = run_job(inpaint_job(pkg, volume, _region(volume), InpaintOptions(device="cpu"))).volume
    assert np.array_equal(out.array[~_region(volume)], volume.array[~_region(volume)])


def test_a_dicom_series_inpainted_becomes_a_derived_series_that_dciodvfy_accepts(tiny_package, tmp_path):
    """The sample CT (JPEG 2000) through `medvision inpaint -o FOLDER`: a new series (new UIDs, DERIVED\\SECONDARY,
    the derivation said, each slice pointing at its source), uncompressed, every voxel outside the region the
    source's, valid for dciodvfy (where installed); the source folder untouched."""
    import shutil as sh
    import subprocess

    import pydicom

    from medvision.cli import main
    from medvision.core.labels import LabelMap
    from medvision.io import load
    from medvision.io.labels import save_labels

    from .conftest import SAMPLE_CT

    _installed(tiny_package)
    source = load(SAMPLE_CT)
    region = np.zeros(source.shape, bool)
    region[6:12, 200:260, 230:300] = True
    mask = save_labels(LabelMap(region.astype(np.uint8), source.affine), tmp_path / "region.nii.gz")
    before = {p.name: p.stat().st_mtime_ns for p in Path(SAMPLE_CT).iterdir()}
    out = tmp_path / "derived"
    assert main(["inpaint", str(SAMPLE_CT), "--model", "tiny-inpaint", "--mask", str(mask), "-o", str(out), "-q"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in Path(SAMPLE_CT).iterdir()} == before
    derived = load(out)
    assert derived.same_grid(source) and np.array_equal(derived.array[~region], source.array[~region])
    assert not np.array_equal(derived.array[region], source.array[region])
    files = sorted(out.glob("*.dcm"))
    assert len(files) == source.shape[0]
    source_uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                   for p in Path(SAMPLE_CT).iterdir() if p.is_file()}
    series = set()
    for path in files:
        ds = pydicom.dcmread(path)
        series.add(str(ds.SeriesInstanceUID))
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "tiny-inpaint" in ds.DerivationDescription
        assert ds.SeriesDescription == "AI inpainted (tiny-inpaint 1.0)"
        assert str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID) in source_uids
        assert str(ds.SOPInstanceUID) not in source_uids and not ds.file_meta.TransferSyntaxUID.is_compressed
    assert len(series) == 1 and series.isdisjoint({str(source.metadata.get("series_uid"))})
    if sh.which("dciodvfy"):
        for path in files[:3]:
            report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
            assert not [ln for ln in report.splitlines() if ln.startswith("Error")], report


def test_derived_values_that_are_not_whole_numbers_are_scaled_to_16_bits():
    from medvision.io.derived import stored_values

    values = np.array([[[0.25, 1000.5], [-3.75, 12.0]]], np.float32)
    stored, slope, intercept, signed = stored_values(values)
    assert stored.dtype == np.uint16 and not signed
    assert np.allclose(stored * slope + intercept, values, atol=slope)
    exact, s1, i1, signed1 = stored_values(np.array([[[-1024, 3000]]], np.int16))
    assert exact.dtype == np.int16 and (s1, i1, signed1) == (1.0, 0.0, True)


def test_the_anomaly_map_covers_the_region_once_and_is_zero_outside(tiny_package):
    from medvision.ai.inpainting.infer import anomaly_job

    volume = _phantom()
    region = np.zeros(volume.shape, bool)
    region[3:9, 15:45, 20:50] = True
    amap, _notes = run_job(anomaly_job(tiny_package, volume, region, hole_mm=6.0,
                                       options=InpaintOptions(device="cpu")))
    assert amap.shape == volume.shape and amap.dtype == np.float32
    assert not amap[~region].any() and (amap[region] > 0).mean() > 0.9  # every voxel filled once, from around it
    with pytest.raises(InpaintError):
        run_job(anomaly_job(tiny_package, volume, np.zeros(volume.shape, bool)))
