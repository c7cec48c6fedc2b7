"""Training an inpainting model from scratch: the generator alone on reconstruction first (L1 on the
hole and on the rest, SSIM on the composite), then with its discriminator (hinge adversarial loss on the
patches that hold the hole, and feature matching), within a time budget, with checkpoints that
a rerun resumes, the masked PSNR on held-out volumes measured as it goes, and a model package at the
end.

    python -m medvision.ai.inpainting.train --recipe ct --minutes 30 -o models/
    python -m medvision.ai.inpainting.train --recipe mr --minutes 30 -o models/

A recipe names the volumes of ``../shared/data`` it trains on and those it never sees (measured on).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...core.atomic import write_bytes, write_text
from .data import InpaintVolume, Sample, sample_batch
from .metrics import masked_psnr
from .network import KNOWN_FILLS, InpaintingUNet, composite, make_discriminator, padded_input

__all__ = ["InpaintTrainConfig", "RECIPES", "load_volumes", "train", "export_package", "ARCHITECTURE", "validate",
           "validation_set", "train_step", "checkpoint_state", "save_checkpoint"]

ARCHITECTURE = "inpaint.GatedUNet25D"

#: volume [::labels] paths under the data folder: what each shipped model trains on and is measured on
RECIPES = {
    "ct": {
        "modality": "CT",
        "train": ["dicom/ct_abdomen_siemens_j2k::dicom/ct_abdomen_siemens_j2k.totalseg_labels.nii.gz",
                  "volumes/ct_aorta_1.5mm_crop.nii.gz"],
        "held_out": ["volumes/ct_body_3mm.nii.gz",
                     "volumes/ct_abdomen_3mm_crop.nii.gz::volumes/ct_abdomen_3mm_crop.totalseg_labels.nii.gz"],
    },
    "mr": {
        "modality": "MR",
        "train": ["volumes/mni152_t1_1mm.nii.gz", "volumes/mr_abdomen_3mm_crop.nii.gz"],
        "held_out": ["labeled/brain1_image.nrrd::labeled/brain1_label.nrrd", "labeled/MRIcrop-orig.gipl.gz"],
    },
}


@dataclass
class InpaintTrainConfig:
    train: list[str]
    held_out: list[str]
    modality: str
    new_id: str
    data_root: str = "../shared/data"
    workdir: str = "inpaint-work"
    minutes: float = 30.0
    max_steps: int = 0  # and at most this many steps (0: as many as the time allows)
    recon_share: float = 0.5  # of the budget spent on reconstruction alone, before the adversarial term
    batch: int = 8
    crop: int = 128
    context: int = 1
    coarse: str = "biharmonic_3d"  # the fill the network refines (network.COARSE or VOLUME_COARSE)
    base: int = 16
    levels: int = 3
    dilations: tuple[int, ...] = (2, 4, 8, 16)
    lr: float = 2e-4
    hole_weight: float = 6.0
    ssim_weight: float = 0.5
    adversarial_weight: float = 0.1
    feature_matching_weight: float = 1.0
    adversarial: bool = True
    seed: int = 0
    validate_every_s: float = 120.0
    notes: list[str] = field(default_factory=list)


def load_volumes(entries: list[str], root: Path) -> list[InpaintVolume]:
    """``path[::labels]`` entries (relative to ``root``) as scaled volumes; labels placed on the image grid."""
    from ...io import load
    from ...io.labels import load_labels

    out = []
    for entry in entries:
        path, _, labels_path = entry.partition("::")
        volume = load(root / path)
        labels = load_labels(root / labels_path, reference=volume).array if labels_path else None
        out.append(InpaintVolume.from_volume(volume, Path(path).name, labels))
    return out


def validation_set(volumes: list[InpaintVolume], config: InpaintTrainConfig, n: int = 48) -> list[Sample]:
    """Fixed held-out samples (seeded, the volumes' own pixel size) the masked PSNR is measured on."""
    rng = np.random.default_rng(12345)
    return [sample_batch(volumes, rng, 8, config.crop, config.context, zoom_range=(1.0, 1.0), coarse=config.coarse)
            for _ in range(n // 8)]


def _fill(g: torch.nn.Module, s: Sample, levels: int) -> torch.Tensor:
    x, (h, w) = padded_input(s.coarse, s.masks, 2 ** levels)
    return g(x)[..., :h, :w]


def validate(g: torch.nn.Module | None, samples: list[Sample], levels: int) -> float:
    """The mean masked PSNR (dB) of the composited fills over the validation samples (``g`` None: of the
    coarse fill the network refines, what it must do better than)."""
    if g is not None:
        g.eval()
    values = []
    with torch.no_grad():
        for s in samples:
            c = s.coarse.shape[1] // 2
            fill = s.coarse[:, c:c + 1] if g is None else _fill(g, s, levels)
            out = composite(s.target, fill, s.hole)
            values += [masked_psnr(out[i, 0], s.target[i, 0], s.hole[i, 0]) for i in range(out.shape[0])]
    if g is not None:
        g.train()
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _on_hole(scores: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """1 for the discriminator's patches whose cell of the image holds a hole pixel, else 0."""
    return F.adaptive_max_pool2d(hole, scores.shape[-2:])


def hinge(scores: torch.Tensor, weight: torch.Tensor, real: bool, for_discriminator: bool = True) -> torch.Tensor:
    """The hinge adversarial loss over the patches ``weight`` marks (the discriminator's raw scores): for the
    discriminator ``relu(1 - D(real))`` or ``relu(1 + D(fake))``, for the generator ``-D(fake)``. Only the
    patches on the hole count: elsewhere the composite is the real image itself, and such patches (most of
    them) hold every loss at its value for a blind discriminator (monai's PatchAdversarialLoss averages
    over all of them: 2.0 throughout)."""
    if for_discriminator:
        per_patch = F.relu(1 - scores) if real else F.relu(1 + scores)
    else:
        per_patch = -scores
    return (per_patch * weight).sum() / weight.sum().clamp(min=1)


def train_step(config, g, d, opt_g, opt_d, s: Sample, adversarial: bool, ssim_loss) -> dict[str, float]:
    """One training step on a batch: the discriminator first (when ``adversarial``), then the generator
    against the updated discriminator. Returns the batch's figures."""
    target, hole = s.target, s.hole
    gen = _fill(g, s, config.levels)
    comp = composite(target, gen, hole)
    l1_hole = (torch.abs(gen - target) * hole).sum() / hole.sum().clamp(min=1)
    l1_rest = (torch.abs(gen - target) * (1 - hole)).sum() / (1 - hole).sum().clamp(min=1)
    l_ssim = ssim_loss(comp.clamp(0, 1), target.clamp(0, 1))
    loss = config.hole_weight * l1_hole + l1_rest + config.ssim_weight * l_ssim
    figures = {"l1_hole": l1_hole.item(), "ssim_loss": l_ssim.item()}
    if adversarial:
        real_in, fake_in = torch.cat([target, hole], 1), torch.cat([comp, hole], 1)
        fake_scores = d(fake_in.detach())[-1]
        weight = _on_hole(fake_scores, hole)
        d_loss = hinge(fake_scores, weight, real=False) + hinge(d(real_in)[-1], weight, real=True)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        fake = d(fake_in)
        with torch.no_grad():
            real = d(real_in)
        l_adv = hinge(fake[-1], weight, real=True, for_discriminator=False)
        l_fm = sum(F.l1_loss(f, r) for f, r in zip(fake[:-1], real[:-1], strict=True)) / max(1, len(fake) - 1)
        loss = loss + config.adversarial_weight * l_adv + config.feature_matching_weight * l_fm
        figures.update(adv=l_adv.item(), fm=float(l_fm.detach()), d=d_loss.item())
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return figures


def checkpoint_state(g, d, opt_g, opt_d, step: int, elapsed: float, history: list) -> dict:
    return {"g": g.state_dict(), "d": d.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "step": step, "elapsed": elapsed, "history": json.dumps(history)}


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def train(config: InpaintTrainConfig, say=print) -> dict:
    """Train (or resume from ``workdir``) within ``config.minutes``; returns the generator's state and figures."""
    from monai.losses import SSIMLoss

    if config.coarse not in KNOWN_FILLS:
        raise ValueError(f"unknown coarse fill {config.coarse!r}: one of {', '.join(KNOWN_FILLS)}")
    torch.manual_seed(config.seed)
    root = Path(config.data_root)
    train_vols, held = load_volumes(config.train, root), load_volumes(config.held_out, root)
    val = validation_set(held, config)
    g = InpaintingUNet(config.context, config.base, config.levels, config.dilations)
    d = make_discriminator()
    opt_g = torch.optim.Adam(g.parameters(), config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2 * config.lr, betas=(0.5, 0.999))
    work = Path(config.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "inpaint-checkpoint.pt"
    step, elapsed, history = 0, 0.0, []
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        g.load_state_dict(state["g"])
        d.load_state_dict(state["d"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step, elapsed, history = int(state["step"]), float(state["elapsed"]), list(json.loads(state["history"]))
        say(f"resuming at step {step} ({elapsed / 60:.1f} of {config.minutes:g} minutes)")
    ssim_loss = SSIMLoss(spatial_dims=2, data_range=1.0)
    rng = np.random.default_rng(config.seed + step)
    budget = config.minutes * 60
    start = time.perf_counter() - elapsed
    last_check = time.perf_counter()
    if not history:
        coarse_psnr = validate(None, val, config.levels)
        history.append({"step": 0, "minutes": 0.0, "val_masked_psnr": validate(g, val, config.levels),
                        "coarse_fill_masked_psnr": coarse_psnr})
        say(f"step 0: held-out masked PSNR {history[-1]['val_masked_psnr']:.2f} dB (the {config.coarse} fill alone: "
            f"{coarse_psnr:.2f} dB)")
    while (elapsed := time.perf_counter() - start) < budget and not 0 < config.max_steps <= step:
        done = max(elapsed / budget, step / config.max_steps if config.max_steps else 0.0)  # of the run
        adversarial = config.adversarial and done >= config.recon_share
        s = sample_batch(train_vols, rng, config.batch, config.crop, config.context, coarse=config.coarse)
        figures = train_step(config, g, d, opt_g, opt_d, s, adversarial, ssim_loss)
        step += 1
        if time.perf_counter() - last_check >= config.validate_every_s:
            last_check = time.perf_counter()
            psnr = validate(g, val, config.levels)
            history.append({"step": step, "minutes": round(elapsed / 60, 2), "val_masked_psnr": psnr,
                            "adversarial": adversarial, **{k: round(v, 4) for k, v in figures.items()}})
            say(f"step {step} ({elapsed / 60:.1f} min{', adversarial' if adversarial else ''}): held-out masked PSNR "
                f"{psnr:.2f} dB; " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
            save_checkpoint(ckpt, checkpoint_state(g, d, opt_g, opt_d, step, elapsed, history))
    psnr = validate(g, val, config.levels)
    history.append({"step": step, "minutes": round(elapsed / 60, 2), "val_masked_psnr": psnr})
    save_checkpoint(ckpt, checkpoint_state(g, d, opt_g, opt_d, step, elapsed, history))  # a longer budget resumes here
    say(f"done: {step} steps in {elapsed / 60:.1f} min; held-out masked PSNR {psnr:.2f} dB")
    return {"generator": g.state_dict(), "steps": step, "minutes": elapsed / 60, "history": history}


def export_package(config: InpaintTrainConfig, result: dict, models_dir: Path, version: str = "1.0") -> Path:
    """Write the generator as a model package (card, safetensors, licence) under ``models_dir``."""
    from safetensors.torch import save

    folder = models_dir / config.new_id
    folder.mkdir(parents=True, exist_ok=True)
    data = save({k: v.contiguous() for k, v in result["generator"].items()})
    write_bytes(folder / "weights.safetensors", data)
    card = {
        "format": "medvision-model", "format_version": 1, "id": config.new_id, "version": version,
        "name": f"medvision {config.modality} inpainting (2.5D gated U-Net GAN)",
        "task": "inpainting", "modality": config.modality, "dims": 3, "trainable": False,
        "description": (f"Fills a region of a {config.modality} image with plausible tissue: the region is first "
                        f"filled smoothly from its edges ({_COARSE_WORDS.get(config.coarse, config.coarse)}), then "
                        f"a 2.5D U-Net with gated convolutions and a dilated bottleneck, which sees each slice and "
                        f"its {config.context} neighbour(s) each side, adds the detail that fill lacks, slice by "
                        "slice. Trained as a GAN (reconstruction, then a PatchGAN discriminator) "
                        "on random holes (boxes, brush strokes, lesion-shaped blobs and label structures, 4-60 mm). "
                        "Voxels outside the region are never changed."),
        "architecture": {"name": ARCHITECTURE, "args": {"context": config.context, "base": config.base,
                                                        "levels": config.levels, "dilations": list(config.dilations)}},
        "weights": {"file": "weights.safetensors", "sha256": hashlib.sha256(data).hexdigest()},
        "input": {"context": config.context, "multiple": 2 ** config.levels, "coarse": config.coarse,
                  "normalization": {"kind": "voided_percentiles", "low_quantile": 0.005, "high_quantile": 0.995}},
        "labels": [],
        "license": "Apache-2.0", "license_file": "LICENSE",
        "attribution": "medvision (trained by medvision.ai.inpainting.train)",
        "provenance": {"parent": None, "created": time.strftime("%Y-%m-%d"),
                       "training_data": config.train, "held_out": config.held_out,
                       "steps": result["steps"], "minutes": round(result["minutes"], 1),
                       "config": {k: v for k, v in asdict(config).items() if k not in ("train", "held_out", "notes")},
                       "history": result["history"]},
    }
    write_text(folder / "model.json", json.dumps(card, indent=1))
    write_text(folder / "LICENSE", _LICENSE)
    return folder


_COARSE_WORDS = {"biharmonic_3d": "the biharmonic fill in 3D, the slices above and below weighted by the voxel size",
                 "biharmonic": "the biharmonic fill of each slice", "push_pull": "a push-pull fill of each slice"}

_LICENSE = """medvision inpainting model: the network (code and these weights) is medvision's own work, Apache-2.0.

It was trained on these volumes (../shared/data of the medvision project), whose licences allow it:
- TotalSegmentator test files (CT volumes and their labels): Apache-2.0, (c) Jakob Wasserthal et al.
- ICBM 2009a symmetric MNI152 T1 template (via nilearn): Copyright (C) 1993-2009 Louis Collins,
  McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University. Permission to use,
  copy, modify, and distribute this software and its documentation for any purpose and without fee is
  hereby granted, provided that the above copyright notice appear in all copies.
Held-out volumes used only to measure it: pyradiomics test data (BSD-3), ITK-SNAP test data (GPL-3
repository; used as test data only, not trained on).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medvision.ai.inpainting.train")
    parser.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[3].parent / "shared" / "data"))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-adversarial", action="store_true", help="L1 + SSIM only (the baseline)")
    parser.add_argument("--id", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("-o", "--out", default="models")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    new_id = args.id or f"medvision-inpaint-{args.recipe}" + ("-l1" if args.no_adversarial else "")
    config = InpaintTrainConfig(train=recipe["train"], held_out=recipe["held_out"], modality=recipe["modality"],
                                new_id=new_id, data_root=args.data, minutes=args.minutes,
                                workdir=args.workdir or f"inpaint-work-{new_id}", adversarial=not args.no_adversarial)
    result = train(config, say=lambda m: print(m, flush=True))
    folder = export_package(config, result, Path(args.out))
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
