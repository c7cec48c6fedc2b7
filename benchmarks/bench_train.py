"""Fine-tuning benchmark: transfer learning from the shipped deepbet model against training the same
network from scratch, on real hand-labelled single cases, at the same CPU budget; and the speed of
``train_job`` against a plain monai training loop.

1. Two single cases of ../shared/data/labeled, each split by region (the trainer's one-case split:
   a slab of 25 % at one end of one axis for validation, the rest for training; which slab is
   printed):
   * MRIcrop-orig + MRIcrop-seg (ITK-SNAP labels): ventricles (vent-lat, vent-3rd, vent-4th,
     vent-temp merged), hippocampus (hippo-L + hippo-R), caudate (caudates);
   * brain1_image + brain1_label: the tumour.
   Each is trained twice with the same settings and the same time budget (``--minutes`` per run):
   fine-tuned from deepbet-t1-brain (encoder frozen for ``--freeze-epochs`` then at lr x 0.1) and
   from scratch (random weights, same architecture). The best validation Dice (mean and per label)
   of each is reported.
2. Iterations per second of ``train_job`` (its training phase, and with its per-epoch checkpoint)
   against a plain loop over the same network, the same patch sampler (same seed: the same
   patches), DiceCE loss and AdamW: ``for x, y in batches: loss = loss_fn(net.logits(x), y);
   loss.backward(); opt.step()``. Target ratio >= 0.9.

    python benchmarks/bench_train.py [--minutes 2] [--only mricrop|brain1] [--skip-compare] [--skip-speed]

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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("MEDVISION_SHARED_DATA", ROOT.parent / "shared" / "data")) / "labeled"
BASE = "deepbet-t1-brain"

CASES = {
    "mricrop": {
        "datalist": {"training": [{"image": str(DATA / "MRIcrop-orig.gipl.gz"),
                                   "label": str(DATA / "MRIcrop-seg.gipl.gz"), "case": "MRIcrop"}]},
        "groups": {"ventricles": ["vent-lat", "vent-3rd", "vent-4th", "vent-temp"],
                   "hippocampus": ["hippo-L", "hippo-R"], "caudate": ["caudates"]},
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
    from medvision.ai.training.trainer import train_job
    from medvision.core.jobs import run_job

    t0 = time.perf_counter()
    result = run_job(train_job(config, data))
    return result, time.perf_counter() - t0


def compare(name: str, args, workroot: Path) -> dict:
    from medvision.ai.training.trainer import TrainConfig

    data = load_case(name)
    print(f"\n== {name}: {', '.join(data.names)}; {'; '.join(data.notes) or 'no notes'}")
    out = {"labels": data.names, "runs": {}}
    for scratch in (False, True):
        tag = "scratch" if scratch else "fine-tune"
        config = TrainConfig(base=BASE, new_id=f"bench-{name}-{tag}", minutes=args.minutes, epochs=args.epochs,
                             device=args.device, from_scratch=scratch, patch_size=tuple(args.patch),
                             patches_per_epoch=args.patches_per_epoch, lr=args.lr,
                             encoder_lr_factor=args.encoder_lr_factor, freeze_epochs=args.freeze_epochs,
                             warmup_epochs=args.warmup_epochs, patience=args.patience, seed=args.seed,
                             transfer=args.transfer, workdir=str(workroot / f"{name}-{tag}"))
        result, seconds = run(config, data)
        iters = sum(h["iterations"] for h in result.history)
        row = {"best_val_dice": result.best_val_dice, "per_label": result.per_label, "epochs": result.epochs_run,
               "best_epoch": result.best_epoch, "iterations": iters, "seconds": round(seconds, 1),
               "stopped": result.stopped_because, "curve": [h["val_dice"] for h in result.history]}
        out["runs"][tag] = row
        out["split"] = result.split_description
        labels = ", ".join(f"{n} {d:.3f}" if d is not None else f"{n} n/a" for n, d in result.per_label.items())
        print(f"{tag:>9}: val Dice {result.best_val_dice:.3f} [{labels}]  {result.epochs_run} epochs, {iters} "
              f"iterations, best at epoch {result.best_epoch}, {seconds:.0f} s ({result.stopped_because})", flush=True)
    print(f"split: {out['split']}")
    ft, sc = out["runs"]["fine-tune"]["best_val_dice"], out["runs"]["scratch"]["best_val_dice"]
    out["difference"] = None if ft is None or sc is None else ft - sc
    return out


def speed(args, workroot: Path) -> dict:
    import numpy as np
    import torch
    from monai.losses import DiceCELoss

    from medvision.ai.package import Registry
    from medvision.ai.training.data import normalize_for_training
    from medvision.ai.training.model import make_network
    from medvision.ai.training.sampling import PatchSampler
    from medvision.ai.training.trainer import TrainConfig

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
    patch = tuple(args.patch)

    def plain_loop() -> tuple[int, float]:
        net = make_network(base, len(data.names), seed=0, transfer="encoder").net
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
                             patches_per_epoch=ppe, freeze_epochs=0, patience=0, seed=0,
                             workdir=str(workroot / f"speed-{k}"))
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
    parser.add_argument("--minutes", type=float, default=1.5, help="time budget of each run (default 1.5)")
    parser.add_argument("--epochs", type=int, help="epochs of each run instead of a time budget")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--patch", type=int, nargs=3, default=[64, 64, 64])
    parser.add_argument("--patches-per-epoch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--encoder-lr-factor", type=float, default=0.1)
    parser.add_argument("--freeze-epochs", type=int, default=3)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--patience", type=int, default=0, help="0: no early stopping (the budget decides)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transfer", choices=("encoder", "all"), default="encoder",
                        help="fine-tuning starts from the base's encoder (default) or all its weights but the head")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--speed-epochs", type=int, default=3)
    parser.add_argument("--speed-patches-per-epoch", type=int, default=32)
    parser.add_argument("--speed-repeats", type=int, default=2)
    args = parser.parse_args()
    if args.epochs:
        args.minutes = None
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
    print(f"\nwrote {out / 'bench_train.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
