"""Fine-tuning an inpainting model on the user's own images (``medvision train --base INPAINTING-MODEL``).

No labels are needed: the holes are drawn at random on the user's images, of the kinds users make
(:mod:`.holes`). The base's generator is trained on reconstruction (L1 on the hole and on the rest,
SSIM on the composite; the base's discriminator is not shipped with it, so no adversarial term) within
a time budget or a number of steps, with a checkpoint that the same command resumes. Before and after,
it is measured on the same images' **held-out slices**: the last fifth of every image's slices, with a
gap of two slices, where no training hole is ever centred. A run that ends below its base on them is
reported and not registered unless asked (``keep_worse``); otherwise the new model is written with its
card (parent, figures, the images' hashes, not their names) and installed among the user's models."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...core.jobs import Progress
from .data import InpaintVolume, Sample, sample_batch
from .train import ARCHITECTURE, InpaintTrainConfig, export_package, save_checkpoint, train_step, validate

__all__ = ["InpaintFinetuneConfig", "FinetuneResult", "finetune_job", "split_slices", "image_entries",
           "sources_sha256", "default_workdir", "child_job", "done_message"]

CHECKPOINT = "inpaint-finetune.pt"
#: slices left between the training slices and the held-out ones
GAP = 2


@dataclass
class InpaintFinetuneConfig:
    new_id: str
    workdir: str
    minutes: float = 10.0
    max_steps: int = 0  # and at most this many steps (0: as many as the time allows)
    batch: int = 4
    crop: int = 96
    lr: float = 5e-5
    held_out_share: float = 0.2
    val_samples: int = 32
    seed: int = 0
    keep_worse: bool = False
    device: str = "cpu"
    validate_every_s: float = 60.0
    name: str | None = None


@dataclass
class FinetuneResult:
    base_psnr: float
    final_psnr: float
    coarse_psnr: float
    steps: int
    minutes: float
    folder: str | None  # the installed model's folder; None when not registered
    notes: list[str] = field(default_factory=list)


def image_entries(datalist: str | None = None, workspace: str | None = None) -> list[tuple[str, str | None]]:
    """The images (path, series) to fine-tune on: a datalist's "training" entries (labels ignored), or a
    project's cases marked done or reviewed."""
    if workspace:
        from ...workspace.project import Project

        project = Project.open(workspace)
        return [(str(project.image_path(c).resolve()), c.series or None)
                for c in project.with_status("done", "reviewed")]
    path = Path(str(datalist))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data["training"]
        return [(str((path.parent / str(item["image"])).resolve()), item.get("series")) for item in items]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a datalist with 'training' entries that name an 'image' ({exc})") from exc


def split_slices(volume: InpaintVolume, share: float) -> tuple[InpaintVolume, InpaintVolume]:
    """(training, held-out) views of one image: holes are centred on its first slices in training and on its
    last ``share`` of slices (at least one, after a gap of :data:`GAP`) to measure."""
    depth = volume.array.shape[0]
    held = max(1, int(round(depth * share)))
    cut = depth - held
    if cut - GAP < 1:
        raise ValueError(f"{volume.name}: {depth} slices are too few to hold some out for measuring")
    train_body, val_body = volume.body.copy(), volume.body.copy()
    train_body[cut - GAP:] = False
    val_body[:cut] = False
    if not train_body.any() or not val_body.any():
        raise ValueError(f"{volume.name}: no body in its training or its held-out slices")
    return (dataclasses.replace(volume, body=train_body, labels=None),
            dataclasses.replace(volume, body=val_body, labels=None))


def _on(s: Sample, device: str) -> Sample:
    return Sample(s.slices.to(device), s.masks.to(device), s.kinds, s.coarse.to(device))


def _train_config(base, config: InpaintFinetuneConfig) -> InpaintTrainConfig:
    """The settings of the base's network (from its card) with this run's, as the training stages take them."""
    args = base.architecture().get("args", {})
    spec = base.card.get("input") or {}
    return InpaintTrainConfig(train=[], held_out=[], modality=str(base.card.get("modality") or ""),
                              new_id=config.new_id, workdir=config.workdir, minutes=config.minutes,
                              max_steps=config.max_steps, batch=config.batch, crop=config.crop,
                              context=int(args.get("context", spec.get("context", 1))),
                              coarse=str(spec.get("coarse", "push_pull")), base=int(args.get("base", 16)),
                              levels=int(args.get("levels", 3)), dilations=tuple(args.get("dilations", (2, 4, 8, 16))),
                              lr=config.lr, adversarial=False, seed=config.seed)


def finetune_job(base, volumes: list[InpaintVolume], config: InpaintFinetuneConfig, sources: list[str]):
    """Job: fine-tune ``base`` (an inpainting package) on ``volumes`` (their files' hashes: ``sources``);
    returns a :class:`FinetuneResult`."""
    from monai.losses import SSIMLoss

    if base.card.get("task") != "inpainting" or base.architecture().get("name") != ARCHITECTURE:
        raise ValueError(f"{base.id} is not a medvision inpainting network ({ARCHITECTURE}): it cannot be fine-tuned "
                         "here")
    tc = _train_config(base, config)
    torch.manual_seed(config.seed)
    parts = [split_slices(v, config.held_out_share) for v in volumes]
    train_vols, val_vols = [p[0] for p in parts], [p[1] for p in parts]
    yield Progress("preparing", 0, 0, "held-out slices")
    device = config.device
    val = [_on(s, device) for s in _held_out(val_vols, tc, config.val_samples)]
    g = base.network(device=device)
    g.train()
    opt = torch.optim.Adam(g.parameters(), config.lr, betas=(0.5, 0.999))
    work = Path(config.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / CHECKPOINT
    step, elapsed, history = 0, 0.0, []
    notes: list[str] = []
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state.get("base") != f"{base.id} {base.version}":
            raise ValueError(f"{ckpt} holds a run from {state.get('base')}, not {base.id} {base.version}: give "
                             "another --workdir")
        g.load_state_dict(state["g"])
        opt.load_state_dict(state["opt"])
        step, elapsed, history = int(state["step"]), float(state["elapsed"]), list(json.loads(state["history"]))
        notes.append(f"resumed at step {step} ({elapsed / 60:.1f} min)")
    if not history:
        history.append({"step": 0, "minutes": 0.0, "val_masked_psnr": validate(g, val, tc.levels),
                        "coarse_fill_masked_psnr": validate(None, val, tc.levels)})
    base_psnr, coarse_psnr = history[0]["val_masked_psnr"], history[0]["coarse_fill_masked_psnr"]
    yield _measured(history[0], config)
    ssim_loss = SSIMLoss(spatial_dims=2, data_range=1.0)
    rng = np.random.default_rng(config.seed + step)
    budget, start = config.minutes * 60, time.perf_counter() - elapsed
    last = time.perf_counter()
    figures: dict[str, float] = {}

    def keep() -> None:
        save_checkpoint(ckpt, {"g": g.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                               "history": json.dumps(history), "base": f"{base.id} {base.version}"})

    while (elapsed := time.perf_counter() - start) < budget and not 0 < config.max_steps <= step:
        done = max(elapsed / budget, step / config.max_steps if config.max_steps else 0.0)
        yield Progress("training", int(1000 * done), 1000, f"step {step + 1}")
        s = _on(sample_batch(train_vols, rng, tc.batch, tc.crop, tc.context, coarse=tc.coarse), device)
        figures = train_step(tc, g, None, opt, None, s, False, ssim_loss)
        step += 1
        if time.perf_counter() - last >= config.validate_every_s:
            last = time.perf_counter()
            psnr = validate(g, val, tc.levels)
            history.append({"step": step, "minutes": round(elapsed / 60, 2), "val_masked_psnr": psnr,
                            **{k: round(v, 4) for k, v in figures.items()}})
            yield _measured(history[-1], config)
            keep()
    final = validate(g, val, tc.levels)
    history.append({"step": step, "minutes": round(elapsed / 60, 2), "val_masked_psnr": final,
                    **{k: round(v, 4) for k, v in figures.items()}} if step else
                   {"step": step, "minutes": round(elapsed / 60, 2), "val_masked_psnr": final})
    keep()  # (a longer budget resumes here)
    yield _measured(history[-1], config)
    result = FinetuneResult(base_psnr, final, coarse_psnr, step, elapsed / 60, None, notes)
    if final < base_psnr and not config.keep_worse:
        notes.append(f"held-out masked PSNR {final:.2f} dB is below its base's {base_psnr:.2f} dB: not registered "
                     "(--keep-worse registers it all the same)")
        return result
    yield Progress("writing the model", 0, 0)
    result.folder = _register(base, tc, config, g, history, sources, result)
    return result


def _measured(entry: dict, config: InpaintFinetuneConfig) -> Progress:
    """A progress record of one measurement: its figures (step, minutes, held-out masked PSNR, the batch's
    L1 on the hole) as the record's preview."""
    return Progress("validation", int(entry["step"]), config.max_steps,
                    f"held-out masked PSNR {entry['val_masked_psnr']:.2f} dB", preview=dict(entry))


def default_workdir(new_id: str) -> str:
    """The checkpoint folder of a fine-tuning run that names none: one per new model, in the cache."""
    from ...paths import cache_dir

    return str(cache_dir() / "training" / f"inpaint-{new_id}")


def child_job(config: dict, data_spec: dict):
    """The training process's job for an inpainting base (:mod:`medvision.ai.train_process`): the base by
    its id, the images of the datalist or project, the settings of the Fine-tune dialog."""
    from ...io import load
    from ..inference.devices import pick_device
    from ..package import Registry

    base = Registry().get(config["base"])
    entries = image_entries(data_spec.get("datalist"), data_spec.get("project"))
    if not entries:
        raise ValueError("no images to fine-tune on (a project: mark the cases done first)")
    volumes = [InpaintVolume.from_volume(load(p, series=s) if s else load(p), f"image-{k + 1:03d}")
               for k, (p, s) in enumerate(entries)]
    cfg = InpaintFinetuneConfig(new_id=config["new_id"], workdir=config.get("workdir") or default_workdir(
        config["new_id"]), minutes=float(config.get("minutes") or 10.0), max_steps=int(config.get("steps") or 0),
        device=pick_device(config.get("device", "auto")), name=config.get("name"),
        validate_every_s=float(config.get("validate_every_s", 30.0)))
    return finetune_job(base, volumes, cfg, sources_sha256([p for p, _ in entries]))


def done_message(r: FinetuneResult) -> dict:
    """The training process's "done" message of a fine-tuning run (a segmentation run's keys, and its figures
    under "inpainting")."""
    return {"package": r.folder or "", "best_val_dice": None, "per_label": {}, "epochs_run": 0, "split": "",
            "cross_validation": None,
            "inpainting": {"base_psnr": r.base_psnr, "final_psnr": r.final_psnr, "coarse_psnr": r.coarse_psnr,
                           "steps": r.steps, "minutes": r.minutes, "notes": list(r.notes)}}


def _held_out(val_vols: list[InpaintVolume], tc: InpaintTrainConfig, n: int) -> list[Sample]:
    """Fixed samples (seeded, the images' own pixel size) centred on the held-out slices."""
    rng = np.random.default_rng(12345)
    return [sample_batch(val_vols, rng, 8, tc.crop, tc.context, zoom_range=(1.0, 1.0), coarse=tc.coarse)
            for _ in range(max(1, n // 8))]


def _register(base, tc: InpaintTrainConfig, config: InpaintFinetuneConfig, g, history: list, sources: list[str],
              result: FinetuneResult) -> str:
    """Write the fine-tuned generator as a package (its card says its parent, data and figures) and install
    it among the user's models; returns the installed folder."""
    import tempfile

    from ..package import ModelPackage, Registry, write_card

    with tempfile.TemporaryDirectory(dir=config.workdir) as tmp:
        state = {k: v.detach().cpu() for k, v in g.state_dict().items()}
        folder = export_package(tc, {"generator": state, "steps": result.steps, "minutes": result.minutes,
                                     "history": history}, Path(tmp))
        card = json.loads((folder / "model.json").read_text())
        card["name"] = config.name or f"{base.name} (fine-tuned)"
        card["description"] = (f"{base.name} fine-tuned on {len(sources)} of the user's images (random holes, no "
                               "labels; reconstruction losses). " + str(base.card.get("description") or ""))
        prov = card["provenance"]
        prov.update(parent=f"{base.id} {base.version}", training_data=[f"image-{k + 1:03d} sha256:{h}"
                                                                       for k, h in enumerate(sources)],
                    held_out=f"the last {config.held_out_share:.0%} of each image's slices (gap {GAP})",
                    metrics={"val_masked_psnr": round(result.final_psnr, 3),
                             "base_val_masked_psnr": round(result.base_psnr, 3),
                             "coarse_fill_masked_psnr": round(result.coarse_psnr, 3)})
        prov["lineage"] = [*((base.card.get("provenance") or {}).get("lineage") or []),
                           {"id": base.id, "version": base.version,
                            "sha256": (base.card.get("weights") or {}).get("sha256")}]
        write_card(folder, card)
        installed = Registry().install(ModelPackage.open(folder), replace=True)
    return str(installed.folder)


def sources_sha256(paths: list[str]) -> list[str]:
    """One sha256 per image (a folder: every file in it): what the card records instead of file names."""
    from ..training.data import files_sha256

    return [files_sha256([p]) for p in paths]

