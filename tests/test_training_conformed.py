"""Fine-tuning from a base that sees images as brainchop does (``input.conform``): the training data
go through the engine's steps (conform to 256^3 1 mm LIA uint8, normalise the cube, crop), the
labels are carried onto the conformed grid where the image goes, the crop is kept only when it
holds every labelled voxel, and the new package runs as its base runs, its labels on the image's
own grid. A tiny MeshNet package with brainchop-subcortical-18's card stands in for the base."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medvision.ai.networks import brainchop_pipeline as bp
from medvision.ai.package import Registry, shipped_dir, user_dir, write_card
from medvision.ai.training.config import TrainConfig
from medvision.ai.training.conformed import conform_labels, prepare_conformed
from medvision.ai.training.data import TrainingData, TrainingDataError
from medvision.ai.training.job import train_job
from medvision.core.jobs import run_job
from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume
from medvision.io import save
from medvision.io.labels import save_labels

SHAPE = (36, 70, 60)  # (z, y, x)


def affine() -> np.ndarray:
    a = np.diag([-1.1, 0.9, 2.0, 1.0])  # x to the right, y posterior, z superior, anisotropic: RPS
    a[:3, 3] = [25.0, -30.0, -20.0]
    return a


def head(seed: int = 0, dark_spot: bool = False):
    """An MR-like head: an ellipsoid (grey), a bright ball inside it (the structure to learn) and,
    with ``dark_spot``, a dim labelled spot outside the ellipsoid's box; image and labels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE)
    brain = ((z - 18) / 12) ** 2 + ((y - 35) / 22) ** 2 + ((x - 30) / 20) ** 2 < 1
    ball = ((z - 20) * 2.0) ** 2 + ((y - 30) * 0.9) ** 2 + ((x - 26) * 1.1) ** 2 < 64
    image = rng.normal(10, 3, SHAPE) + 300 * brain + 400 * ball
    labels = ball.astype(np.uint8)
    if dark_spot:
        spot = (abs(z - 18) < 3) & (abs(y - 65) < 3) & (abs(x - 30) < 3)
        image[spot] += 40
        labels[spot] = 1
    return image.astype(np.int16), labels


def write_case(folder, image, labels, name="h1") -> dict:
    save(Volume(image, affine(), None, {"modality": "MR"}), folder / f"{name}.nii.gz")
    table = LabelTable()
    table.add("ball", value=1)
    save_labels(LabelMap(labels, affine(), table), folder / f"{name}_seg.nii.gz")
    return {"image": str(folder / f"{name}.nii.gz"), "label": str(folder / f"{name}_seg.nii.gz"), "case": name}


def tiny_brainchop_base(model_id: str = "tiny-chop") -> str:
    """A small MeshNet package in the user's models with brainchop-subcortical-18's run settings."""
    from safetensors.torch import save_file

    from medvision.ai.architectures import build
    from medvision.ai.package import sha256_of

    card = json.loads((shipped_dir() / "brainchop-subcortical-18" / "model.json").read_text())
    card["id"], card["version"] = model_id, "1"
    card["architecture"]["args"].update(channels=6, dilations=[1, 2, 4, 2, 1], out_channels=4)
    card.pop("plausibility", None)
    folder = user_dir() / f"{model_id}-1"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    save_file(build(card["architecture"]).state_dict(), str(folder / "weights.safetensors"))
    card["weights"]["sha256"] = sha256_of(folder / "weights.safetensors")
    card.pop("license_file", None)
    write_card(folder, card)
    return model_id


@pytest.mark.slow
def test_labels_land_on_the_conformed_grid_where_the_image_goes():
    image, labels = head()
    volume = Volume(image, affine(), None, {})
    conformed = bp.conform(volume)
    cube = conform_labels(labels, volume.affine, conformed, 1)
    bright = conformed.cube > 200  # the ball: the brightest voxels, mapped to near 255
    assert 2 * np.count_nonzero(bright & (cube == 1)) / (np.count_nonzero(bright) + np.count_nonzero(cube)) > 0.9
    # 1 mm voxels: the count is the ball's volume in mm^3
    ml = np.count_nonzero(labels) * abs(np.linalg.det(affine()[:3, :3]))
    assert np.count_nonzero(cube) == pytest.approx(ml, rel=0.1)
    # another storage order of the same image: the same labels on the cube
    stored = volume.reoriented("ASL")
    moved = LabelMap(labels, affine(), LabelTable()).array
    other = conform_labels(Volume(moved, affine(), None, {}).reoriented("ASL").array, stored.affine,
                           bp.conform(stored), 1)
    assert np.count_nonzero(other != cube) <= 0.01 * np.count_nonzero(cube)


@pytest.mark.slow
def test_the_crop_is_widened_when_it_would_cut_the_labels(tmp_path):
    base = Registry().get(tiny_brainchop_base())
    image, labels = head()
    data = TrainingData.from_datalist({"training": [write_case(tmp_path, image, labels)]})
    kept = run_job(prepare_conformed(data, base))
    assert kept.crop == {"threshold": 0.2, "padding": 0} and "holds every labelled voxel" in kept.notes[0]
    x, y, _ = kept.arrays["h1"]
    assert x.dtype == torch.float32 and x.shape == y.shape and float(x.max()) == 1.0
    assert int(y.sum()) == pytest.approx(np.count_nonzero(labels) * 1.1 * 0.9 * 2.0, rel=0.1)

    image, labels = head(dark_spot=True)  # a labelled spot darker than a fifth of the maximum, outside the head
    data = TrainingData.from_datalist({"training": [write_case(tmp_path, image, labels, "h2")]})
    widened = run_job(prepare_conformed(data, base))
    assert widened.crop["threshold"] == 0.0 and "would cut the labels (h2:" in widened.notes[0]
    assert widened.arrays["h2"][0].numel() > kept.arrays["h1"][0].numel()
    assert int(widened.arrays["h2"][1].sum()) == pytest.approx(np.count_nonzero(labels) * 1.98, rel=0.1)


def test_a_conformed_base_refuses_another_voxel_size(tmp_path):
    tiny_brainchop_base()
    image, labels = head()
    data = TrainingData.from_datalist({"training": [write_case(tmp_path, image, labels)]})
    config = TrainConfig(base="tiny-chop", new_id="x", epochs=1, device="cpu", spacing_mm=0.75,
                         workdir=str(tmp_path / "w"))
    with pytest.raises(ValueError, match="conformed to 1 mm"):
        run_job(train_job(config, data))


def test_an_image_the_pipeline_cannot_conform_is_refused_naming_the_case(tmp_path):
    base = Registry().get(tiny_brainchop_base())
    _, labels = head()
    data = TrainingData.from_datalist({"training": [write_case(tmp_path, np.zeros(SHAPE, np.int16), labels, "flat")]})
    with pytest.raises(TrainingDataError, match="flat: the image is constant"):
        run_job(prepare_conformed(data, base))


@pytest.mark.slow
def test_fine_tuned_from_a_brainchop_base_runs_as_its_base_and_lands_on_the_image_grid(tmp_path):
    from medvision.ai.engine import InferenceOptions, infer_job

    base_id = tiny_brainchop_base()
    image, labels = head()
    data = TrainingData.from_datalist({"training": [write_case(tmp_path, image, labels)]})
    config = TrainConfig(base=base_id, new_id="ball-chop", epochs=3, patches_per_epoch=16, patch_size=(32, 32, 32),
                         device="cpu", lr=1e-2, warmup_epochs=0, patience=0, head_init="prior", threads=2,
                         workdir=str(tmp_path / "w"))
    result = run_job(train_job(config, data))
    assert any("conformed to 1 mm LIA" in n for n in result.notes)
    assert "split by region" in result.split_description and result.best_val_dice is not None
    card = result.package_folder and Registry().get("ball-chop").card
    base = Registry().get(base_id).card
    assert card["inference"] == {"mode": "brainchop"} and card["postprocessing"] == {}
    assert card["input"]["conform"] == base["input"]["conform"]
    assert card["input"]["normalization"] == base["input"]["normalization"]
    assert card["input"]["crop"] == {"threshold": 0.2, "padding": 0}
    assert [la["name"] for la in card["labels"]] == ["ball"] and card["architecture"]["args"]["out_channels"] == 2
    assert card["provenance"]["parent_id"] == base_id

    volume = data.cases[0].volume
    out = run_job(infer_job(Registry().get("ball-chop"), volume, InferenceOptions(device="cpu")))
    assert out.labels.shape == volume.shape and np.allclose(out.labels.affine, volume.affine)
    found, truth = out.labels.array == 1, labels == 1
    dice = 2 * np.count_nonzero(found & truth) / (found.sum() + truth.sum())
    assert dice > 0.6, dice  # (0.80 measured: a few iterations on a network of 6 channels)
    centre = [np.mean(np.nonzero(m), axis=1) for m in (found, truth)]  # (z, y, x) voxels: 2, 0.9, 1.1 mm
    assert np.all(np.abs(centre[0] - centre[1]) * [2.0, 0.9, 1.1] < 2.0)
