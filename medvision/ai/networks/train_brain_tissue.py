"""Build the shipped package ``brain-tissue-mni152``: deepbet fine-tuned to CSF / grey / white matter.

Usage::

    python -m medvision.ai.networks.train_brain_tissue MNI_DIR OUT_DIR [--minutes 12] [--seed 0] [--check DIR]

``MNI_DIR`` holds the ICBM 2009a symmetric template as nilearn ships it (``mni152_t1_1mm.nii.gz``,
``mni152_gm_prob_1mm.nii.gz``, ``mni152_wm_prob_1mm.nii.gz``; ../shared/data/volumes on a development
machine). ``OUT_DIR`` becomes the package folder (``weights.safetensors``, ``model.json``,
``LICENSE``, ``README.md``).

The labels: the template is skull-stripped, so the brain is its non-zero voxels (holes filled);
in the brain each voxel gets the most probable of CSF (1 - GM - WM), grey matter and white
matter; outside it, background. The network is medvision's own fine-tuning
(:func:`medvision.ai.training.train_job`) from ``deepbet-t1-brain`` on that one image, with the
strong augmentation (gamma, bias field, blur, lower resolution, noise, +-20 % scaling, +-15 deg
rotations) that makes one template look like many scans. The trainer's one-case split holds out a
slab of the template for validation.

What it is for: a start for fine-tuning on structures inside the brain (ventricles, caudate,
hippocampus: tissue boundaries are what they are drawn along), and a rough tissue map. It has
seen one (averaged, very clean) image: it is not a validated tissue classifier.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

PACKAGE_ID = "brain-tissue-mni152"
VERSION = "1"
BASE = "deepbet-t1-brain"
FILES = {"t1": "mni152_t1_1mm.nii.gz", "gm": "mni152_gm_prob_1mm.nii.gz", "wm": "mni152_wm_prob_1mm.nii.gz"}
CLASSES = {"CSF": 1, "grey matter": 2, "white matter": 3}
COLOURS = {"CSF": [60, 130, 255, 255], "grey matter": [90, 200, 90, 255], "white matter": [255, 225, 60, 255]}
MNI_NOTICE = (
    "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological\n"
    "Institute, McGill University. Permission to use, copy, modify, and distribute this software and its\n"
    "documentation for any purpose and without fee is hereby granted, provided that the above copyright\n"
    "notice appear in all copies. The authors and McGill University make no representations about the\n"
    "suitability of this software for any purpose. It is provided \"as is\" without express or implied\n"
    "warranty. The authors are not responsible for any data loss, equipment damage, property loss, or\n"
    "injury to subjects or patients resulting from the use or misuse of this software package.\n"
)
DESCRIPTION = (
    "Brain tissue classes of a T1-weighted MRI: cerebrospinal fluid (ventricles and sulci), grey matter, "
    "white matter, at 0.75 mm voxels in sliding windows. deepbet's brain extraction network fine-tuned with "
    "medvision on one image: the ICBM 2009a symmetric MNI152 template and its grey/white-matter probability "
    "maps (CSF = the rest of the skull-stripped brain), with strong augmentation. Made as the start for "
    "fine-tuning on structures inside the brain; as a tissue classifier it is rough (one averaged, very "
    "clean training image). Built by python -m medvision.ai.networks.train_brain_tissue."
)


CHECK_NAMES = {"lateral ventricles": [1], "hippocampi": [4, 5], "caudate": [7], "corpus callosum": [8]}


def check_on_mricrop(package_dir: Path, labeled_dir: Path) -> str:
    """How the package labels ITK-SNAP's MRIcrop (a real T1 it never saw) inside its hand-drawn
    structures: a sentence for the README ("" when the files are not there)."""
    image, seg = labeled_dir / "MRIcrop-orig.gipl.gz", labeled_dir / "MRIcrop-seg.gipl.gz"
    if not (image.is_file() and seg.is_file()):
        return ""
    from ...core.jobs import run_job
    from ...io import load
    from ...io.labels import load_labels
    from ..engine import InferenceOptions, infer_job
    from ..package import ModelPackage

    volume = load(image)
    truth = load_labels(seg, volume).array
    pred = run_job(infer_job(ModelPackage.open(package_dir), volume, InferenceOptions(device="cpu"))).labels.array
    parts = []
    for name, values in CHECK_NAMES.items():
        inside = np.isin(truth, values)
        share = np.bincount(pred[inside].ravel(), minlength=4)[:4] / max(1, inside.sum())
        parts.append(f"{name}: {100 * share[1]:.0f} % CSF, {100 * share[2]:.0f} % grey, {100 * share[3]:.0f} % "
                     f"white matter, {100 * share[0]:.0f} % background")
    return ("Checked on a real T1 it never saw (ITK-SNAP's MRIcrop test image, hand-drawn structures); voxels of "
            "each structure labelled as: " + "; ".join(parts) + ". Dark CSF can come out as background (the "
            "template's background is black). Use it as a base for fine-tuning; as a tissue map it is rough.")


def tissue_labels(t1, gm, wm) -> np.ndarray:
    """uint8 labels (0 background, 1 CSF, 2 grey matter, 3 white matter) from the template arrays."""
    from ..preprocess import fill_holes

    brain = fill_holes(np.asarray(t1) > 0)
    gm, wm = (np.asarray(p, dtype=np.float32) for p in (gm, wm))
    if max(gm.max(), wm.max()) > 1.5:  # nilearn stores the probabilities as uint8, 255 = 1
        gm, wm = gm / 255.0, wm / 255.0
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    csf = np.clip(1.0 - gm - wm, 0, 1)
    labels = (np.argmax(np.stack([csf, gm, wm]), axis=0) + 1).astype(np.uint8)
    labels[~brain] = 0
    return labels


def build(mni_dir: Path, out_dir: Path, minutes: float, seed: int, threads: int | None,
          check_dir: Path | None = None) -> Path:
    import SimpleITK as sitk

    from ...core.jobs import run_job
    from ..package import ModelPackage, Registry, sha256_of, write_card
    from ..training import TrainConfig, TrainingData, train_job

    paths = {k: mni_dir / name for k, name in FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)}")
    images = {k: sitk.ReadImage(str(p)) for k, p in paths.items()}
    for k in ("gm", "wm"):
        if images[k].GetSize() != images["t1"].GetSize() or not np.allclose(images[k].GetOrigin(),
                                                                             images["t1"].GetOrigin()):
            raise SystemExit(f"{paths[k].name} is not on the template's grid")
    labels = tissue_labels(*(sitk.GetArrayFromImage(images[k]) for k in ("t1", "gm", "wm")))
    counts = np.bincount(labels.ravel(), minlength=4)
    print("voxels: " + ", ".join(f"{n} {counts[v]}" for n, v in CLASSES.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="medvision-tissue-") as tmp:
        tmp = Path(tmp)
        label_image = sitk.GetImageFromArray(labels)
        label_image.CopyInformation(images["t1"])
        label_path = tmp / "mni152_tissue.nii.gz"
        sitk.WriteImage(label_image, str(label_path))
        datalist = {"labels": CLASSES, "training": [{"image": str(paths["t1"]), "label": str(label_path),
                                                     "case": "mni152_2009a_sym"}]}
        data = TrainingData.from_datalist(datalist)
        home = tmp / "home"
        os.environ["MEDVISION_HOME"] = str(home)
        config = TrainConfig(base=BASE, new_id=PACKAGE_ID, name="Brain tissue (CSF, grey, white matter), T1",
                             minutes=minutes, epochs=None, patience=0, seed=seed, augment="strong",
                             patches_per_epoch=160, workdir=str(tmp / "work"), threads=threads)

        def show(p):
            if p.stage == "epoch":
                print(f"  {p.message}", flush=True)

        result = run_job(train_job(config, data, Registry()), on_progress=show)
        print(f"validation Dice {result.best_val_dice:.3f} {result.per_label} after {result.epochs_run} epochs",
              flush=True)
        src = Path(result.package_folder)
        staging = out_dir.with_name(f".{out_dir.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(src, staging)
    card = json.loads((staging / "model.json").read_text(encoding="utf-8"))
    deepbet_licence = (staging / "LICENSE").read_text(encoding="utf-8") if (staging / "LICENSE").is_file() else ""
    (staging / "LICENSE").write_text(
        "The weights in this package derive from two works; both notices apply.\n\n"
        "1. deepbet 1.0.2 (the starting weights), MIT licence:\n\n" + deepbet_licence.strip() + "\n\n"
        "2. The ICBM 2009a symmetric MNI152 template and its tissue probability maps (the training data):\n\n"
        + MNI_NOTICE, encoding="utf-8")
    prov = card["provenance"]
    prov.update({
        "training_data": "ICBM 2009a nonlinear symmetric MNI152 T1 template, 1 mm, with its grey- and white-matter "
                         "probability maps, as shipped in the nilearn wheel",
        "data_files": {p.name: sha256_of(p) for p in paths.values()},
        "labels_rule": "brain = template > 0 (holes filled); in it the most probable of CSF = 1 - GM - WM, GM, WM",
        "built_by": "python -m medvision.ai.networks.train_brain_tissue",
    })
    card.update({
        "version": VERSION, "description": DESCRIPTION, "sequence": "T1", "body_part": "brain",
        "license": "MIT AND MNI-template-notice", "license_file": "LICENSE",
        "license_note": "fine-tuned from deepbet-t1-brain 1.0.2 (MIT) on the MNI152 template (MNI/McGill notice: "
                        "use, copy, modify, distribute with the notice); see LICENSE",
        "attribution": card.get("attribution", "") + " Training data: ICBM 2009a MNI152 template, Copyright (C) "
                       "1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, "
                       "McGill University; Fonov V, et al. NeuroImage 54 (2011) 313-327.",
    })
    for label in card["labels"]:
        label["color"] = COLOURS.get(label["name"], label["color"])
    card["weights"]["sha256"] = sha256_of(staging / card["weights"]["file"])
    write_card(staging, card)
    ModelPackage.open(staging).verified_weights()
    check = check_on_mricrop(staging, check_dir) if check_dir else ""
    (staging / "README.md").write_text(_readme(card, result, check), encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
    print(f"wrote {out_dir}")
    return out_dir


def _readme(card: dict, result, check: str = "") -> str:
    metrics = card["provenance"].get("metrics") or {}
    per = ", ".join(f"{k} {v:.3f}" for k, v in (metrics.get("per_label") or {}).items() if v is not None)
    return (
        f"# {card['name']}\n\n{card['description']}\n\n"
        f"- Labels: 1 CSF, 2 grey matter, 3 white matter (0 background: outside the brain).\n"
        f"- Network: deepbet's LinkNet3D (instance norm), new head; {card['input']['spacing_mm']} mm voxels, "
        f"sliding windows {card['inference']['sliding_window']['roi_size']}.\n"
        f"- Validation on a held-out slab of the template: Dice {metrics.get('val_dice') or 0:.3f} ({per}); "
        f"{result.epochs_run} epochs, {card['provenance'].get('seconds')} s on "
        f"{card['provenance'].get('device')}.\n"
        "- Split: " + str(card["provenance"].get("split")) + "\n\n"
        + (check + "\n\n" if check else "")
        + "Rebuild: `python -m medvision.ai.networks.train_brain_tissue ../shared/data/volumes "
        "models/brain-tissue-mni152 --check ../shared/data/labeled`.\n\n"
        "Licence: see LICENSE (deepbet's MIT licence and the MNI template notice).\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mni_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--check", type=Path, help="a folder with MRIcrop-orig/-seg.gipl.gz (../shared/data/labeled): "
                    "the README says how the new model labels its structures")
    args = ap.parse_args(argv)
    build(args.mni_dir, args.out_dir, args.minutes, args.seed, args.threads, args.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
