"""brainchop's MeshNet models as medvision packages: network, cards, pipeline, equality with the original."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medvision.ai.architectures import build
from medvision.ai.networks import brainchop_pipeline as bp
from medvision.ai.networks.convert_brainchop import MODELS
from medvision.ai.package import ModelPackage, PackageError, Registry, shipped_dir
from medvision.core.volume import Volume

REFERENCE = Path(__file__).resolve().parent / "data" / "brainchop"
IMAGES = {"mni": ("volumes", "mni152_t1_1mm.nii.gz"), "mricrop": ("labeled", "MRIcrop-orig.gipl.gz")}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _equal_or_dice(ours: np.ndarray, ref: np.ndarray, minimum: float = 0.99) -> None:
    if np.array_equal(ours, ref):
        return
    for value in np.union1d(np.unique(ours), np.unique(ref)):
        if value == 0:
            continue
        assert _dice(ours == value, ref == value) >= minimum, f"label {value}"


def test_packages_load_with_checked_weights_and_brainchop_licence():
    registry = Registry([shipped_dir()])
    for package_id in MODELS:
        pkg = registry.get(package_id)
        assert pkg.card["license"] == "MIT" and "10.21105/joss.05098" in pkg.card["attribution"]
        assert "MIT License" in (pkg.folder / "LICENSE").read_text(encoding="utf-8")
        net = pkg.network()
        assert type(net).__name__ == "MeshNet"
        assert net.classifier.out_channels == max(la["value"] for la in pkg.labels) + 1
        if "pre_model" in pkg.card:
            assert pkg.network("pre_model").classifier.out_channels == 3


def test_tampered_weights_are_refused(tmp_path):
    src = shipped_dir() / "brainchop-gwm"
    copy = tmp_path / "brainchop-gwm"
    shutil.copytree(src, copy)
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="does not match its card"):
        ModelPackage.open(copy).network()


@pytest.mark.parametrize("instance_norm", [False, True])
def test_meshnet_weights_take_the_faster_layout_on_the_cpu_and_give_the_same_classes(instance_norm):
    from medvision.ai.networks.layout import place

    torch.manual_seed(0)
    net = build({"name": "meshnet.MeshNet", "args": {"channels": 6, "dilations": [1, 2, 1], "out_channels": 3,
                                                      "instance_norm": instance_norm}}).eval()
    x = torch.randn(1, 1, 20, 20, 20)
    with torch.no_grad():
        plain = net(x)
        place(net, "cpu")
        hidden = [b.conv.weight for b in net.layers[1:]]  # (6 channels in: the layouts differ)
        # channels-last, except with instance norm (slower that way); the same results either way
        assert all(w.is_contiguous(memory_format=torch.channels_last_3d) != instance_norm for w in hidden)
        assert torch.allclose(net(x), plain, atol=1e-5)
        labels, _ = bp.predict(net, x)
    assert torch.equal(labels, plain[0].argmax(0).to(labels.dtype))


def test_meshnet_from_card_runs_and_fine_tunes():
    card = json.loads((shipped_dir() / "brainchop-gwm" / "model.json").read_text(encoding="utf-8"))
    net = build(card["architecture"])
    x = torch.randn(1, 1, 20, 20, 20)
    assert net(x).shape == (1, 3, 20, 20, 20)
    from medvision.ai.training.model import make_network

    train = make_network(Registry([shipped_dir()]).get("brainchop-subcortical-18"), n_classes=2)
    assert train.head == ["classifier.weight", "classifier.bias"]
    assert "layers.0.conv.weight" in train.pretrained
    before = train.net.layers[0].conv.weight.detach().clone()
    opt = torch.optim.SGD(train.net.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(train.net(x[:, :, :12, :12, :12]), torch.zeros(1, 12, 12, 12).long())
    loss.backward()
    opt.step()
    assert not torch.equal(before, train.net.layers[0].conv.weight)


def _head(shape=(60, 70, 50)) -> Volume:
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    r = ((z - 28) / 24) ** 2 + ((y - 33) / 30) ** 2 + ((x - 26) / 20) ** 2
    array = np.where(r < 1, 300 + 4 * x + 2 * y, 0).astype(np.int16)
    affine = np.diag([0.9, 1.1, 1.3, 1.0])
    affine[:3, 3] = [-20.0, 15.0, 7.0]
    return Volume(array, affine, None, {})


@pytest.mark.parametrize("code", ["RAS", "LAS", "SPL", "IRA"])
def test_conform_gives_one_grid_for_every_storage_order(code):
    head = _head()
    ref = bp.conform(head)
    other = bp.conform(head.reoriented(code))
    assert np.allclose(ref.affine, other.affine)
    assert np.array_equal(ref.cube, other.cube)
    back = bp.to_volume_grid(ref.cube, ref.affine, head.reoriented(code))
    assert np.array_equal(Volume(back, head.reoriented(code).affine, None, {}).reoriented(head.orientation).array,
                          bp.to_volume_grid(ref.cube, ref.affine, head))


def test_conform_is_lia_1mm_and_scales_to_uint8():
    head = _head()
    conformed = bp.conform(head)
    assert conformed.cube.shape == (256, 256, 256) and conformed.cube.dtype == np.uint8
    assert np.allclose(np.abs(conformed.affine[:3, :3]).sum(0), 1.0)
    assert Volume(conformed.cube.transpose(2, 1, 0).copy(), conformed.affine, None, {}).orientation == "LIA"
    assert conformed.cube.max() == 255 and conformed.cube.min() == 0


def test_quantile_normalisation_is_brainchops():
    cube = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10)
    norm = bp.normalize(cube, "quantile")
    # sorted values at floor(0.05 n) = 5 and ceil(0.95 n) - 1 = 94, not clipped
    assert float(norm.flatten()[5]) == 0.0 and float(norm.flatten()[94]) == 1.0 and float(norm.max()) > 1.0
    with pytest.raises(bp.BrainchopError):
        bp.normalize(torch.zeros(4, 4, 4), "minmax")


def test_crop_box_and_largest_component():
    norm = torch.zeros(20, 20, 20)
    norm[3:9, 4:12, 5:7] = 1.0
    norm[15, 15, 15] = 0.1
    assert bp.crop_box(norm, 0.5) == (slice(3, 9), slice(4, 12), slice(5, 7))
    assert bp.crop_box(norm, 0.0) == (slice(3, 16), slice(4, 16), slice(5, 16))
    cube = np.zeros((256, 256, 256), np.uint8)
    cube[10:20, 10:20, 10:20] = 1
    cube[12:14, 12:14, 20:22] = 2  # touches the first: kept
    cube[100, 100, 100] = 2  # alone: dropped
    kept = bp.keep_largest_component(cube)
    assert kept[100, 100, 100] == 0 and (kept == 2).sum() == 8 and (kept == 1).sum() == 1000


# ---- real images ---------------------------------------------------------------------------------------------
_CONFORMED: dict[str, bp.Conformed] = {}


def _conformed(shared: Path, image: str) -> bp.Conformed:
    if image not in _CONFORMED:
        from medvision.io import load

        _CONFORMED[image] = bp.conform(load(shared / IMAGES[image][0] / IMAGES[image][1]))
    return _CONFORMED[image]


def _figures(ours: np.ndarray, ref: np.ndarray) -> dict:
    """Share of equal voxels and the Dice of every label present in either (background left out)."""
    dice = {int(v): round(_dice(ours == v, ref == v), 5) for v in np.union1d(np.unique(ours), np.unique(ref)) if v}
    return {"equal_voxels": float((ours == ref).mean()), "differing": int((ours != ref).sum()), "dice": dice}


def _equals_tensorflow(image: str, model: str, ours: np.ndarray, box: tuple[slice, ...], pad: int) -> None:
    """``ours`` (the classes of the whole network input: the crop box and its padding) equal TensorFlow's stored
    classes voxel for voxel, or with a Dice >= 0.99 for every label present."""
    ref_file = REFERENCE / f"{image}-{model}-full.npz"
    assert ref_file.is_file(), f"{ref_file.name} missing: run benchmarks/brainchop_tfjs/reference_tf.py --store"
    ref = np.load(ref_file)
    assert [[s.start, s.stop] for s in box] == ref["box"].tolist() and pad == int(ref["padding"]), \
        "the pipeline's crop box changed since the reference"
    figures = _figures(ours, ref["labels"])
    print(f"{image} {model} vs TensorFlow: {figures['equal_voxels']:.7f} equal ({figures['differing']} differ), "
          f"{len(figures['dice'])} labels, Dice per label {figures['dice']}")
    _equal_or_dice(ours, ref["labels"])


# one whole crop per model (the other image's crops: benchmarks/bench_brainchop.py); MRIcrop where the model takes
# it (the grey/white model refuses it, see below)
_WHOLE_CROPS = [("mricrop", "brainchop-mindgrab"), ("mni", "brainchop-gwm"), ("mricrop", "brainchop-subcortical-18"),
                ("mricrop", "brainchop-dkt-104")]


@pytest.mark.slow
@pytest.mark.parametrize(("image", "package_id"), _WHOLE_CROPS)
def test_network_equals_tensorflow_on_the_whole_crop(shared_data, image, package_id):
    """The PyTorch MeshNet's classes on the whole input the pipeline gives it (conformed, normalised, cropped,
    padded) equal those of the original tfjs model run by TensorFlow (TF-Keras with the tfjs weights, loaded by
    the ``tensorflowjs`` package; stored by benchmarks/brainchop_tfjs/reference_tf.py). For the 104-class
    package the pre-model's classes on the whole 256^3 cube are compared too, and its mask places the crop."""
    # (the worker's share of the CPU threads, tests/conftest.py)
    pkg = Registry([shipped_dir()]).get(package_id)
    conformed = _conformed(shared_data, image)
    mask = None
    if "pre_model" in pkg.card:
        spec = pkg.card["pre_model"]
        norm = bp.normalize(torch.from_numpy(conformed.cube), spec["normalization"]["kind"])
        pre, _ = bp.predict(pkg.network("pre_model"), norm[None, None])
        full = (slice(0, bp.CONFORMED_SHAPE),) * 3
        _equals_tensorflow(image, spec["source"], pre.numpy(), full, 0)
        mask = pre != 0  # the pipeline's pre_mask_of: the pre-model's argmax > 0
    x, box, pad = bp.prepare_input(conformed, pkg.card, mask, "cpu")
    labels, _ = bp.predict(pkg.network(), x)
    _equals_tensorflow(image, MODELS[package_id]["source"], labels.numpy(), box, pad)


def test_quantile_model_refuses_an_image_that_fills_too_little_of_the_cube(shared_data):
    """MRIcrop (78 x 110 x 64 mm) fills 3 % of the 256 mm cube: its 95 % quantile there is 0, and
    brainchop's grey/white model would divide by zero; medvision says why instead."""
    from medvision.io import load

    pkg = Registry([shipped_dir()]).get("brainchop-gwm")
    with pytest.raises(bp.BrainchopError, match="quantiles"):
        bp.segment(load(shared_data / "labeled" / "MRIcrop-orig.gipl.gz"), pkg.network(), pkg.card)


@pytest.mark.slow
def test_reoriented_copy_gives_the_same_labels(shared_data):
    """MRIcrop stored as is (LPS), as LAS and with permuted axes (AIL): the same 18-class labels in
    patient space."""
    from medvision.io import load

    # (the worker's share of the CPU threads, tests/conftest.py)
    volume = load(shared_data / "labeled" / "MRIcrop-orig.gipl.gz")
    pkg = Registry([shipped_dir()]).get("brainchop-subcortical-18")
    net = pkg.network()
    ref = bp.segment(volume, net, pkg.card)
    assert {1, 2, 3, 14}.issubset(set(np.unique(ref).tolist()))
    for code in ("LAS", "AIL"):
        moved = volume.reoriented(code)
        labels = bp.segment(moved, net, pkg.card)
        back = Volume(labels, moved.affine, None, {}).reoriented(volume.orientation)
        assert back.same_grid(volume)
        assert np.array_equal(back.array, ref), code
