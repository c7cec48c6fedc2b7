"""A sweep that would catch an orientation error: the same real T1 stored in each of the 48 axis-aligned
orders (every permutation of the index axes with every flip), as NIfTI and as DICOM series, and
acquired obliquely, must give the same labels in patient space.

Most orders run reduced networks that see direction (a convolution that moves the image two voxels
along the network's first axis and one along its second): any storage order handled differently by the
pipeline moves the result elsewhere in the patient. They run through the real cards' pipelines:
deepbet's (localizer, box, resize to 256^3, threshold, largest component, holes) and a fine-tuned
model's (resampled to its spacing, sliding windows), and brainchop's (conformed to 256^3 1 mm LIA,
cropped, a pre-model first for the 104-class card). The full deepbet model runs on a few orders (and
tests/test_brainchop.py runs a full brainchop model on a few)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from medvision.ai.engine import InferenceOptions, infer_job
from medvision.ai.package import ModelPackage, sha256_of, shipped_dir, write_card
from medvision.core.jobs import run_job
from medvision.core.volume import Volume

ORDERS = [(perm, flips) for perm in itertools.permutations(range(3)) for flips in itertools.product((0, 1), repeat=3)]


class Shift(torch.nn.Module):
    """Two channels [1 - p, p]: p = the (shifted) input squashed around ``level``; direction-sensitive."""

    def __init__(self, level: float = 0.55, **_ignored) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))  # weights to load, as a package has
        self.level = level

    def forward(self, x):
        # output[i, j, k] = input[i + 2, j + 1, k] (zero past the end)
        y = torch.nn.functional.pad(x[:, :, 2:, 1:, :] * self.weight, (0, 0, 0, 1, 0, 2))
        p = torch.sigmoid((y - self.level) * 12.0)
        return torch.cat([1 - p, p], 1)


class _Moved(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.pad(x[:, :, 2:, 1:, :], (0, 0, 0, 1, 0, 2))


class LayeredShift(torch.nn.Module):
    """:class:`Shift` shaped as MeshNet (hidden ``layers``, then a 1^3 ``classifier`` giving logits), for
    brainchop's pipeline, which runs the layers and the classifier apart."""

    def __init__(self, level: float = 0.55, **_ignored) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([_Moved()])
        self.classifier = torch.nn.Conv3d(1, 2, 1)
        with torch.no_grad():
            self.classifier.weight[:] = torch.tensor([-12.0, 12.0]).view(2, 1, 1, 1, 1)
            self.classifier.bias[:] = torch.tensor([12.0 * level, -12.0 * level])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x)


@pytest.fixture
def shift_arch(monkeypatch):
    from medvision.ai import architectures

    monkeypatch.setitem(architectures._OWN, "test.Shift", lambda args: Shift(**args))
    monkeypatch.setitem(architectures._OWN, "test.LayeredShift", lambda args: LayeredShift(**args))


def _reduced(folder: Path, card: dict, parts=("weights",)) -> ModelPackage:
    """``card`` with its networks replaced by :class:`Shift` (the rest of the pipeline as it is)."""
    folder.mkdir(parents=True, exist_ok=True)
    card = json.loads(json.dumps(card))
    layered = (card.get("inference") or {}).get("mode") == "brainchop"
    for part in parts:
        spec = card if part == "weights" else card[part]
        name = f"{part}.safetensors"
        net = LayeredShift() if layered else Shift()
        save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, str(folder / name))
        # brainchop's min-max over the whole conformed cube puts the T1's tissue lower
        spec["architecture"] = {"name": "test.LayeredShift", "args": {"level": 0.2}} if layered else \
            {"name": "test.Shift", "args": {}}
        spec["weights"] = {"file": name, "sha256": sha256_of(folder / name)}
    card["id"] = f"test-{folder.name}"
    write_card(folder, card)
    return ModelPackage.open(folder)


def restored(volume: Volume, perm, flips) -> Volume:
    """``volume`` stored in another order: new index axis j is old index axis ``perm[j]``, reversed
    where ``flips[j]``; every voxel keeps its patient position (written here, not by the code under test)."""
    shape_xyz = volume.shape[::-1]
    arr = volume.array.transpose([2 - perm[2 - a] for a in range(3)])  # array axes are reversed index axes
    for j in range(3):
        if flips[j]:
            arr = np.flip(arr, axis=2 - j)
    m = np.zeros((4, 4))  # new index (x, y, z, 1) -> old index
    m[3, 3] = 1
    for j in range(3):
        m[perm[j], j] = -1.0 if flips[j] else 1.0
        m[perm[j], 3] = shape_xyz[perm[j]] - 1 if flips[j] else 0.0
    return Volume(np.ascontiguousarray(arr), volume.affine @ m, None, dict(volume.metadata))


def stored_back(array: np.ndarray, perm, flips) -> np.ndarray:
    """The inverse of :func:`restored` on a label array."""
    for j in range(3):
        if flips[j]:
            array = np.flip(array, axis=2 - j)
    inverse = [perm.index(i) for i in range(3)]
    return np.ascontiguousarray(array.transpose([2 - inverse[2 - a] for a in range(3)]))


def onto(reference: Volume, array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Labels stored on an axis-aligned re-ordering of ``reference``'s grid, put on that grid (patient
    positions matched through both affines, nothing assumed about how they were stored)."""
    m = np.linalg.solve(reference.affine, affine)  # their index (x, y, z, 1) -> the reference's index
    axes = np.abs(m[:3, :3]).argmax(0)
    assert np.allclose(np.abs(m[:3, :3]), np.eye(3)[:, axes], atol=1e-3), "not an axis-aligned re-ordering"
    perm = [int(axes[j]) for j in range(3)]
    flips = [int(m[perm[j], j] < 0) for j in range(3)]
    return stored_back(array, perm, flips)


def test_restoring_keeps_every_voxel_at_its_patient_position():
    rng = np.random.default_rng(0)
    v = Volume(rng.integers(0, 100, (4, 5, 6)).astype(np.int16), np.diag([0.9, 1.1, 2.0, 1.0]), None, {})
    for perm, flips in ORDERS:
        r = restored(v, perm, flips)
        for idx in ((0, 0, 0), (3, 4, 5), (1, 2, 3)):  # (z, y, x) in the original
            world = v.index_to_world(idx[::-1])
            new = np.rint(r.world_to_index(world)).astype(int)[::-1]
            assert r.array[tuple(new)] == v.array[idx]
        assert np.array_equal(stored_back(r.array, perm, flips), v.array)


@pytest.fixture(scope="module")
def t1(shared_data) -> Volume:
    path = shared_data / "labeled" / "MRIcrop-orig.gipl.gz"
    from medvision.io.volumes import read_volume

    v = read_volume(path)
    v.metadata["modality"] = "MR"
    return v


def _labels(pkg: ModelPackage, volume: Volume) -> np.ndarray:
    torch.manual_seed(0)
    labels = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu", threads=1))).labels
    assert np.allclose(labels.affine, volume.affine)
    return labels.array


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def _fine_tuned_card() -> dict:
    """A card as `medvision train` writes it (RAS, resampled to its spacing, sliding windows)."""
    return {"format": "medvision-model", "format_version": 1, "id": "x", "version": "1", "name": "fine-tuned",
            "task": "segmentation", "modality": "MR", "dims": 3,
            "input": {"channels": 1, "orientation": "RAS", "spacing_mm": [1.3, 1.3, 1.3],
                      "normalization": {"kind": "deepbet", "low_quantile": 0.005, "high_quantile": 0.995,
                                        "mean": 0.449, "std": 0.226}},
            "inference": {"mode": "sliding_window",
                          "sliding_window": {"roi_size": [32, 32, 32], "overlap": 0.25, "blend": "gaussian",
                                             "batch_size": 2}},
            "output": {"activation": "softmax", "in_network": True}, "postprocessing": {},
            "labels": [{"value": 1, "name": "bright", "color": [255, 0, 0, 255]}], "license": "test"}


@pytest.mark.slow
def test_deepbets_pipeline_in_storage_orders(t1, shift_arch, tmp_path):
    card = json.loads((shipped_dir() / "deepbet-t1-brain" / "model.json").read_text())
    pkg = _reduced(tmp_path / "deepbet-reduced", card, ("weights", "localizer"))
    reference = _labels(pkg, t1)
    assert 0.05 < (reference > 0).mean() < 0.9  # a real, direction-sensitive result
    moved = _labels(pkg, Volume(np.roll(t1.array, 3, axis=2), t1.affine, None, dict(t1.metadata)))
    assert _dice(moved, reference) < 0.999  # the sweep sees a shift of 3 voxels
    # 24 orders (each permutation with four flip patterns); MEDVISION_FULL_SWEEP=1: all 48
    for perm, flips in ORDERS if os.environ.get("MEDVISION_FULL_SWEEP") else ORDERS[::2]:
        got = stored_back(_labels(pkg, restored(t1, perm, flips)), perm, flips)
        assert np.array_equal(got, reference), (perm, flips)


def test_a_fine_tuned_models_pipeline_in_all_48_storage_orders(t1, shift_arch, tmp_path):
    pkg = _reduced(tmp_path / "tuned-reduced", _fine_tuned_card())
    reference = _labels(pkg, t1)
    assert 0.05 < (reference > 0).mean() < 0.9
    worst = 1.0
    for perm, flips in ORDERS:
        got = stored_back(_labels(pkg, restored(t1, perm, flips)), perm, flips)
        worst = min(worst, _dice(got, reference))
    assert worst >= 0.999, worst  # resampled (trilinear) in another order: equal up to rounding


def _write_dicom(volume: Volume, folder: Path) -> None:
    """``volume`` as a DICOM MR series as stored (slices along its index z; files in reverse order)."""
    from pydicom.uid import generate_uid

    from .dicomgen import make_dataset

    folder.mkdir(parents=True, exist_ok=True)
    direction = volume.affine[:3, :3] / volume.spacing
    iop = tuple(float(v) for v in (*direction[:, 0], *direction[:, 1]))
    series, study = generate_uid(), generate_uid()
    sx, sy, sz = (float(s) for s in volume.spacing)
    n = volume.shape[0]
    for k in range(n):
        ds = make_dataset(volume.array[k].astype(np.int16), ipp=volume.index_to_world([0, 0, k]), iop=iop,
                          spacing=(sy, sx), series_uid=series, study_uid=study, modality="MR", instance=n - k,
                          slope=None, intercept=None, extra={"SliceThickness": sz})
        ds.save_as(folder / f"IM{n - k:04d}.dcm", enforce_file_format=True)


def _load(folder: Path) -> Volume:
    from medvision.io.api import load_job

    v = run_job(load_job(str(folder)))
    return v[0] if isinstance(v, list) else v


@pytest.mark.slow
def test_deepbet_itself_in_storage_orders_nifti_and_dicom(t1, tmp_path):
    """The full model on a few orders: NIfTI files written and read back, and DICOM series."""
    from medvision.ai.package import Registry
    from medvision.io.volumes import read_volume, write_volume

    pkg = Registry().get("deepbet-t1-brain")
    reference = _labels(pkg, t1)
    assert reference.sum() > 1000
    picks = [((0, 1, 2), (1, 0, 0)), ((2, 0, 1), (0, 1, 1)), ((1, 2, 0), (1, 1, 1))]
    for i, (perm, flips) in enumerate(picks):
        stored = restored(t1, perm, flips)
        write_volume(stored, tmp_path / f"o{i}.nii.gz")
        from_file = read_volume(tmp_path / f"o{i}.nii.gz")
        from_file.metadata["modality"] = "MR"
        assert np.array_equal(onto(t1, _labels(pkg, from_file), from_file.affine), reference), ("nifti", perm, flips)
    for i, (perm, flips) in enumerate(picks[:2]):
        _write_dicom(restored(t1, perm, flips), tmp_path / f"dcm{i}")
        loaded = _load(tmp_path / f"dcm{i}")  # slices sorted along the normal: stored as DICOM says
        assert np.array_equal(onto(t1, _labels(pkg, loaded), loaded.affine), reference), ("dicom", perm, flips)


def _oblique(volume: Volume, degrees: tuple[float, float]) -> Volume:
    """The same voxels acquired on a tilted grid (about the grid's centre): the patient turned under it."""
    a, b = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = volume.affine.copy()
    affine[:3, :3] = rz @ rx @ volume.affine[:3, :3]
    centre = volume.index_to_world(np.array(volume.shape[::-1]) / 2)
    affine[:3, 3] = centre - affine[:3, :3] @ (np.array(volume.shape[::-1]) / 2)
    return Volume(volume.array, affine, None, dict(volume.metadata))


@pytest.mark.parametrize("degrees", [(12.0, 0.0), (-9.0, 17.0)])
def test_oblique_acquisitions_give_the_same_labels_in_the_grid_they_were_acquired_on(t1, shift_arch, tmp_path,
                                                                                      degrees):
    """An oblique grid goes to the closest axis order without resampling (deepbet's pipeline) or is
    resampled in its own frame (a fine-tuned model): the labels on the acquired grid do not change
    when the patient lies turned under it, as DICOM and NIfTI files of an oblique acquisition store it."""
    card = json.loads((shipped_dir() / "deepbet-t1-brain" / "model.json").read_text())
    for name, pkg, exact in (("deepbet", _reduced(tmp_path / "db", card, ("weights", "localizer")), True),
                             ("tuned", _reduced(tmp_path / "ft", _fine_tuned_card()), False)):
        reference = _labels(pkg, t1)
        tilted = _oblique(t1, degrees)
        got = _labels(pkg, tilted)
        if exact:
            assert np.array_equal(got, reference), name
        else:
            assert _dice(got, reference) >= 0.999, name
        perm, flips = (2, 0, 1), (1, 0, 1)  # and stored in another order
        got = stored_back(_labels(pkg, restored(tilted, perm, flips)), perm, flips)
        assert np.array_equal(got, reference) if exact else _dice(got, reference) >= 0.999, name


def _brainchop_card(model_id: str) -> dict:
    return json.loads((shipped_dir() / model_id / "model.json").read_text())


@pytest.mark.slow
def test_brainchops_pipeline_in_storage_orders(t1, shift_arch, tmp_path):
    """brainchop's pipeline (conform to 256^3 1 mm LIA with trilinear interpolation and uint8 intensities,
    min-max, the threshold crop, back with nearest neighbour) as mindgrab's card runs it: 16 orders
    (each permutation of the axes with two or three flip patterns; MEDVISION_FULL_SWEEP=1: all 48, which
    were all voxel-exact when written)."""
    pkg = _reduced(tmp_path / "mindgrab-reduced", _brainchop_card("brainchop-mindgrab"))
    reference = _labels(pkg, t1)
    assert (reference > 0).sum() > 1000  # inside the crop of the brightest tissue (threshold 0.5)
    moved = _labels(pkg, Volume(np.roll(t1.array, 3, axis=2), t1.affine, None, dict(t1.metadata)))
    assert _dice(moved, reference) < 0.999  # the sweep sees a shift of 3 voxels
    worst, exact = 1.0, 0
    orders = ORDERS if os.environ.get("MEDVISION_FULL_SWEEP") else ORDERS[::3]  # 16: each permutation, 2-3 flips
    for perm, flips in orders:
        got = stored_back(_labels(pkg, restored(t1, perm, flips)), perm, flips)
        exact += int(np.array_equal(got, reference))
        worst = min(worst, _dice(got, reference))
    print(f"\n[sweep] brainchop pipeline: {exact}/{len(orders)} orders voxel-exact, worst Dice {worst:.6f}")
    assert worst >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["brainchop-subcortical-18", "brainchop-dkt-104"])
def test_brainchops_other_cards_in_storage_orders(t1, shift_arch, tmp_path, model_id):
    """The 18-class card (threshold crop) and the 104-class card (a pre-model's mask first) on a few orders."""
    card = _brainchop_card(model_id)
    pkg = _reduced(tmp_path / "reduced", card, ("weights", "pre_model") if "pre_model" in card else ("weights",))
    reference = _labels(pkg, t1)
    assert (reference > 0).any()
    for perm, flips in ORDERS[5::18]:
        got = stored_back(_labels(pkg, restored(t1, perm, flips)), perm, flips)
        assert _dice(got, reference) >= 0.999, (perm, flips)
