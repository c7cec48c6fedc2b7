"""Saliency figures: the planted-cause pointing game, the shipped brain model on real T1s, and time.

    python benchmarks/bench_explain.py [--data ../shared/data] [--cases 10]

1. Planted cause: a small monai UNet trained here (seeded, one CPU thread) on noise volumes where a block
   is labelled exactly when a bright marker lies elsewhere (the block itself carries no signal). For each
   method, in how many of ``--cases`` new volumes the map's peak lies on the marker (pointing game), and
   the same for the network with every layer's weights randomised (it must not point there).
2. deepbet on real T1s (MNI template, MRIcrop, brain1): the share of the positive Grad-CAM and
   integrated-gradients mass inside deepbet's own brain mask dilated by 5 mm, for the "brain" region, and
   Grad-CAM's randomisation check figures.
3. Time on this machine for deepbet on the MNI T1: one forward + backward pass of the network alone (the
   baseline), Grad-CAM (ratio to the baseline; target at most 3), integrated gradients (steps, seconds,
   completeness), occlusion (patches, seconds), the job as a user runs it (preparing included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medvision.ai.explain.methods import (  # noqa: E402 - after the path is set
    LogitsOf,
    RegionScore,
    default_layer,
    gradcam,
    integrated_gradients,
    occlusion,
)
from medvision.ai.explain.planted import SIZE, hit, sample, target_region, train  # noqa: E402
from medvision.ai.explain.sanity import randomised  # noqa: E402


def planted(cases: int) -> None:
    net = train()
    score = RegionScore(1, target_region())
    layer = default_layer(net, torch.zeros(1, 1, SIZE, SIZE, SIZE))
    rand = randomised(net, 10_000, seed=3)
    rng = np.random.default_rng(42)
    hits = {k: [0, 0] for k in ("gradcam", "ig", "occlusion")}
    for _ in range(cases):
        x_np, _y, where = sample(rng, True)
        x = torch.from_numpy(x_np)[None]
        full = (slice(0, SIZE),) * 3
        for k, model in enumerate((net, rand)):
            hits["gradcam"][k] += hit(gradcam(model, x, score, layer), where, 3)
            hits["ig"][k] += hit(integrated_gradients(model, x, torch.zeros_like(x), score, max_steps=32)
                                  .attributions, where, 1)
            hits["occlusion"][k] += hit(occlusion(model, x, score, (4, 4, 4), full, 0.0), where, 3)
    print(f"planted cause (a {SIZE}^3 UNet trained here; Grad-CAM layer {layer}): peak on the marker in")
    for k, (real, random) in hits.items():
        print(f"  {k:10s} {real}/{cases} cases (randomised network: {random}/{cases})")


def _brain(pkg, volume):
    from medvision.ai.engine import infer_job
    from medvision.core.jobs import run_job

    mask = run_job(infer_job(pkg, volume)).labels.array > 0
    sp = volume.spacing[::-1]
    k = [2 * int(round(5 / s)) + 1 for s in sp]
    grown = F.max_pool3d(torch.from_numpy(mask.astype(np.float32))[None, None], k, 1, [q // 2 for q in k])[0, 0]
    return mask, grown.numpy() > 0


def real_t1s(data: Path) -> None:
    from medvision.ai.explain.job import ExplainOptions, explain_job
    from medvision.ai.package import Registry
    from medvision.core.jobs import run_job
    from medvision.io import load

    pkg = Registry().get("deepbet-t1-brain")
    print("\ndeepbet, region 'brain': positive mass inside its brain mask dilated by 5 mm")
    for name in ("volumes/mni152_t1_1mm.nii.gz", "labeled/MRIcrop-orig.gipl.gz", "labeled/brain1_image.nrrd"):
        volume = load(data / name)
        _mask, grown = _brain(pkg, volume)
        figures = []
        for method in ("gradcam", "ig"):
            opts = ExplainOptions(method=method, label="brain", device="cpu", sanity=method == "gradcam",
                                  ig_max_steps=16)
            r = run_job(explain_job(pkg, volume, opts))
            m = np.clip(r.map, 0, None)
            share = float(m[grown].sum() / m.sum()) if m.sum() > 0 else float("nan")
            extra = f", {r.check.summary()}" if r.check else f", completeness {100 * r.completeness_error:.0f} % " \
                                                              f"after {r.steps} steps"
            figures.append(f"{method} {100 * share:.0f} % ({r.seconds['total']:.0f} s{extra})")
        print(f"  {Path(name).name}: " + "; ".join(figures))


def timing(data: Path) -> None:
    from medvision.ai.explain.job import ExplainOptions, explain_job
    from medvision.ai.inference.prepare import load_networks, prepare_input, source_of
    from medvision.ai.options import InferenceOptions
    from medvision.ai.package import Registry
    from medvision.core.jobs import run_job
    from medvision.io import load

    volume = load(data / "volumes" / "mni152_t1_1mm.nii.gz")
    pkg = Registry().get("deepbet-t1-brain")
    opts = InferenceOptions(device="cpu")
    loaded = run_job(load_networks(pkg, opts))
    prep = run_job(prepare_input(pkg.card, source_of(volume, opts)[1], loaded, []))
    net = loaded.net.eval()
    x = prep.tensor.float()

    wrapped = LogitsOf(net)
    with torch.no_grad():
        region = wrapped(x).argmax(1)[0] == 1
    score = RegionScore(1, region)
    t0 = time.perf_counter()
    xg = x.clone().requires_grad_(True)
    score(wrapped(xg)).sum().backward()
    base = time.perf_counter() - t0
    layer = default_layer(wrapped, x)
    t0 = time.perf_counter()
    gradcam(wrapped, x, score, layer)
    cam = time.perf_counter() - t0
    print(f"\ntime, deepbet on the MNI T1 (input {tuple(x.shape[2:])}, {torch.get_num_threads()} threads):")
    print(f"  one forward + backward (baseline) {base:.1f} s; Grad-CAM ({layer}) {cam:.1f} s: "
          f"{cam / base:.2f}x the baseline (target at most 3x)")
    t0 = time.perf_counter()
    ig = integrated_gradients(wrapped, x, torch.zeros_like(x), score, max_steps=16)
    print(f"  integrated gradients: {ig.steps} steps, {time.perf_counter() - t0:.1f} s, completeness error "
          f"{100 * ig.completeness_error:.1f} %")
    t0 = time.perf_counter()
    r = run_job(explain_job(pkg, volume, ExplainOptions(method="occlusion", label="brain", device="cpu",
                                                        occlusion_patch=64)))
    print(f"  occlusion (patch 64 on the network's grid): {r.steps} patches, {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    run_job(explain_job(pkg, volume, ExplainOptions(label="brain", device="cpu")))
    print(f"  the Grad-CAM job as a user runs it (preparing the input included): {time.perf_counter() - t0:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cases", type=int, default=10)
    args = parser.parse_args()
    planted(args.cases)
    real_t1s(Path(args.data))
    timing(Path(args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
