"""Inference benchmark: ``medvision infer`` end to end against the bare networks, and the window's
responsiveness while a model runs.

1. The shipped deepbet brain extraction on the MNI152 T1 (197x233x189, ../shared/data) or, without
   it, on the T1-like synthetic head below: the whole job (`infer_job`: reorient, localizer, crop,
   resize, normalise, segmenter, map back, largest component, hole filling) against the two bare
   networks run through monai's ``sliding_window_inference`` (one window each: deepbet sees the whole
   crop) on the same prepared tensors, in the same run.
2. A sliding-window model (monai UNet, random weights, 96^3 windows, overlap 0.5, Gaussian) on the
   bundled CT tiled to 512x512x160: `infer_job` against ``sliding_window_inference`` with the same
   network, windows and input tensor.
3. The window (offscreen) running the deepbet model from the Models dock: the longest gap between
   5 ms timer ticks on the event loop while it runs (target < 100 ms).

    python benchmarks/bench_infer.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

MNI = ROOT.parent / "shared" / "data" / "volumes" / "mni152_t1_1mm.nii.gz"


def t1_volume():
    from medvision.io import load

    if MNI.exists():
        return load(MNI), "MNI152 T1 1 mm (197x233x189)"
    from medvision.core.volume import Volume

    z, y, x = np.mgrid[:160, :200, :170].astype(np.float32)
    head = ((z - 80) / 70) ** 2 + ((y - 100) / 85) ** 2 + ((x - 85) / 70) ** 2
    array = np.where(head < 1, 600, 0) + np.where(head < 0.8, 200, 0)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    return Volume(array.astype(np.int16), affine, None, {"modality": "MR"}), "synthetic head 170x200x160"


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def bench_deepbet(device: str, repeats: int = 5) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from medvision.ai.engine import InferenceOptions, infer_job
    from medvision.ai.package import Registry
    from medvision.ai.preprocess import prepare
    from medvision.core.jobs import run_job

    volume, what = t1_volume()
    pkg = Registry().get("deepbet-t1-brain")
    seg, loc = pkg.network(device=device), pkg.network("localizer", device=device)
    card = pkg.card
    prep = prepare(card, volume, loc, device)
    small = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(
        volume.reoriented("RAS").array.transpose(2, 1, 0)).astype(np.float32))[None, None],
        tuple(card["localizer"]["input_shape"]), mode="nearest-exact").to(device)
    x = prep.tensor.to(device)
    base, ours, result = [], [], None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            sliding_window_inference(small, tuple(small.shape[2:]), 1, loc)
            sliding_window_inference(x, tuple(x.shape[2:]), 1, seg)
        _sync(device)
        base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = run_job(infer_job(pkg, volume, InferenceOptions(device=device)))
        ours.append(time.perf_counter() - t0)
    ml = float((result.labels.array > 0).sum() * result.labels.voxel_volume_ml())
    return {"image": what, "device": device, "medvision_infer_s": round(min(ours), 3),
            "baseline_bare_networks_sliding_window_s": round(min(base), 3),
            "ratio": round(min(ours) / min(base), 3), "brain_ml": round(ml, 1), "stages_s":
            {k: round(v, 3) for k, v in result.seconds.items()}}


def bench_sliding(device: str, slices: int = 160) -> dict:
    import bench_viewer
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import UNet
    from safetensors.torch import save_file

    from medvision.ai.engine import InferenceOptions, infer_job
    from medvision.ai.package import ModelPackage, sha256_of, write_card
    from medvision.ai.preprocess import prepare
    from medvision.core.jobs import run_job

    ct = bench_viewer.big_ct(slices)
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2], "num_res_units": 1}
    net = UNet(**args)
    folder = Path(tempfile.mkdtemp(prefix="bench-unet-"))
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    card = {"format": "medvision-model", "id": "bench-unet", "version": "0", "name": "bench UNet",
            "task": "segmentation", "modality": "CT", "dims": 3,
            "architecture": {"name": "monai.UNet", "args": args},
            "weights": {"file": "weights.safetensors", "sha256": sha256_of(folder / "weights.safetensors")},
            "input": {"orientation": "RAS", "normalization": {"kind": "ct", "low": -200, "high": 300}},
            "inference": {"mode": "sliding_window",
                          "sliding_window": {"roi_size": [96, 96, 96], "overlap": 0.5, "blend": "gaussian",
                                             "batch_size": 2}},
            "output": {"activation": "softmax"}, "labels": [{"value": 1, "name": "a"}, {"value": 2, "name": "b"}]}
    write_card(folder, card)
    pkg = ModelPackage.open(folder)
    x = prepare(card, ct).tensor.to(device)
    net = pkg.network(device=device)
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = sliding_window_inference(x, (96, 96, 96), 2, lambda b: torch.softmax(net(b), 1), overlap=0.5,
                                       mode="gaussian")
        out.argmax(1)
    _sync(device)
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_job(infer_job(pkg, ct, InferenceOptions(device=device)))
    ours = time.perf_counter() - t0
    return {"image": f"CT 512x512x{slices} int16", "device": device, "medvision_infer_s": round(ours, 3),
            "baseline_sliding_window_inference_s": round(base, 3), "ratio": round(ours / base, 3)}


def bench_gui_stall(device: str) -> dict:
    import bench_viewer
    from PySide6.QtCore import QTimer

    volume, what = t1_volume()
    app, window = bench_viewer.bench_window(volume)
    panel = window.annotating.models
    panel.select("deepbet-t1-brain")
    panel.device_combo.setCurrentText(device)
    gaps, last = [], [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    t0 = time.perf_counter()
    panel.run()
    while panel.proposal is None and time.perf_counter() - t0 < 900:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    seconds = time.perf_counter() - t0
    window.annotating.annotation.discard_recovery()
    window.close()
    return {"image": what, "run_s": round(seconds, 2), "longest_stall_ms": round(max(gaps) * 1000, 1),
            "p99_gap_ms": round(float(np.percentile(gaps, 99)) * 1000, 1), "ticks": len(gaps)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    result = {"machine_cpus": os.cpu_count(), "device": args.device}
    print("== deepbet: medvision infer vs the bare networks", flush=True)
    result["deepbet"] = bench_deepbet(args.device)
    print(json.dumps(result["deepbet"], indent=1), flush=True)
    print("== sliding-window UNet on CT", flush=True)
    result["sliding"] = bench_sliding(args.device)
    print(json.dumps(result["sliding"], indent=1), flush=True)
    print("== the window while deepbet runs", flush=True)
    result["gui"] = bench_gui_stall(args.device)
    print(json.dumps(result["gui"], indent=1), flush=True)
    d, s, g = result["deepbet"], result["sliding"], result["gui"]
    print("\n== summary (targets in brackets)")
    print(f"deepbet end to end {d['medvision_infer_s']} s vs bare networks "
          f"{d['baseline_bare_networks_sliding_window_s']} s: ratio {d['ratio']} [<=1.15]  "
          f"({d['image']}, brain {d['brain_ml']} mL)")
    print(f"sliding-window UNet end to end {s['medvision_infer_s']} s vs sliding_window_inference "
          f"{s['baseline_sliding_window_inference_s']} s: ratio {s['ratio']} [<=1.15]")
    print(f"window while the model runs: longest stall {g['longest_stall_ms']} ms [<100]")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / f"infer_{args.device}.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / f'infer_{args.device}.json'}")


if __name__ == "__main__":
    main()
