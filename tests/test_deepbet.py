"""deepbet brain extraction: the shipped package, the eager network against the TorchScript
originals, the pipeline against deepbet's own code, and a plausible brain on the MNI template.

deepbet's own code is compared when it is importable: ``pip install deepbet==1.0.2``, or an
unpacked deepbet wheel named by ``MEDVISION_DEEPBET_SRC`` (the folder holding ``deepbet/``) plus
its dependencies nibabel, fill_voids, connected-components-3d and pandas.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from medvision.ai.networks import ARCHITECTURES, LinkNet3D
from medvision.ai.networks.deepbet_pipeline import NoBrainFoundError, box_with_margin, brain_mask
from medvision.core.volume import Volume
from medvision.io import load

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "models" / "deepbet-t1-brain"
IMAGES = {"mni": ("volumes", "mni152_t1_1mm.nii.gz"), "mricrop": ("labeled", "MRIcrop-orig.gipl.gz")}
CARD_KEYS = {
    "format", "format_version", "id", "version", "name", "task", "modality", "sequence", "body_part", "dims",
    "description", "architecture", "weights", "localizer", "input", "output", "postprocessing", "inference",
    "labels", "plausibility", "license", "license_file", "attribution", "provenance",
}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _card() -> dict:
    return json.loads((PACKAGE / "model.json").read_text())


@cache
def _eager_networks() -> tuple[nn.Module, nn.Module]:
    """Segmenter and localizer as medvision ships them: the card's architecture + safetensors."""
    card = _card()
    nets = []
    for spec in (card, card["localizer"]):
        arch = spec["architecture"]
        net = ARCHITECTURES[arch["name"]](**arch["args"])
        net.load_state_dict(load_file(PACKAGE / spec["weights"]["file"]), strict=True)
        nets.append(net.eval())
    return nets[0], nets[1]


@cache
def _torchscript_networks(weights: Path) -> tuple[nn.Module, nn.Module]:
    paths = [weights / "deepbet-1.0.2-model.pt", weights / "deepbet-1.0.2-bbox_model.pt"]
    if not all(p.is_file() for p in paths):
        pytest.skip("deepbet's TorchScript files are not in ../shared/data/weights")
    seg, loc = (torch.jit.load(str(p), map_location="cpu").eval() for p in paths)
    return seg, loc


@cache
def _volume(data: Path, image: str) -> Volume:
    return load(data.joinpath(*IMAGES[image]))


@cache
def _pipeline(data: Path, image: str, impl: str) -> np.ndarray:
    nets = _eager_networks() if impl == "eager" else _torchscript_networks(data / "weights")
    start = time.perf_counter()
    mask = brain_mask(_volume(data, image), *nets, device="cpu")
    print(f"\n[deepbet] {image}: {impl} pipeline {time.perf_counter() - start:.2f} s on CPU, {mask.sum()} voxels")
    return mask


# ---- the package -------------------------------------------------------------------------------
def test_card_hashes_match_and_weights_load_strictly():
    card = _card()
    assert set(card) == CARD_KEYS
    assert (card["format"], card["format_version"], card["id"]) == ("medvision-model", 1, "deepbet-t1-brain")
    assert card["license"] == "MIT" and "Fisch" in card["attribution"]
    for spec in (card, card["localizer"]):
        path = PACKAGE / spec["weights"]["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == spec["weights"]["sha256"], path
        net = ARCHITECTURES[spec["architecture"]["name"]](**spec["architecture"]["args"])
        assert isinstance(net, LinkNet3D)
        net.load_state_dict(load_file(path), strict=True)
    assert (PACKAGE / card["license_file"]).read_text().startswith("MIT License")
    assert "deepbet" in (PACKAGE / "README.md").read_text()


def test_license_is_deepbets_verbatim(shared_data):
    original = shared_data / "weights" / "deepbet-LICENSE"
    if not original.is_file():
        pytest.skip("deepbet-LICENSE is not in ../shared/data/weights")
    assert (PACKAGE / "LICENSE").read_bytes() == original.read_bytes()


# ---- eager vs TorchScript ----------------------------------------------------------------------
def test_eager_networks_equal_torchscript(shared_data):
    x = torch.randn((1, 1, 64, 64, 64), generator=torch.Generator().manual_seed(1))
    for eager, original in zip(_eager_networks(), _torchscript_networks(shared_data / "weights"), strict=True):
        with torch.no_grad():
            diff = (eager(x) - original(x)).abs().max().item()
        assert diff < 1e-4


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_pipeline_eager_equals_torchscript(shared_data, image):
    eager = _pipeline(shared_data, image, "eager")
    original = _pipeline(shared_data, image, "torchscript")
    assert eager.shape == _volume(shared_data, image).shape and eager.dtype == bool
    dice = _dice(eager, original)
    differ = np.count_nonzero(eager ^ original)
    print(f"[deepbet] {image}: Dice eager vs TorchScript {dice:.6f}, {differ} voxels differ")
    assert dice >= 0.99


# ---- against deepbet's own code ----------------------------------------------------------------
def _deepbet_brain_extraction():
    src = os.environ.get("MEDVISION_DEEPBET_SRC")
    if src and src not in sys.path:
        sys.path.insert(0, src)
    try:
        from deepbet.bet import BrainExtraction
    except ImportError as exc:
        pytest.skip(f"deepbet is not importable ({exc}): pip install deepbet==1.0.2")
    return BrainExtraction


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_pipeline_matches_deepbet(shared_data, image):
    BrainExtraction = _deepbet_brain_extraction()
    import nibabel as nib

    weights = shared_data / "weights"
    _torchscript_networks(weights)  # skips when the files are absent
    volume = _volume(shared_data, image)
    # the same voxels for both: a NIfTI image made from the Volume (array [x, y, z], RAS affine)
    img = nib.Nifti1Image(np.asarray(volume.array.transpose(2, 1, 0)), np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine)
    bet = BrainExtraction(
        no_gpu=True, model_path=str(weights / "deepbet-1.0.2-model.pt"),
        bbox_model_path=str(weights / "deepbet-1.0.2-bbox_model.pt"),
    )
    start = time.perf_counter()
    _, mask_img, _ = bet.run(img)
    print(f"\n[deepbet] {image}: deepbet's own BrainExtraction {time.perf_counter() - start:.2f} s on CPU")
    theirs = np.asarray(mask_img.dataobj).transpose(2, 1, 0).astype(bool)
    ours = _pipeline(shared_data, image, "eager")
    dice = _dice(ours, theirs)
    print(f"[deepbet] {image}: Dice medvision vs deepbet {dice:.6f}, {np.count_nonzero(ours ^ theirs)} voxels differ")
    assert dice >= 0.99


# ---- the result looks like a brain -------------------------------------------------------------
def test_mni_brain_is_plausible(shared_data):
    volume = _volume(shared_data, "mni")
    mask = _pipeline(shared_data, "mni", "eager")
    ml = np.count_nonzero(mask) * float(np.prod(volume.spacing)) / 1000.0
    # grey + white matter of this template alone are ~1680 mL: the MNI brain is larger than an average adult's
    gm = load(shared_data / "volumes" / "mni152_gm_prob_1mm.nii.gz").array.astype(np.float64)
    wm = load(shared_data / "volumes" / "mni152_wm_prob_1mm.nii.gz").array.astype(np.float64)
    tissue = (gm + wm) / 255.0
    tissue_ml = tissue.sum() * float(np.prod(volume.spacing)) / 1000.0
    print(f"\n[deepbet] MNI brain mask {ml:.0f} mL, GM+WM {tissue_ml:.0f} mL, "
          f"{tissue[mask].sum() / tissue.sum():.4f} of GM+WM inside")
    assert 1500 <= ml <= 2200
    assert ml <= 1.3 * tissue_ml
    assert tissue[mask].sum() >= 0.99 * tissue.sum()
    z, y, x = np.nonzero(mask)
    centroid = volume.index_to_world([x.mean(), y.mean(), z.mean()])
    tz, ty, tx = np.nonzero(tissue > 0.5)
    tissue_centroid = volume.index_to_world([tx.mean(), ty.mean(), tz.mean()])
    print(f"[deepbet] MNI mask centroid (LPS mm) {np.round(centroid, 1)}, "
          f"GM+WM centroid {np.round(tissue_centroid, 1)}")
    assert np.linalg.norm(centroid - tissue_centroid) < 5.0
    assert abs(centroid[0]) < 3.0  # on the midline


# ---- the pipeline's geometry, without the networks ---------------------------------------------
class _Bright(nn.Module):
    """A stand-in network: 'brain' where the normalised input is above its mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = (x > x.mean()).float()
        return torch.cat([1 - p, p], dim=1)


@pytest.mark.parametrize("axes", ["LPS", "SAR", "IRP"])
def test_mask_comes_back_on_the_volumes_own_grid(axes):
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:40, :48, :56]
    ball = (z - 18) ** 2 + (y - 26) ** 2 + (x - 22) ** 2 <= 12**2
    volume = Volume((ball * 200 + rng.integers(0, 20, ball.shape)).astype(np.int16), np.diag([0.9, 1.1, 1.3, 1.0]))
    volume = volume.reoriented(axes)  # the same image on a permuted/flipped grid
    truth = Volume(ball.astype(np.uint8), np.diag([0.9, 1.1, 1.3, 1.0])).reoriented(axes).array.astype(bool)
    mask = brain_mask(volume, _Bright(), _Bright())
    assert mask.shape == volume.shape and mask.dtype == bool
    assert _dice(mask, truth) > 0.98


def test_box_with_margin_follows_deepbet():
    fg = np.zeros((128, 128, 128), bool)
    fg[30:90, 20:100, 40:80] = True
    # centre 60 * 2 = 120, size 60 * 2 * 1.2 = 144 -> 48..192; axis 1: 120, 192 -> 24..216; axis 2: 120, 96 -> 72..168
    assert box_with_margin(fg, (256, 256, 256)) == (slice(48, 192), slice(24, 216), slice(72, 168))
    with pytest.raises(NoBrainFoundError):
        box_with_margin(np.zeros((8, 8, 8), bool), (16, 16, 16))


# ---- the engine and `medvision infer` agree with deepbet's pipeline -----------------------------
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_engine_matches_the_deepbet_pipeline(shared_data, image):
    from medvision.ai.engine import InferenceOptions, infer_job
    from medvision.ai.package import Registry
    from medvision.core.jobs import run_job

    package = Registry().get("deepbet-t1-brain")
    volume = _volume(shared_data, image)
    result = run_job(infer_job(package, volume, InferenceOptions(device="cpu")))
    assert result.labels.shape == volume.shape and np.allclose(result.labels.affine, volume.affine)
    ours = result.labels.array == 1
    dice = _dice(ours, _pipeline(shared_data, image, "eager"))
    print(f"\n[deepbet] {image}: engine {result.seconds['total']:.2f} s, Dice vs deepbet's pipeline {dice:.6f}")
    assert dice >= 0.99


@pytest.mark.slow
def test_medvision_infer_command_on_mni(shared_data, tmp_path, capsys):
    from medvision.io.labels import load_labels

    from .cliutil import run_cli

    out = tmp_path / "brain.nii.gz"
    proc = run_cli(capsys, "infer", "--model", "deepbet-t1-brain", shared_data / "volumes" / "mni152_t1_1mm.nii.gz",
                   "-o", out, "--device", "cpu", "--uncertainty", tmp_path / "u.nii.gz")
    assert proc.returncode == 0, proc.stderr
    assert "deepbet-t1-brain on cpu: brain" in proc.stdout and " mL" in proc.stdout
    volume = _volume(shared_data, "mni")
    labels = load_labels(out, reference=volume)
    assert labels.table[1].name == "brain" and labels.placement in ("as stored", "same grid", "reoriented")
    assert _dice(labels.array == 1, _pipeline(shared_data, "mni", "eager")) >= 0.99
    assert load(tmp_path / "u.nii.gz").shape == volume.shape
