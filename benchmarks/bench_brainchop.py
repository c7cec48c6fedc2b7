"""brainchop's models in medvision, measured: time, agreement with TensorFlow.js, accuracy, plausibility.

1. Each package run by the engine (``infer_job``: conform, pre-model, crop, MeshNet, largest
   component, back to the image grid) on the MNI152 T1: seconds per model and label volumes.
2. Equality with the original on whole network inputs: the PyTorch MeshNet on the input the pipeline
   gives it (pre-model mask, crop, padding) against TensorFlow's classes stored in
   ``tests/data/brainchop/*-full.npz`` by ``brainchop_tfjs/reference_tf.py`` (every model on the MNI
   T1 and MRIcrop; the suite checks one crop per model), and against TensorFlow.js's where
   ``make_reference.py --full`` left them in ``benchmarks/out/brainchop/*-full.npz``: share of equal
   voxels, the lowest Dice of any label and the Dice of each.
3. Grey/white matter (brainchop-gwm) against the MNI template's probability maps (> 0.5).
4. The 18-class model's hippocampus, caudate and ventricles against MRIcrop's hand-drawn labels.
5. mindgrab's brain mask against deepbet's (Dice, mL), and the share of each tissue label outside
   either mask (target < 1 %).
6. Tissue volumes (mL) on every real T1: MNI T1, MRIcrop, brain1_image.

    python benchmarks/bench_brainchop.py [--threads N] [--skip-tfjs] [--only-tfjs]

Needs ../shared/data; figures are printed as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "brainchop_tfjs"))

SHARED = Path(os.environ.get("MEDVISION_SHARED_DATA", ROOT.parent / "shared" / "data"))
T1 = {"mni": SHARED / "volumes" / "mni152_t1_1mm.nii.gz", "mricrop": SHARED / "labeled" / "MRIcrop-orig.gipl.gz",
      "brain1": SHARED / "labeled" / "brain1_image.nrrd"}
OUT = ROOT / "benchmarks" / "out" / "brainchop"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return round(2.0 * int((a & b).sum()) / total, 4) if total else 1.0


def _emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def _run(package_id: str, volume, threads: int):
    from medvision.ai.engine import infer_job
    from medvision.ai.options import InferenceOptions
    from medvision.ai.package import Registry
    from medvision.core.jobs import run_job

    pkg = Registry().get(package_id)
    t0 = time.perf_counter()
    result = run_job(infer_job(pkg, volume, InferenceOptions(device=os.environ.get("DEVICE", "cpu"), threads=threads)))
    return result, time.perf_counter() - t0


def _volumes(labels) -> dict[str, float]:
    ml = labels.voxel_volume_ml()
    counts = np.bincount(labels.array.ravel())
    return {labels.table[v].name: round(float(counts[v] * ml), 1) for v in labels.table.values() if v < counts.size}


def tfjs_equality(threads: int) -> None:
    import reference_tf as rt
    import torch

    from medvision.ai.networks import brainchop_pipeline as bp
    from medvision.ai.networks.convert_brainchop import MODELS
    from medvision.ai.package import Registry

    torch.set_num_threads(threads)
    for image in rt.IMAGES:
        for case in rt.network_cases(image, list(MODELS)):
            if "skipped" in case:
                _emit(check="tensorflow-equality", image=image, model=case["model"], skipped=case["skipped"])
                continue
            refs = {"tensorflow": rt.TESTS / f"{image}-{case['model']}-full.npz",
                    "tfjs-node": OUT / f"{image}-{case['model']}-full.npz"}
            refs = {k: v for k, v in refs.items() if v.is_file()}
            if not refs:
                continue
            net = Registry().get(case["package"]).network(case["part"])
            t0 = time.perf_counter()
            ours, _ = bp.predict(net, torch.from_numpy(case["x"])[None, None])
            seconds = time.perf_counter() - t0
            for kind, path in refs.items():
                ref = np.load(path)
                box = [[s.start, s.stop] for s in case["box"]]
                if "box" in ref and ref["box"].tolist() != box:
                    _emit(check=f"{kind}-equality", image=image, model=case["model"],
                          error=f"the pipeline's crop box {box} is not the reference's {ref['box'].tolist()}")
                    continue
                figures = rt.compare(ours.numpy(), ref["labels"])
                _emit(check=f"{kind}-equality", image=image, model=case["model"], shape=list(case["x"].shape),
                      torch_seconds=round(seconds, 1), **figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-tfjs", action="store_true", help="leave out the equality with TensorFlow(.js)")
    parser.add_argument("--only-tfjs", action="store_true", help="only the equality with TensorFlow(.js)")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print("../shared/data is not present", file=sys.stderr)
        return 1
    import torch

    from medvision.ai.networks.convert_brainchop import MODELS
    from medvision.io import load

    torch.set_num_threads(args.threads)
    if args.only_tfjs:
        tfjs_equality(args.threads)
        return 0
    volumes = {k: load(p) for k, p in T1.items()}
    results: dict[tuple[str, str], object] = {}
    from medvision.ai.networks.brainchop_pipeline import BrainchopError

    for image in ("mni", "mricrop", "brain1"):
        for package_id in MODELS:
            try:
                result, seconds = _run(package_id, volumes[image], args.threads)
            except BrainchopError as exc:  # as brainchop, which would divide by zero (gwm on a small crop)
                _emit(check="run", image=image, package=package_id, refused=str(exc))
                continue
            results[(image, package_id)] = result
            _emit(check="run", image=image, package=package_id, seconds=round(seconds, 1),
                  steps={k: round(v, 1) for k, v in result.seconds.items()}, volumes_ml=_volumes(result.labels),
                  implausible=result.implausible)
    # grey/white matter against the template's probability maps
    gwm = results[("mni", "brainchop-gwm")].labels
    gm = load(SHARED / "volumes" / "mni152_gm_prob_1mm.nii.gz").array.astype(np.float32) / 255 > 0.5
    wm = load(SHARED / "volumes" / "mni152_wm_prob_1mm.nii.gz").array.astype(np.float32) / 255 > 0.5
    names = {gwm.table[v].name: v for v in gwm.table.values()}
    _emit(check="gwm-vs-mni-prob", grey_dice=_dice(gwm.array == names["Grey Matter"], gm),
          white_dice=_dice(gwm.array == names["White Matter"], wm), grey_ml_template=round(gm.sum() / 1000, 1),
          white_ml_template=round(wm.sum() / 1000, 1))
    # the 18-class model against MRIcrop's hand-drawn labels
    seg = load(SHARED / "labeled" / "MRIcrop-seg.gipl.gz").array
    sub = results[("mricrop", "brainchop-subcortical-18")].labels
    names = {sub.table[v].name: v for v in sub.table.values()}
    pairs = {"hippocampus": ("Hippocampus", [4, 5]), "caudate": ("Caudate", [7]),
             "lateral ventricles": ("Lateral-Ventricle", [1]), "third ventricle": ("3rd-Ventricle", [2]),
             "fourth ventricle": ("4th-Ventricle", [3])}
    _emit(check="subcortical-vs-mricrop", dice={k: _dice(sub.array == names[n], np.isin(seg, v))
                                                for k, (n, v) in pairs.items()})
    # tissue outside the brain masks
    from medvision.ai.networks.deepbet_pipeline import brain_mask
    from medvision.ai.package import Registry

    deepbet = Registry().get("deepbet-t1-brain")
    for image in ("mni", "mricrop", "brain1"):
        masks = {"mindgrab": results[(image, "brainchop-mindgrab")].labels.array > 0}
        try:
            masks["deepbet"] = brain_mask(volumes[image], deepbet.network(), deepbet.network("localizer"))
        except ValueError as exc:
            _emit(check="deepbet", image=image, error=str(exc))
        else:
            ml = results[(image, "brainchop-mindgrab")].labels.voxel_volume_ml()
            _emit(check="mindgrab-vs-deepbet", image=image, dice=_dice(masks["mindgrab"], masks["deepbet"] > 0),
                  mindgrab_ml=round(float(masks["mindgrab"].sum() * ml), 1),
                  deepbet_ml=round(float((masks["deepbet"] > 0).sum() * ml), 1))
        for package_id in ("brainchop-gwm", "brainchop-subcortical-18"):
            if (image, package_id) not in results:
                continue
            labels = results[(image, package_id)].labels
            for mask_name, mask in masks.items():
                share = {labels.table[v].name: round(float((labels.array[~mask] == v).sum())
                                                     / max(1, int((labels.array == v).sum())) * 100, 2)
                         for v in labels.table.values() if (labels.array == v).any()}
                _emit(check="outside-brain-percent", image=image, package=package_id, mask=mask_name,
                      worst=max(share.values(), default=0.0), per_label=share)
    if not args.skip_tfjs:
        tfjs_equality(args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
