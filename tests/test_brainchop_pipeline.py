"""mindgrab as brainchop runs it: its tfjs file names each hidden convolution ``*_gn`` and brainchop
standardises every channel after such a layer (its ``LayerNormInPlace``: the channel's own mean and
biased variance over the voxels, eps 1e-5, no learnt scale). Run without it, the network labels the
whole crop as brain (3.95 L on the MNI template, 5.75 L on brain1); with it, a brain (1.91 L and
1.86 L, Dice 0.945 with deepbet on brain1: benchmarks/bench_brainchop.py, check "mindgrab-vs-deepbet";
tests/test_brainchop.py compares the network, normalisation included, with TensorFlow on a whole crop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medvision.ai.networks.meshnet import INSTANCE_NORM_EPS, MeshNet

ROOT = Path(__file__).resolve().parents[1]
BRAINCHOP = ROOT.parent / "shared" / "data" / "weights" / "brainchop"


def test_the_layers_normalisation_is_brainchops_layer_norm_in_place():
    torch.manual_seed(0)
    net = MeshNet(1, 2, channels=4, dilations=[1, 2], activation="gelu", bias=False, instance_norm=True).eval()
    x = torch.rand(1, 1, 9, 10, 11)
    y = net.layers[0].conv(x)
    mean = y.mean(dim=(2, 3, 4), keepdim=True)
    var = ((y - mean) ** 2).mean(dim=(2, 3, 4), keepdim=True)  # biased, as tf.moments
    expected = torch.nn.functional.gelu((y - mean) / torch.sqrt(var + INSTANCE_NORM_EPS))
    assert torch.allclose(net.layers[0](x), expected, atol=1e-5)
    assert not list(net.layers[0].norm.parameters())  # nothing learnt, nothing to load


def test_with_it_the_classes_do_not_depend_on_the_images_scale():
    """Bias-free convolutions, each followed by the normalisation: a brighter or darker image (the
    same up to a factor) gets the same output; without it, not."""
    torch.manual_seed(1)
    x = 100 * torch.rand(1, 1, 12, 12, 12)  # variances far above the epsilon
    for inorm, same in ((True, True), (False, False)):
        torch.manual_seed(2)
        net = MeshNet(1, 3, channels=5, dilations=[1, 2, 1], activation="gelu", bias=False,
                      instance_norm=inorm).eval()
        with torch.no_grad():
            a, b = net(x), net(7.0 * x)
        assert torch.allclose(a, b, atol=1e-4) is same


def test_per_layer_flags_and_mistakes():
    net = MeshNet(1, 2, channels=3, dilations=[1, 2, 4], instance_norm=[True, False, True])
    kinds = [type(b.norm).__name__ for b in net.layers]
    assert kinds == ["InstanceNorm3d", "Identity", "InstanceNorm3d"]
    with pytest.raises(ValueError, match="3 layers"):
        MeshNet(1, 2, channels=3, dilations=[1, 2, 4], instance_norm=[True])
    with pytest.raises(ValueError, match="not both"):
        MeshNet(1, 2, channels=3, dilations=[1], batch_norm=True, instance_norm=True)


def test_the_converter_reads_the_gn_names_and_the_card_keeps_them():
    if not BRAINCHOP.is_dir():
        pytest.skip("../shared/data is not present")
    from medvision.ai.networks.convert_brainchop import read_tfjs

    flags = {m: read_tfjs(BRAINCHOP / m)[0].get("instance_norm") for m in
             ("mindgrab", "model20chan3cls", "model30chan18cls", "model21_104class")}
    assert flags == {"mindgrab": True, "model20chan3cls": None, "model30chan18cls": None, "model21_104class": None}
    card = json.loads((ROOT / "models" / "brainchop-mindgrab" / "model.json").read_text())
    assert card["architecture"]["args"]["instance_norm"] is True
