"""Saliency maps: a planted cause found by each method (a network trained here on volumes where a label
depends only on a marker elsewhere), the randomisation check passing for the real explainers and failing
for one that ignores the model, the job on the shipped brain model (the map on the exact grid in any
storage order, deterministic, its mass on the brain), the `medvision explain` command and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvision.ai.explain.methods import RegionScore, default_layer, gradcam, integrated_gradients, occlusion
from medvision.ai.explain.sanity import randomisation_check, spearman

SIZE = 24
TARGET = (slice(14, 20), slice(8, 16), slice(8, 16))  # where the label is: no signal of its own there


def _sample(rng: np.random.Generator, marked: bool):
    """Noise everywhere; with ``marked``, a bright 3-voxel cube somewhere in the first third of x, and then
    the label over TARGET (the image there is the same noise either way)."""
    x = rng.normal(0, 0.3, (1, SIZE, SIZE, SIZE)).astype(np.float32)
    y = np.zeros((SIZE, SIZE, SIZE), np.int64)
    where = None
    if marked:
        where = (int(rng.integers(1, 6)), int(rng.integers(3, SIZE - 6)), int(rng.integers(3, SIZE - 6)))
        x[0, where[0]:where[0] + 3, where[1]:where[1] + 3, where[2]:where[2] + 3] += 2.0
        y[TARGET] = 1
    return x, y, where


@pytest.fixture(scope="module")
def planted():
    """A small monai UNet trained (seeded, CPU) until it labels TARGET exactly when the marker is there."""
    from monai.networks.nets import UNet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (the same sums in the same order on any machine: the same network)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = UNet(3, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(400):
        batch = [_sample(rng, bool(k % 2)) for k in range(4)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    net.eval()
    return net


def _hit(m: torch.Tensor, where, reach: int) -> bool:
    peak = np.unravel_index(int(torch.argmax(m)), tuple(m.shape))
    return all(w - reach <= p < w + 3 + reach for p, w in zip(peak, where, strict=True))


@pytest.mark.slow
def test_each_method_points_at_the_planted_cause_and_a_random_model_does_not(planted):
    rng = np.random.default_rng(42)
    region = torch.zeros((SIZE,) * 3, dtype=torch.bool)
    region[TARGET] = True
    score = RegionScore(1, region)
    layer = default_layer(planted, torch.zeros(1, 1, SIZE, SIZE, SIZE))
    hits = {"gradcam": 0, "ig": 0, "occlusion": 0, "random": 0}
    from medvision.ai.explain.sanity import randomised

    random_net = randomised(planted, 10_000, seed=3)
    for _ in range(10):
        x_np, _y, where = _sample(rng, True)
        x = torch.from_numpy(x_np)[None]
        with torch.no_grad():  # the network learnt the rule: the label with the marker, none without
            assert (planted(x).argmax(1)[0][TARGET] == 1).float().mean() > 0.8
            bare = torch.from_numpy(_sample(rng, False)[0])[None]
            assert (planted(bare).argmax(1)[0][TARGET] == 1).float().mean() < 0.2
        hits["gradcam"] += _hit(gradcam(planted, x, score, layer), where, 3)
        ig = integrated_gradients(planted, x, torch.zeros_like(x), score, tolerance=0.05, max_steps=32)
        hits["ig"] += _hit(ig.attributions, where, 1)
        full = (slice(0, SIZE),) * 3
        hits["occlusion"] += _hit(occlusion(planted, x, score, (4, 4, 4), full, 0.0), where, 3)
        rig = integrated_gradients(random_net, x, torch.zeros_like(x), score, tolerance=0.05, max_steps=16)
        hits["random"] += _hit(rig.attributions, where, 1)
    assert hits["gradcam"] >= 9 and hits["ig"] >= 9 and hits["occlusion"] >= 9, hits
    assert hits["random"] <= 3, hits


def test_integrated_gradients_meet_completeness_by_doubling_their_steps(planted):
    x = torch.from_numpy(_sample(np.random.default_rng(5), True)[0])[None]
    region = torch.zeros((SIZE,) * 3, dtype=torch.bool)
    region[TARGET] = True
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


def test_the_randomisation_check_passes_real_maps_and_fails_an_edge_detector(planted):
    x = torch.from_numpy(_sample(np.random.default_rng(7), True)[0])[None]
    region = torch.zeros((SIZE,) * 3, dtype=torch.bool)
    region[TARGET] = True
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
def test_gradcam_on_the_shipped_brain_model_lands_on_the_exact_grid_in_any_storage_order(shared_data):
    from medvision.ai.explain.job import ExplainOptions, explain_job
    from medvision.ai.package import Registry
    from medvision.core.jobs import run_job
    from medvision.core.volume import Volume
    from medvision.io import load

    volume = load(shared_data / "labeled" / "MRIcrop-orig.gipl.gz")
    pkg = Registry().get("deepbet-t1-brain")
    result = run_job(explain_job(pkg, volume, ExplainOptions(label="brain", device="cpu")))
    assert result.map.shape == volume.shape and result.map.dtype == np.float32
    assert result.layer and 0.5 < float(result.map.max()) <= 1.0
    flipped = volume.reoriented("RAI")
    other = run_job(explain_job(pkg, flipped, ExplainOptions(label="brain", device="cpu")))
    back = Volume(other.map, flipped.affine, None, {}).reoriented(volume.orientation).array
    assert spearman(torch.from_numpy(back), torch.from_numpy(result.map)) > 0.95
    again = run_job(explain_job(pkg, volume, ExplainOptions(label="brain", device="cpu")))
    assert np.array_equal(again.map, result.map)


def test_the_explain_command_and_its_refusals(tmp_path, capsys, shared_data):
    from medvision.cli import main
    from medvision.cli_explain import parse_box

    image = shared_data / "labeled" / "MRIcrop-orig.gipl.gz"
    out = tmp_path / "map.nii.gz"
    assert main(["explain", str(image), "--model", "deepbet-t1-brain", "--label", "brain", "-o", str(out),
                 "--device", "cpu", "-q"]) == 0
    said = capsys.readouterr().out
    assert "Grad-CAM at layer" in said and out.is_file() and (tmp_path / "map.json").is_file()
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
