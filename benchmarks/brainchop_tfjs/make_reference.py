"""TensorFlow.js's own classes for brainchop's models on real T1 images: the reference medvision's MeshNet
is compared with (tests/test_brainchop.py, benchmarks/bench_brainchop.py).

For each image (the MNI152 T1 and MRIcrop from ../shared/data) and each shipped brainchop package,
medvision's pipeline prepares the network input exactly as it gives it to its PyTorch MeshNet
(conform, normalisation, crop or pre-model mask, padding); the input is written as raw float32 and
``run_tfjs.cjs`` runs the original tfjs model (``../shared/data/weights/brainchop``) on it with
TensorFlow.js and writes the argmax. Two sizes:

* ``block``: the 48^3 block at the centre of the network input (about a minute per model in tfjs's
  pure-JavaScript CPU backend), a quick look;
* ``full`` (``--full``): the whole network input (the crop brainchop runs; 5-40 minutes per model);
  compared by ``bench_brainchop.py``.

Both are saved under ``benchmarks/out/brainchop/``. The tests compare with TensorFlow's classes of the
whole inputs (``reference_tf.py``, which can also run this Node script on a whole input with ``--node``;
on MRIcrop's whole 104-class crop, TF-Keras and tfjs on Node gave the same classes voxel for voxel).

The pre-model of ``brainchop-dkt-104`` (model5_gw_ae on the whole 256^3 cube) is compared too.

    python benchmarks/brainchop_tfjs/make_reference.py [--full] [--only ID ...] [--images mni mricrop]

Needs Node 20 and the packages of this folder's package.json installed into benchmarks/out/tfjs
(``cp benchmarks/brainchop_tfjs/package*.json benchmarks/out/tfjs/ && npm ci --prefix benchmarks/out/tfjs``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("MEDVISION_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEIGHTS = SHARED / "weights" / "brainchop"
IMAGES = {"mni": SHARED / "volumes" / "mni152_t1_1mm.nii.gz", "mricrop": SHARED / "labeled" / "MRIcrop-orig.gipl.gz"}
OUT = ROOT / "benchmarks" / "out" / "brainchop"
BLOCK = 48


def inputs(image: str, package_id: str) -> dict[str, np.ndarray]:
    """{network name: its input (D, H, W) float32} for one image and package (pre-model too)."""
    import torch

    from medvision.ai.networks import brainchop_pipeline as bp
    from medvision.ai.package import Registry
    from medvision.io import load

    torch.set_num_threads(1)
    pkg = Registry().get(package_id)
    conformed = bp.conform(load(IMAGES[image]))
    out = {}
    pre = None
    if "pre_model" in pkg.card:
        pre_spec = pkg.card["pre_model"]
        cube = torch.from_numpy(conformed.cube)
        out[pre_spec["source"]] = bp.normalize(cube, pre_spec["normalization"]["kind"]).numpy()
        pre = bp.pre_mask_of(conformed, pkg.card, pkg.network("pre_model"), "cpu")
    x, _, _ = bp.prepare_input(conformed, pkg.card, pre, "cpu")
    from medvision.ai.networks.convert_brainchop import MODELS

    out[MODELS[package_id]["source"]] = x[0, 0].numpy()
    return out


def centre_block(x: np.ndarray, size: int = BLOCK) -> tuple[slice, ...]:
    return tuple(slice(max(0, (n - size) // 2), max(0, (n - size) // 2) + min(size, n)) for n in x.shape)


def run_tfjs(model: str, x: np.ndarray, stem: Path) -> tuple[np.ndarray, float]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(x, dtype="<f4").tofile(f"{stem}.f32")
    t0 = time.perf_counter()
    done = subprocess.run(["node", str(HERE / "run_tfjs.cjs"), str(WEIGHTS / model), f"{stem}.f32", *map(str, x.shape),
                           f"{stem}.u8", os.environ.get("TFJS_BACKEND", "cpu")],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tfjs failed on {model}: {done.stderr[-2000:]}")
    labels = np.fromfile(f"{stem}.u8", np.uint8).reshape(x.shape)
    os.remove(f"{stem}.f32")
    return labels, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the whole network inputs (slow) instead of blocks")
    parser.add_argument("--only", nargs="*", help="package ids (default: all brainchop packages)")
    parser.add_argument("--images", nargs="*", default=list(IMAGES), choices=list(IMAGES))
    args = parser.parse_args(argv)
    from medvision.ai.networks.convert_brainchop import MODELS

    for image in args.images:
        for package_id in args.only or list(MODELS):
            from medvision.ai.networks.brainchop_pipeline import BrainchopError

            try:
                prepared = inputs(image, package_id)
            except BrainchopError as exc:  # as in brainchop, where it divides by zero
                print(json.dumps({"image": image, "package": package_id, "skipped": str(exc)}), flush=True)
                continue
            for model, x in prepared.items():
                if args.full:
                    stem = OUT / f"{image}-{model}-full"
                    labels, seconds = run_tfjs(model, x, stem)
                    np.savez_compressed(f"{stem}.npz", labels=labels)
                else:
                    box = centre_block(x)
                    stem = OUT / f"{image}-{model}-block"
                    labels, seconds = run_tfjs(model, x[box], stem)
                    np.savez_compressed(f"{stem}.npz", labels=labels,
                                        start=np.array([s.start for s in box]), input_shape=np.array(x.shape))
                print(json.dumps({"image": image, "package": package_id, "model": model, "shape": list(x.shape),
                                  "tfjs_seconds": round(seconds, 1), "classes": np.unique(labels).tolist()}),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
