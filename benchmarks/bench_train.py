"""Fine-tuning benchmark: transfer learning from a shipped brain model (``--base``, default
brainchop-subcortical-18) against training the same network from scratch, on real hand-labelled single
cases, structures the base does not know, at the same CPU budget; and the speed of ``train_job``
against a plain monai training loop.

1. Two single cases of ../shared/data/labeled, each split by region (the trainer's one-case split,
   ``TrainingData.split``: a slab of 25 %, a third or a half at one end of one axis for validation,
   the smallest that leaves every label at least 20 % of its voxels on each side; the rest for
   training; which slab is printed; for a brainchop base in the conformed cube's crop):
   * MRIcrop-orig + MRIcrop-seg (ITK-SNAP labels): the corpus callosum (not among the 18 classes);
   * brain1_image + brain1_label: the tumour.
   Each is trained with the trainer's defaults (``TrainConfig``; for a brainchop base the images as
   the base sees them: conformed to 256^3 1 mm LIA, normalised, cropped, see
   ``medvision.ai.training.conformed``; every base weight but the output head; the new head fitted
   first, alone, to the base's features on 16 training patches and kept only when it beats the
   class frequencies on the validation data (``head_init="auto"``; otherwise, and from scratch: the
   class priors); no freeze; class-balanced patches) fine-tuned from the base and from scratch
   (random weights, same architecture, same recipe), for each seed of ``--seeds``, with the same
   budget: the same number of iterations (``--epochs`` x ``--patches-per-epoch`` / 2, batch 2,
   ``--patch``). ``--jobs 2`` (default) runs the fine-tune and the scratch run of a seed side by
   side, one thread each, so both see the same machine load. The best validation Dice (mean and
   per label; the epoch is chosen on the validation region, alike for both arms) is reported per
   seed, with the paired difference (fine-tuned - scratch, per seed, its paired t) and the mean and
   spread over seeds; and each new package run by the engine (``medvision infer``'s job) on the case:
   Dice against the labels on the image's own grid, whole image and validation slab.
2. Iterations per second of ``train_job`` (its training phase, and with its per-epoch checkpoint)
   against a plain loop over the same network, the same patch sampler (same seed: the same
   patches), DiceCE loss and AdamW: ``for x, y in batches: loss = loss_fn(net.logits(x), y);
   loss.backward(); opt.step()``. Target ratio >= 0.9.

    python benchmarks/bench_train.py [--seeds 0 1] [--epochs 6] [--only mricrop|brain1] [--jobs 2]
                                     [--patch 32 32 32] [--patches-per-epoch 100]
                                     [--val-slab x-last] [--arms fine-tune scratch]
                                     [--transfer encoder] [--head-init prior]
                                     [--skip-compare] [--skip-speed]

Results go to stdout and benchmarks/out/bench_train.json. Packages are written to a temporary
MEDVISION_HOME (never the user's models).
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

DATA = Path(os.environ.get("MEDVISION_SHARED_DATA", ROOT.parent / "shared" / "data")) / "labeled"
BASE = "deepbet-t1-brain"  # the speed comparison's network
FINE_TUNE_BASE = "brainchop-subcortical-18"  # the default base of the fine-tuning comparison

CASES = {
    "mricrop": {
        "datalist": {"training": [{"image": str(DATA / "MRIcrop-orig.gipl.gz"),
                                   "label": str(DATA / "MRIcrop-seg.gipl.gz"), "case": "MRIcrop"}]},
        "groups": {"corpus-callosum": ["corpus-callosum"]},  # a structure brainchop's 18 classes do not have
    },
    "brain1": {
        "datalist": {"labels": {"tumour": 1},
                     "training": [{"image": str(DATA / "brain1_image.nrrd"), "label": str(DATA / "brain1_label.nrrd"),
                                   "case": "brain1"}]},
        "groups": None,
    },
}


def load_case(name: str):
    from medvision.ai.training.data import TrainingData

    spec = CASES[name]
    return TrainingData.from_datalist(spec["datalist"], label_groups=spec["groups"])


def run(config, data) -> tuple[object, float]:
    from medvision.ai.training.job import train_job
    from medvision.core.jobs import run_job

    t0 = time.perf_counter()
    result = run_job(train_job(config, data))
    return result, time.perf_counter() - t0


def one_run(name: str, tag: str, settings: dict) -> dict:
    """One arm of one case for one seed (in a worker process when --jobs > 1)."""
    from medvision.ai.training.config import TrainConfig

    data = load_case(name)
    config = TrainConfig(new_id=f"bench-{name}-{tag}-s{settings['seed']}", from_scratch=tag == "scratch",
                         **settings)
    result, seconds = run(config, data)
    iters = sum(h["iterations"] for h in result.history)
    engine = engine_check(name, data, result, settings) if result.package_folder else {}
    return {"seed": settings["seed"], "best_val_dice": result.best_val_dice, "per_label": result.per_label,
            "engine": engine, "epochs": result.epochs_run, "best_epoch": result.best_epoch, "iterations": iters,
            "seconds": round(seconds, 1), "stopped": result.stopped_because, "split": result.split_description,
            "notes": result.notes, "curve": [h["val_dice"] for h in result.history]}


def engine_check(name: str, data, result, settings: dict) -> dict:
    """The new package run by the engine (``medvision infer``'s job) on the case: Dice against the
    case's labels on the image's own grid, over the whole image and over the validation slab (for a
    conformed base: the slab of the cube mapped onto the image's grid by nearest neighbour)."""
    import torch

    from medvision.ai.engine import infer_job
    from medvision.ai.package import ModelPackage, Registry
    from medvision.ai.training.conformed import is_conformed, prepare_conformed
    from medvision.core.jobs import run_job

    package = ModelPackage.open(result.package_folder)
    case = data.cases[0]
    labels = run_job(infer_job(package, case.volume)).labels.array
    out = {"dice_whole": _dice(labels, case.labels)}
    if is_conformed(package.card):
        from medvision.ai.networks import brainchop_pipeline as bp

        base = Registry().get(settings["base"])
        prepared = run_job(prepare_conformed(data, base))
        split = data.split(settings["seed"], slab=settings.get("val_slab"), labels_of=prepared.labels_of)
        conformed = bp.conform(case.volume)
        norm = bp.normalize(torch.from_numpy(conformed.cube), package.card["input"]["normalization"]["kind"])
        box = bp.crop_box(norm, float(prepared.crop.get("threshold", 0.0)))
        cube = np.zeros(conformed.cube.shape, np.uint8)
        val = split.val[0].box
        cube[tuple(slice(b.start + v.start, b.start + v.stop) for b, v in zip(box, val, strict=True))] = 1
        region = bp.to_volume_grid(cube, conformed.affine, case.volume).astype(bool)
        out["dice_val"] = _dice(labels * region, case.labels * region)
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a != 0, b != 0
    total = int(a.sum() + b.sum())
    return None if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def compare(name: str, args, workroot: Path) -> dict:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    data = load_case(name)
    print(f"\n== {name}: {', '.join(data.names)}; {'; '.join(data.notes) or 'no notes'}", flush=True)
    out = {"labels": data.names, "runs": {tag: [] for tag in args.arms}}
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    tasks = []
    for seed in args.seeds:
        for tag in args.arms:
            settings = dict(epochs=args.epochs, minutes=args.minutes, device=args.device,
                            patch_size=tuple(args.patch), patches_per_epoch=args.patches_per_epoch, lr=args.lr,
                            warmup_epochs=args.warmup_epochs, patience=args.patience, seed=seed,
                            threads=threads, base=args.base, workdir=str(workroot / f"{name}-{tag}-s{seed}"))
            for key in ("encoder_lr_factor", "freeze_epochs", "freeze_part", "transfer", "batch_dice",
                        "val_slab"):  # else the trainer's defaults
                if getattr(args, key) is not None:
                    settings[key] = getattr(args, key)
            head_init = args.head_init if tag == "fine-tune" else args.scratch_head_init
            if head_init is not None:
                settings["head_init"] = head_init
            if args.spacing is not None:
                settings["spacing_mm"] = None if args.spacing == 0 else args.spacing
            tasks.append((tag, settings))

    def report(tag, row):
        out["runs"][tag].append(row)
        out["split"] = row["split"]
        labels = ", ".join(f"{n} {d:.3f}" if d is not None else f"{n} n/a" for n, d in row["per_label"].items())
        eng = row.get("engine") or {}
        via = ", ".join(f"{k[5:]} {v:.3f}" for k, v in eng.items() if v is not None)
        print(f"{tag:>9} seed {row['seed']}: val Dice {row['best_val_dice']:.3f} [{labels}]  {row['epochs']} epochs, "
              f"{row['iterations']} iterations, best at epoch {row['best_epoch']}, {row['seconds']:.0f} s"
              f"{'; through the engine on the image grid: Dice ' + via if via else ''}", flush=True)

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [(tag, pool.submit(one_run, name, tag, settings)) for tag, settings in tasks]
            for tag, future in futures:
                report(tag, future.result())
    else:
        for tag, settings in tasks:
            report(tag, one_run(name, tag, settings))
    notes = out["runs"][args.arms[0]][0]["notes"]
    print(f"split: {out['split']}\n{args.arms[0]} notes: {'; '.join(notes)}")
    summary = {}
    for tag, rows in out["runs"].items():
        dice = [r["best_val_dice"] for r in rows]
        summary[tag] = {"mean": float(np.mean(dice)), "min": float(np.min(dice)), "max": float(np.max(dice)),
                        "sd": float(np.std(dice, ddof=1)) if len(dice) > 1 else 0.0,
                        "per_label": {n: _mean([r["per_label"][n] for r in rows]) for n in data.names},
                        "iterations": int(np.mean([r["iterations"] for r in rows])),
                        "seconds": float(np.mean([r["seconds"] for r in rows]))}
    out["summary"] = summary
    if len(summary) == 2:
        out["difference"] = summary["fine-tune"]["mean"] - summary["scratch"]["mean"]
        scratch = {r["seed"]: r["best_val_dice"] for r in out["runs"]["scratch"]}
        pairs = {r["seed"]: r["best_val_dice"] - scratch[r["seed"]] for r in out["runs"]["fine-tune"]
                 if r["seed"] in scratch}
        out["paired"] = pairs
        diffs = np.array(list(pairs.values()))
        t = (diffs.mean() / (diffs.std(ddof=1) / np.sqrt(len(diffs)))) if len(diffs) > 1 and diffs.std(ddof=1) > 0 \
            else float("nan")
        out["paired_t"] = float(t)
        out["ahead_every_seed"] = bool(len(diffs) and (diffs > 0).all())
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def print_table(report: dict) -> None:
    print("\n== summary: best validation Dice, mean over seeds (min..max); per label: mean over seeds")
    print(f"{'case':<8} {'arm':<10} {'seeds':<6} {'iters':>6} {'s/run':>6}  {'mean Dice':<22} per label")
    for name, case in report["cases"].items():
        for tag, row in case["summary"].items():
            labels = ", ".join(f"{n} {d:.3f}" if d is not None else f"{n} n/a" for n, d in row["per_label"].items())
            seeds = ",".join(str(r["seed"]) for r in case["runs"][tag])
            dice = f"{row['mean']:.3f} ({row['min']:.3f}..{row['max']:.3f})"
            print(f"{name:<8} {tag:<10} {seeds:<6} {row['iterations']:>6} {row['seconds']:>6.0f}  {dice:<22} {labels}")
        if "difference" in case:
            per_seed = ", ".join(f"seed {s}: {d:+.3f}" for s, d in case["paired"].items())
            print(f"{name:<8} fine-tune - scratch: {case['difference']:+.3f} (paired t {case['paired_t']:.1f}; "
                  f"{per_seed}); ahead on every seed: {'yes' if case['ahead_every_seed'] else 'NO'}")
    if "speed" in report:
        sp = report["speed"]
        print(f"speed: train_job / plain loop {sp['ratio']:.3f} (with checkpoints {sp['ratio_with_checkpoints']:.3f})")


def speed(args, workroot: Path) -> dict:
    import torch
    from monai.losses import DiceCELoss

    from medvision.ai.package import Registry
    from medvision.ai.training.config import TrainConfig
    from medvision.ai.training.model import make_network
    from medvision.ai.training.resample import normalize_for_training
    from medvision.ai.training.sampling import PatchSampler

    data = load_case("mricrop")
    base = Registry().get(BASE)
    torch.set_num_threads(os.cpu_count() or 1)
    ppe = args.speed_patches_per_epoch
    epochs = args.speed_epochs
    split = data.split(0)
    case = data.cases[0]
    image, label, _ = case.arrays("RAS")
    image = normalize_for_training(base.card, image)
    box = split.train[0].box
    patch = tuple(args.speed_patch)

    def plain_loop() -> tuple[int, float]:
        net = make_network(base, len(data.names), seed=0).net
        sampler = PatchSampler([(image[box].contiguous(), torch.from_numpy(label)[box].contiguous())], patch,
                               patches_per_epoch=ppe, batch_size=2, seed=0)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
        net.train()
        n, t0 = 0, time.perf_counter()
        for e in range(1, epochs + 1):
            for x, y in sampler.epoch(e):
                opt.zero_grad()
                loss = loss_fn(net.logits(x), y)
                loss.backward()
                opt.step()
                n += 1
        return n, time.perf_counter() - t0

    def ours(k: int) -> tuple[int, float, float]:
        config = TrainConfig(base=BASE, new_id=f"bench-speed-{k}", epochs=epochs, device="cpu", patch_size=patch,
                             patches_per_epoch=ppe, freeze_epochs=0, patience=0, seed=0, spacing_mm=None,
                             workdir=str(workroot / f"speed-{k}"))  # native: the plain loop's region
        result, _ = run(config, data)
        h = result.history
        n = sum(r["iterations"] for r in h)
        return n, sum(r["train_seconds"] for r in h), sum(r["train_seconds"] + r["checkpoint_seconds"] for r in h)

    rows = {"plain": [], "ours": [], "ours_with_checkpoints": []}
    for k in range(args.speed_repeats):  # interleaved, so drifts of the machine hit both alike
        n, s = plain_loop()
        rows["plain"].append(n / s)
        n, s, s_ck = ours(k)
        rows["ours"].append(n / s)
        rows["ours_with_checkpoints"].append(n / s_ck)
        print(f"speed run {k + 1}: plain {rows['plain'][-1]:.2f} it/s, train_job {rows['ours'][-1]:.2f} it/s "
              f"({rows['ours_with_checkpoints'][-1]:.2f} it/s with its checkpoints)", flush=True)
    plain, mine, mine_ck = (float(np.median(rows[k])) for k in ("plain", "ours", "ours_with_checkpoints"))
    out = {"iterations_per_run": epochs * -(-ppe // 2), "patch": list(patch), "batch": 2, "plain_it_s": plain,
           "train_job_it_s": mine, "train_job_with_checkpoints_it_s": mine_ck, "ratio": mine / plain,
           "ratio_with_checkpoints": mine_ck / plain, "runs": rows}
    print(f"train_job / plain monai loop: {out['ratio']:.3f} (training phase), "
          f"{out['ratio_with_checkpoints']:.3f} (with a checkpoint every {-(-ppe // 2)} iterations)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each run (default 1: with 100 patches "
                        "per epoch, 50 iterations; MeshNet's dilated layers at full resolution cost about 2 s an "
                        "iteration of two 32^3 patches on one CPU thread)")
    parser.add_argument("--minutes", type=float, help="a time budget per run instead of --epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (the CPUs shared among them)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--arms", nargs="+", choices=("fine-tune", "scratch"), default=["fine-tune", "scratch"],
                        help="which arms to run (default both)")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 32, 32])
    parser.add_argument("--patches-per-epoch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--encoder-lr-factor", type=float, help="default: the trainer's (1)")
    parser.add_argument("--freeze-epochs", type=float, help="default: the trainer's (no freeze)")
    parser.add_argument("--warmup-epochs", type=float, default=0.25)
    parser.add_argument("--patience", type=int, default=0, help="0: no early stopping (the budget decides)")
    parser.add_argument("--transfer", choices=("encoder", "all"),
                        help="fine-tuning starts from the base's encoder or all its weights but the head (default: "
                             "the trainer's, all)")
    parser.add_argument("--spacing", type=float, help="voxel size in mm to train at (0: native; default: the "
                        "trainer's 'auto': the base's; a brainchop base: its conformed 1 mm, nothing else)")
    parser.add_argument("--base", default=FINE_TUNE_BASE, help=f"the package fine-tuned from (default "
                        f"{FINE_TUNE_BASE}; or {BASE}); scratch trains its architecture from random weights")
    parser.add_argument("--freeze-part", choices=("encoder", "body"), help="what --freeze-epochs holds (default: "
                        "the trainer's, the encoder)")
    parser.add_argument("--val-slab", help="the validation slab, e.g. x-last (default: the trainer's choice)")
    parser.add_argument("--batch-dice", type=int, choices=(0, 1), help="1: Dice over the whole batch (default: "
                        "the trainer's)")
    parser.add_argument("--head-init", choices=("auto", "prior", "random", "probe"),
                        help="the fine-tuned arm's new head (default: the trainer's 'auto': the probe, kept only "
                        "when it beats the class frequencies on the validation data)")
    parser.add_argument("--scratch-head-init", choices=("auto", "prior", "random", "probe"),
                        help="the from-scratch arm's head (default: the trainer's: prior)")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--speed-epochs", type=int, default=3)
    parser.add_argument("--speed-patch", type=int, nargs=3, default=[64, 64, 64])
    parser.add_argument("--speed-patches-per-epoch", type=int, default=32)
    parser.add_argument("--speed-repeats", type=int, default=2)
    args = parser.parse_args()
    if args.minutes:
        args.epochs = None
    if not DATA.is_dir():
        print(f"{DATA} is not present: nothing to benchmark")
        return 1
    home = tempfile.mkdtemp(prefix="mv-bench-train-")
    os.environ["MEDVISION_HOME"] = home
    workroot = Path(home) / "work"
    report = {"budget": {"minutes": args.minutes, "epochs": args.epochs}, "settings": vars(args), "cases": {}}
    if not args.skip_compare:
        for name in [args.only] if args.only else list(CASES):
            report["cases"][name] = compare(name, args, workroot)
    if not args.skip_speed:
        report["speed"] = speed(args, workroot)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_train.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print_table(report)
    print(f"\nwrote {out / 'bench_train.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
