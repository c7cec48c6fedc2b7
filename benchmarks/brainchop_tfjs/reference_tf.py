"""TensorFlow's own classes for brainchop's models on the WHOLE network inputs, compared with medvision's.

For each image (the MNI152 T1 and MRIcrop from ../shared/data) and each shipped brainchop package,
medvision's pipeline prepares the input exactly as it gives it to its PyTorch MeshNet (conform,
normalisation, crop box of the threshold or of the pre-model's mask, padding); the pre-model of
``brainchop-dkt-104`` (model5_gw_ae on the whole normalised 256^3 cube) is a case of its own. The
original tfjs layers model (``../shared/data/weights/brainchop/<model>/model.json`` and its
``.bin``) is loaded by the ``tensorflowjs`` Python package (``load_keras_model``: TF-Keras layers
with the tfjs weights) and run with TensorFlow's CPU kernels, one layer after the other as brainchop
applies them (each channel standardised after a convolution named ``*_gn``, as brainchop's
``LayerNormInPlace`` does for mindgrab; the 1^3 classifier on slabs of 16 planes: a pointwise layer,
so the same numbers), in
a separate interpreter (``--tfenv``, a virtual environment with the exact versions of
``requirements-tf.txt``: TensorFlow is no dependency of medvision). Then the PyTorch MeshNet runs on
the same input and the two argmaxes are compared: share of equal voxels, and per label the Dice and
the voxel counts of each.

``--store`` writes TensorFlow's classes of the whole network input (the crop box and, for mindgrab, its
20 voxels of zero padding, which the pipeline later cuts off) as uint8, compressed, with the box and
padding, to ``tests/data/brainchop/<image>-<model>-full.npz`` for tests/test_brainchop.py.
``--node MODEL ...`` also runs TensorFlow.js itself (``run_tfjs.cjs``, Node) on those models'
whole inputs and compares it with TensorFlow (slow: minutes to an hour per crop on tfjs's CPU
backends).

    .venv/bin/python benchmarks/brainchop_tfjs/reference_tf.py [--only ID ...] [--images mni mricrop]
        [--store] [--node MODEL ...] [--threads 1]

The TensorFlow environment (about 2 GB, in an ignored folder)::

    python3.11 -m venv benchmarks/out/tfenv
    benchmarks/out/tfenv/bin/pip install --no-deps -r benchmarks/brainchop_tfjs/requirements-tf.txt

(``--no-deps``: tensorflowjs 4.22.0 declares flax and a packaging pin its loader does not use; the
file pins everything its imports do need, tensorflow-decision-forests, tensorflow-hub and jax
included, since ``import tensorflowjs`` imports its converters.)
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

SHARED = Path(os.environ.get("MEDVISION_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEIGHTS = SHARED / "weights" / "brainchop"
IMAGES = {"mni": SHARED / "volumes" / "mni152_t1_1mm.nii.gz", "mricrop": SHARED / "labeled" / "MRIcrop-orig.gipl.gz"}
TESTS = ROOT / "tests" / "data" / "brainchop"
OUT = ROOT / "benchmarks" / "out" / "brainchop" / "tf"
TFENV = ROOT / "benchmarks" / "out" / "tfenv"
SLAB = 16


# ---- the TensorFlow side (runs in the TensorFlow environment: numpy, tensorflow, tensorflowjs only) ----------
def tf_worker(jobs_file: str, threads: int) -> int:
    """Run each job of ``jobs_file`` ([{model_dir, input, output}]) with TF-Keras; one JSON line per job."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tensorflowjs
    from tensorflowjs.converters import load_keras_model

    models: dict[str, object] = {}
    for job in json.loads(Path(jobs_file).read_text(encoding="utf-8")):
        if job["model_dir"] not in models:
            models[job["model_dir"]] = load_keras_model(str(Path(job["model_dir"]) / "model.json"))
        model = models[job["model_dir"]]
        layers = [la for la in model.layers if type(la).__name__ != "InputLayer"]
        for prev, layer in zip(model.layers, model.layers[1:], strict=False):  # a chain, as brainchop applies it
            inbound = layer.inbound_nodes[0].inbound_layers
            assert inbound is prev or inbound == [prev], f"{layer.name} does not follow {prev.name}"
        x = np.load(job["input"])
        t0 = time.perf_counter()
        feats = tf.constant(x[None, ..., None].astype(np.float32))
        for layer in layers[:-1]:
            feats = layer(feats)
            if layer.name.endswith("_gn"):  # brainchop's LayerNormInPlace after a '_gn' convolution (mindgrab)
                mean, variance = tf.nn.moments(feats, axes=[1, 2, 3], keepdims=True)
                feats = (feats - mean) * tf.math.rsqrt(variance + 1e-5)
        classifier = layers[-1]
        assert tuple(classifier.kernel_size) == (1, 1, 1), "the last layer is not a 1^3 classifier"
        labels = np.empty(x.shape, np.uint8)
        for start in range(0, x.shape[0], SLAB):
            logits = classifier(feats[:, start:start + SLAB])
            labels[start:start + SLAB] = tf.argmax(logits, axis=-1, output_type=tf.int32).numpy()[0]
        seconds = time.perf_counter() - t0
        np.save(job["output"], labels)
        print(json.dumps({"model": Path(job["model_dir"]).name, "shape": list(x.shape), "tf_seconds": round(seconds, 1),
                          "tensorflow": tf.__version__, "tensorflowjs": tensorflowjs.__version__,
                          "tf_keras": type(model).__module__.split(".")[0]}), flush=True)
    return 0


# ---- medvision's side ------------------------------------------------------------------------------------------
def network_cases(image: str, package_ids: list[str]) -> list[dict]:
    """For each package: the input its network gets from medvision's pipeline, its box and padding (and the
    pre-model's whole-cube input); a package the pipeline refuses for this image gives a ``skipped`` case."""
    import torch

    from medvision.ai.networks import brainchop_pipeline as bp
    from medvision.ai.networks.convert_brainchop import MODELS
    from medvision.ai.package import Registry
    from medvision.io import load

    conformed = bp.conform(load(IMAGES[image]))
    cube = torch.from_numpy(conformed.cube)
    full = (slice(0, bp.CONFORMED_SHAPE),) * 3
    cases = []
    for package_id in package_ids:
        pkg = Registry().get(package_id)
        pre = None
        if "pre_model" in pkg.card:
            spec = pkg.card["pre_model"]
            cases.append({"image": image, "package": package_id, "model": spec["source"], "part": "pre_model",
                          "x": bp.normalize(cube, spec["normalization"]["kind"]).numpy(), "box": full, "pad": 0})
            pre = bp.pre_mask_of(conformed, pkg.card, pkg.network("pre_model"), "cpu")
        try:
            x, box, pad = bp.prepare_input(conformed, pkg.card, pre, "cpu")
        except bp.BrainchopError as exc:  # as in brainchop, where it divides by zero
            cases.append({"image": image, "package": package_id, "model": MODELS[package_id]["source"],
                          "skipped": str(exc)})
            continue
        cases.append({"image": image, "package": package_id, "model": MODELS[package_id]["source"],
                      "part": "weights", "x": x[0, 0].numpy(), "box": box, "pad": pad})
    return cases


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    """Share of equal voxels and, per label present in either, Dice and the voxel counts (ours, reference)."""
    labels = {}
    for value in np.union1d(np.unique(ours), np.unique(ref)).tolist():
        if value == 0:
            continue
        a, b = ours == value, ref == value
        na, nb, both = int(a.sum()), int(b.sum()), int((a & b).sum())
        labels[int(value)] = {"dice": round(2.0 * both / (na + nb), 5), "ours": na, "ref": nb}
    return {"equal_voxels": round(float((ours == ref).mean()), 7), "differing": int((ours != ref).sum()),
            "labels": len(labels), "min_dice": min((v["dice"] for v in labels.values()), default=1.0),
            "per_label": labels}


def run_tf(cases: list[dict], tfenv: Path, threads: int) -> dict[str, dict]:
    """TensorFlow's classes of every case (one TensorFlow process for all): {stem: {labels, info}}."""
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = []
    for case in cases:
        stem = f"{case['image']}-{case['model']}"
        np.save(OUT / f"{stem}-input.npy", case["x"])
        jobs.append({"model_dir": str(WEIGHTS / case["model"]), "input": str(OUT / f"{stem}-input.npy"),
                     "output": str(OUT / f"{stem}-tf.npy")})
    (OUT / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    python = tfenv / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"{python} is missing: create the TensorFlow environment (see this script's docstring)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS=str(threads))
    done = subprocess.run([str(python), __file__, "--worker", str(OUT / "jobs.json"), "--threads", str(threads)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"TensorFlow failed: {done.stderr[-3000:]}")
    infos = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    out = {}
    for case, job, info in zip(cases, jobs, infos, strict=True):
        out[f"{case['image']}-{case['model']}"] = {"labels": np.load(job["output"]), "info": info}
        os.remove(job["input"])
    return out


def run_node(case: dict) -> tuple[np.ndarray, float]:
    """TensorFlow.js itself (Node, ``run_tfjs.cjs``) on the case's whole input."""
    stem = OUT / f"{case['image']}-{case['model']}-node"
    np.ascontiguousarray(case["x"], dtype="<f4").tofile(f"{stem}.f32")
    t0 = time.perf_counter()
    done = subprocess.run(["node", str(HERE / "run_tfjs.cjs"), str(WEIGHTS / case["model"]), f"{stem}.f32",
                           *map(str, case["x"].shape), f"{stem}.u8", os.environ.get("TFJS_BACKEND", "wasm")],
                          capture_output=True, text=True, check=False)
    os.remove(f"{stem}.f32")
    if done.returncode != 0:
        raise RuntimeError(f"tfjs failed on {case['model']}: {done.stderr[-2000:]}")
    return np.fromfile(f"{stem}.u8", np.uint8).reshape(case["x"].shape), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="package ids (default: all brainchop packages)")
    parser.add_argument("--images", nargs="*", default=list(IMAGES), choices=list(IMAGES))
    parser.add_argument("--store", action="store_true", help="write TensorFlow's classes to tests/data/brainchop")
    parser.add_argument("--node", nargs="*", default=[], help="models to run with TensorFlow.js on Node as well")
    parser.add_argument("--tfenv", type=Path, default=TFENV)
    args = parser.parse_args(argv)
    if args.worker:
        return tf_worker(args.worker, args.threads)
    sys.path.insert(0, str(ROOT))
    import torch

    from medvision.ai.networks import brainchop_pipeline as bp
    from medvision.ai.networks.convert_brainchop import MODELS
    from medvision.ai.package import Registry

    torch.set_num_threads(args.threads)
    for image in args.images:
        cases = network_cases(image, args.only or list(MODELS))
        for case in cases:
            if "skipped" in case:
                print(json.dumps({k: case[k] for k in ("image", "package", "model", "skipped")}), flush=True)
        cases = [c for c in cases if "skipped" not in c]
        tf_out = run_tf(cases, args.tfenv, args.threads)
        for case in cases:
            stem = f"{case['image']}-{case['model']}"
            ref = tf_out[stem]["labels"]
            net = Registry().get(case["package"]).network(case["part"])
            t0 = time.perf_counter()
            ours, _ = bp.predict(net, torch.from_numpy(case["x"])[None, None])
            seconds = time.perf_counter() - t0
            ours = ours.numpy()
            record = {"image": image, "package": case["package"], "model": case["model"], "shape": list(ref.shape),
                      "box": [[s.start, s.stop] for s in case["box"]], "padding": case["pad"],
                      **tf_out[stem]["info"], "torch_seconds": round(seconds, 1),
                      "torch_vs_tf": compare(ours, ref)}
            if case["model"] in args.node:
                node, node_seconds = run_node(case)
                record["tfjs_node_seconds"] = round(node_seconds, 1)
                record["tfjs_vs_tf"] = compare(node, ref)
            print(json.dumps(record), flush=True)
            if args.store:
                TESTS.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(TESTS / f"{stem}-full.npz", labels=ref,
                                    box=np.array([[s.start, s.stop] for s in case["box"]]),
                                    padding=np.array(case["pad"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
