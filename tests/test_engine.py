"""The inference engine with small networks whose output is known: geometry (oblique, flipped,
cropped boxes come back on the exact grid), tampered weights refused, the CUDA out-of-memory
fallback (an injected error), cancel within 2 s, test-time augmentation and uncertainty."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from medvision.ai import architectures, memory
from medvision.ai.engine import InferenceOptions, fallback_plan, infer_job
from medvision.ai.inference import prepare, run
from medvision.ai.inference.postprocess import postprocess
from medvision.ai.package import ModelPackage, PackageError, Registry, sha256_of, write_card
from medvision.core.jobs import Cancelled, run_job
from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume


class Brightness(torch.nn.Module):
    """Two channels: 'not bright' and 'bright' (the normalised intensity), plus a learnable scale so
    it has weights to load; ``delay`` seconds per layer make it slow (cancel tests)."""

    def __init__(self, delay: float = 0.0, layers: int = 1) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.layers = torch.nn.ModuleList(torch.nn.Identity() for _ in range(layers))
        self.delay = delay

    def forward(self, x):
        for layer in self.layers:
            if self.delay:
                time.sleep(self.delay)
            x = layer(x)
        p = (x * self.scale).clamp(0, 1)
        return torch.cat([1 - p, p], 1)


@pytest.fixture
def brightness(monkeypatch):
    monkeypatch.setitem(architectures._OWN, "test.Brightness", lambda args: Brightness(**args))


def make_package(folder, *, args=None, input_spec=None, inference=None, post=None) -> ModelPackage:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"scale": torch.ones(1)}, str(folder / "weights.safetensors"))
    card = {
        "format": "medvision-model", "format_version": 1, "id": "test-bright", "version": "1.0", "name": "bright",
        "task": "segmentation", "modality": "CT", "dims": 3,
        "architecture": {"name": "test.Brightness", "args": args or {}},
        "weights": {"file": "weights.safetensors", "sha256": sha256_of(folder / "weights.safetensors")},
        "input": input_spec or {"orientation": "RAS", "normalization": {"kind": "ct", "low": 0, "high": 1000}},
        "inference": inference or {"mode": "whole"},
        "output": {"activation": None, "in_network": True, "channel": 1, "threshold": 0.5},
        "postprocessing": post or {},
        "labels": [{"value": 1, "name": "bright", "color": [255, 0, 0, 255]}],
        "license": "test",
    }
    write_card(folder, card)
    return ModelPackage.open(folder)


def oblique_volume(shape=(12, 20, 16)) -> Volume:
    rng = np.random.default_rng(3)
    array = rng.integers(0, 1000, shape).astype(np.int16)
    a = np.radians(20)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, -1.1, -2.5])  # oblique, y and z flipped
    affine[:3, 3] = [10, -20, 30]
    return Volume(array, affine, None, {"modality": "CT"})


def test_an_oblique_flipped_volume_comes_back_on_its_exact_grid(tmp_path, brightness):
    volume = oblique_volume()
    pkg = make_package(tmp_path / "p")
    result = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu")))
    assert result.labels.shape == volume.shape and np.allclose(result.labels.affine, volume.affine)
    # the network thresholds the normalised intensity at 0.5, i.e. the image at 500, voxel for voxel
    assert np.array_equal(result.labels.array == 1, volume.array > 500)
    assert result.device == "cpu" and result.seconds["total"] > 0


def test_sliding_windows_resampling_and_a_box(tmp_path, brightness):
    volume = oblique_volume((20, 40, 36))
    sw = {"mode": "sliding_window", "sliding_window": {"roi_size": [16, 16, 8], "overlap": 0.25, "blend": "gaussian"}}
    pkg = make_package(tmp_path / "sw", inference=sw)
    result = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu")))
    assert np.array_equal(result.labels.array == 1, volume.array > 500)  # windows stitch exactly
    # a box: only voxels inside it are labelled, on the full grid
    box = (slice(4, 15), slice(10, 30), slice(5, 20))
    boxed = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu", box=box)))
    inside = np.zeros(volume.shape, bool)
    inside[box] = True
    assert np.array_equal(boxed.labels.array == 1, (volume.array > 500) & inside)
    # resampled to 1 mm and back (trilinear): agrees with the direct threshold almost everywhere
    pkg2 = make_package(tmp_path / "iso", input_spec={"orientation": "RAS", "spacing_mm": [1, 1, 1],
                                                      "normalization": {"kind": "ct", "low": 0, "high": 1000}})
    smooth = np.zeros(volume.shape, np.int16)
    smooth[:, 10:30, 8:28] = 900
    vol2 = Volume(smooth, volume.affine, None, {"modality": "CT"})
    iso = run_job(infer_job(pkg2, vol2, InferenceOptions(device="cpu")))
    agree = np.mean((iso.labels.array == 1) == (smooth > 500))
    assert agree > 0.97 and iso.labels.shape == vol2.shape


def test_tta_and_uncertainty(tmp_path, brightness):
    volume = oblique_volume()
    pkg = make_package(tmp_path / "p")
    result = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu", tta=True, uncertainty=True)))
    assert np.array_equal(result.labels.array == 1, volume.array > 500)  # flips of a voxel-wise model agree
    assert result.uncertainty.shape == volume.shape and float(result.uncertainty.max()) < 1e-6
    entropy = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu", uncertainty=True))).uncertainty
    # without TTA: entropy, highest where the probability is near 0.5 (intensity near 500)
    near = np.abs(volume.array.astype(float) - 500) < 50
    far = np.abs(volume.array.astype(float) - 500) > 400
    assert entropy[near].mean() > 0.9 and entropy[far].mean() < 0.6


def test_largest_component_and_holes(tmp_path, brightness):
    array = np.zeros((16, 24, 24), np.int16)
    array[4:12, 4:16, 4:16] = 900
    array[7:9, 8:10, 8:10] = 0  # a hole
    array[2, 20, 20] = 900  # a speck
    volume = Volume(array, np.diag([1.0, 1.0, 2.0, 1.0]), None, {"modality": "CT"})
    pkg = make_package(tmp_path / "p", post={"largest_component": True, "fill_holes": True})
    labels = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu"))).labels.array
    expected = np.zeros_like(labels)
    expected[4:12, 4:16, 4:16] = 1
    assert np.array_equal(labels, expected)


def test_tampered_weights_are_refused(tmp_path, brightness):
    pkg = make_package(tmp_path / "p")
    data = bytearray((tmp_path / "p" / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "p" / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="does not match its card"):
        pkg.network()
    with pytest.raises(PackageError, match="does not match its card"):
        run_job(infer_job(pkg, oblique_volume(), InferenceOptions(device="cpu")))
    # a registry lists it, installing it is refused
    assert [p.id for p in Registry([tmp_path]).packages()] == ["test-bright"]
    with pytest.raises(PackageError):
        Registry([tmp_path]).install(pkg)


def test_out_of_memory_falls_back_step_by_step(tmp_path, brightness, monkeypatch):
    volume = oblique_volume((20, 40, 36))
    sw = {"mode": "sliding_window", "sliding_window": {"roi_size": [16, 16, 8], "overlap": 0.25, "batch_size": 4}}
    pkg = make_package(tmp_path / "sw", inference=sw)
    assert [(a.device, a.sw_device, a.sw_batch_size) for a in fallback_plan("cuda", 4, True)] == [
        ("cuda", "cuda", 4), ("cuda", "cuda", 1), ("cpu", "cuda", 1), ("cpu", "cpu", 4)]
    tried, released = [], []
    real = run.run_attempt

    def run_attempt(net, card, x, attempt, tta):
        tried.append(attempt)
        if attempt.device == "cuda" or attempt.sw_device == "cuda":  # the "GPU" has no room
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(net, card, x, attempt, tta)

    monkeypatch.setattr(run, "run_attempt", run_attempt)
    monkeypatch.setattr(prepare, "pick_device", lambda requested: "cuda")
    monkeypatch.setattr(memory, "release_gpu_memory", lambda: released.append(True))
    result = run_job(infer_job(pkg, volume, InferenceOptions(device="cuda")))
    assert [a.why for a in tried] == ["", "one window at a time", "windows on the GPU, stitching in CPU memory",
                                      "on the CPU"]
    assert len(released) >= 3  # GPU memory released before each retry
    assert result.device == "cpu" and np.array_equal(result.labels.array == 1, volume.array > 500)
    assert any("one window at a time" in n for n in result.notes)
    assert any("ran on the CPU after running out of GPU memory" in n for n in result.notes)
    # an error that is not about memory is not retried
    tried.clear()
    monkeypatch.setattr(run, "run_attempt", lambda *a: (_ for _ in ()).throw(ValueError("bad input")))
    with pytest.raises(ValueError, match="bad input"):
        run_job(infer_job(pkg, volume, InferenceOptions(device="cuda")))


def test_cancel_stops_the_network_within_two_seconds(tmp_path, brightness):
    pkg = make_package(tmp_path / "slow", args={"delay": 0.05, "layers": 400})  # 20 s of "compute"
    volume = oblique_volume()
    start = time.perf_counter()
    asked = {}

    def progress(record):
        if record.stage == "inference" and time.perf_counter() - start > 1.0:
            asked.setdefault("at", time.perf_counter())
            return False
        return None

    before = threading.active_count()
    with pytest.raises(Cancelled):
        run_job(infer_job(pkg, volume, InferenceOptions(device="cpu")), progress)
    assert time.perf_counter() - asked["at"] < 2.0
    time.sleep(0.2)
    assert threading.active_count() <= before  # the network thread has ended


def test_a_model_for_another_modality_warns(tmp_path, brightness):
    pkg = make_package(tmp_path / "p")
    mr = Volume(np.zeros((10, 10, 10), np.int16), np.eye(4), None, {"modality": "MR"})
    assert pkg.suitability(mr) == ["bright was made for CT images; this one is MR"]
    flat = Volume(np.zeros((1, 10, 10), np.int16), np.eye(4), None, {"modality": "CT"})
    assert "only 1 slices" in pkg.suitability(flat)[0]
    result = run_job(infer_job(pkg, mr, InferenceOptions(device="cpu")))
    assert result.notes[0].startswith("warning: bright was made for CT")


def test_mask_thresholded_in_the_model_frame_equals_mapping_the_probabilities(tmp_path, brightness):
    """A resized input (nearest-exact): thresholding before mapping back gives the labels that mapping
    the probabilities and thresholding after gives (the uncertainty run takes that path)."""
    volume = oblique_volume((20, 40, 36))
    pkg = make_package(tmp_path / "r", input_spec={"orientation": "RAS", "resize_to": [32, 24, 16],
                                                   "interpolation": "nearest-exact",
                                                   "normalization": {"kind": "ct", "low": 0, "high": 1000}})
    fast = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu")))
    slow = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu", uncertainty=True)))
    assert fast.probability is None and slow.probability is not None
    assert fast.labels.array.dtype == np.uint8 and (fast.labels.array == 1).sum() > 1000
    assert np.array_equal(fast.labels.array, slow.labels.array)


def test_post_processing_on_the_label_box_equals_the_whole_region():
    """Largest component and hole filling on the label's bounding box (+1 voxel) give what they give on
    the whole region: a cavity open to the box's face stays open, a closed one is filled."""
    from medvision.ai.masks import fill_holes, largest_component

    rng = np.random.default_rng(5)
    array = np.zeros((30, 40, 36), np.uint8)
    array[5:20, 8:30, 6:28] = 1
    array[9:14, 12:20, 10:18] = 0  # a closed cavity
    array[9:14, 8:10, 20:24] = 0  # a pit open at the box's face
    array[25:27, 34:36, 30:33] = 1  # a speck outside the big block
    array[(rng.random(array.shape) < 0.002)] = 2  # another label scattered about
    labels = LabelMap(array.copy(), np.eye(4), LabelTable.from_json(
        '[{"value": 1, "name": "a", "color": [255, 0, 0, 255]}, {"value": 2, "name": "b", "color": [0, 255, 0, 255]}]'))

    whole = tuple(slice(0, n) for n in array.shape)
    postprocess({"postprocessing": {"largest_component": True, "fill_holes": True}}, labels, whole)
    expected = array.copy()
    for value in (1, 2):
        mask = fill_holes(largest_component(expected == value))
        expected[(expected == value) & ~mask] = 0
        expected[mask & (expected == 0)] = value
    assert np.array_equal(labels.array, expected)
    assert labels.array[10, 15, 12] == 1 and labels.array[10, 8, 21] == 0


def test_hole_filling_and_largest_component_equal_simpleitks_filters():
    """The faster versions (one labelling pass and a lookup) give BinaryFillhole's and
    RelabelComponent's results on random masks, ties between equal components included."""
    import SimpleITK as sitk

    from medvision.ai.masks import fill_holes, largest_component

    rng = np.random.default_rng(11)
    for _ in range(25):
        mask = rng.random(tuple(rng.integers(3, 30, 3))) < rng.uniform(0.05, 0.8)
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(img, fullyConnected=False, foregroundValue=1)) == 1
        assert np.array_equal(fill_holes(mask), filled)
        for full in (True, False):
            ranked = sitk.RelabelComponent(sitk.ConnectedComponent(img, full), sortByObjectSize=True)
            assert np.array_equal(largest_component(mask, full), sitk.GetArrayFromImage(ranked) == 1)
    assert not fill_holes(np.zeros((3, 3, 3), bool)).any() and fill_holes(np.ones((3, 3, 3), bool)).all()


def test_classes_chosen_in_the_model_frame_equal_the_argmax_of_the_mapped_probabilities(tmp_path):
    """A multi-class model on a resized input: the class chosen before mapping back (the default) is
    the class chosen from the mapped probabilities (the uncertainty run), and so is its probability."""
    from medvision.ai import architectures

    class Bands(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):  # three classes by intensity band, softmax-like scores
            return torch.softmax(torch.cat([-(x - c).abs() * 8 for c in (0.2, 0.5, 0.8)], 1) * self.scale, 1)

    architectures._OWN["test.Bands"] = lambda args: Bands()
    try:
        folder = tmp_path / "bands"
        folder.mkdir()
        save_file({"scale": torch.ones(1)}, str(folder / "weights.safetensors"))
        write_card(folder, {
            "format": "medvision-model", "format_version": 1, "id": "bands", "version": "1", "name": "bands",
            "task": "segmentation", "modality": "CT", "dims": 3, "architecture": {"name": "test.Bands", "args": {}},
            "weights": {"file": "weights.safetensors", "sha256": sha256_of(folder / "weights.safetensors")},
            "input": {"orientation": "RAS", "resize_to": [24, 20, 12], "interpolation": "nearest-exact",
                      "normalization": {"kind": "ct", "low": 0, "high": 1000}},
            "inference": {"mode": "whole"}, "output": {"activation": None, "in_network": True},
            "labels": [{"value": 1, "name": "mid", "color": [1, 2, 3, 255]},
                       {"value": 2, "name": "high", "color": [3, 2, 1, 255]}], "license": "test"})
        pkg = ModelPackage.open(folder)
        volume = oblique_volume((20, 40, 36))
        fast = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu")))
        slow = run_job(infer_job(pkg, volume, InferenceOptions(device="cpu", uncertainty=True)))
    finally:
        architectures._OWN.pop("test.Bands", None)
    assert fast.labels.array.dtype == np.uint8 and set(np.unique(fast.labels.array)) == {0, 1, 2}
    assert np.array_equal(fast.labels.array, slow.labels.array)
    assert np.array_equal(fast.probability, slow.probability)
