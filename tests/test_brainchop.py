"""brainchop's MeshNet models as medvision packages: network, cards, pipeline, TensorFlow.js equality."""

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


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for package_id, spec in MODELS.items():
        for image in IMAGES:
            if image == "mricrop" and spec["normalization"]["kind"] == "quantile":
                continue  # fills too little of the cube for quantiles (see the test above)
            out.append((image, package_id, spec["source"]))
            if spec.get("pre_model"):
                out.append((image, package_id, spec["pre_model"]["source"]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("image", "package_id", "model"), _cases())
def test_network_equals_tensorflow_js(shared_data, image, package_id, model):
    """The PyTorch MeshNet's classes equal TensorFlow.js's on the same input (a 48^3 block of the input
    the pipeline gives the network; tfjs's output stored by benchmarks/brainchop_tfjs/make_reference.py)."""
    torch.set_num_threads(2)
    ref_file = REFERENCE / f"{image}-{model}.npz"
    assert ref_file.is_file(), f"{ref_file.name} missing: run benchmarks/brainchop_tfjs/make_reference.py"
    ref = np.load(ref_file)
    pkg = Registry([shipped_dir()]).get(package_id)
    conformed = _conformed(shared_data, image)
    if model == MODELS[package_id]["source"]:
        mask = bp.pre_mask_of(conformed, pkg.card, pkg.network("pre_model") if "pre_model" in pkg.card else None,
                              "cpu")
        x, _, _ = bp.prepare_input(conformed, pkg.card, mask, "cpu")
        net = pkg.network()
    else:
        x = bp.normalize(torch.from_numpy(conformed.cube), pkg.card["pre_model"]["normalization"]["kind"])[None, None]
        net = pkg.network("pre_model")
    assert tuple(x.shape[2:]) == tuple(ref["input_shape"]), "the pipeline's input changed since the reference"
    box = tuple(slice(int(s), int(s) + n) for s, n in zip(ref["start"], ref["labels"].shape, strict=True))
    labels, _ = bp.predict(net, x[(slice(None), slice(None), *box)].contiguous())
    _equal_or_dice(labels.numpy(), ref["labels"])


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

    torch.set_num_threads(2)
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
