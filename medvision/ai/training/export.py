"""The fine-tuned model as a package in the user's models: ``weights.safetensors`` (the best
weights) and a card that says how to run it (the voxel size trained at, sliding windows, the training
normalisation), its labels, licence and provenance (parent model, cases and their file hashes,
hyperparameters, metrics, split, epochs, date)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ...core.atomic import write_via
from ..package import ModelPackage, PackageError, sha256_of, user_dir, write_card

__all__ = ["next_version", "write_package", "inference_card", "created"]


def next_version(model_id: str, root: Path | None = None) -> str:
    """``"1"``, or one more than the highest whole-number version of ``model_id`` in the user's models."""
    root = root or user_dir()
    highest = 0
    for folder in root.iterdir() if root.is_dir() else ():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            pkg = ModelPackage.open(folder)
        except PackageError:
            continue
        if pkg.id == model_id and pkg.version.isdigit():
            highest = max(highest, int(pkg.version))
    version = highest + 1
    while (root / f"{model_id}-{version}").exists():
        version += 1
    return str(version)


def inference_card(base_card: dict, patch, batch_size: int = 2, spacing_mm=None) -> dict:
    """The ``input``, ``inference`` entries of the new card: the voxel size trained at (``spacing_mm``:
    the engine resamples to it and maps the result back onto the image's grid; None: native
    resolution), no localizer, sliding windows of the training patch size, normalisation as trained
    (statistics of the image)."""
    base_input = dict(base_card.get("input") or {})
    norm = dict(base_input.get("normalization") or {"kind": "none"})
    norm.pop("quantiles_from", None)
    return {
        "input": {"channels": int(base_input.get("channels", 1)), "orientation": base_input.get("orientation", "RAS"),
                  "spacing_mm": [float(s) for s in spacing_mm] if spacing_mm else None, "normalization": norm},
        "inference": {"mode": "sliding_window",
                      "sliding_window": {"roi_size": [int(p) for p in patch], "overlap": 0.5, "blend": "gaussian",
                                         "batch_size": int(batch_size)}},
    }


def write_package(*, base: ModelPackage, new_id: str, name: str, state: dict, spec: dict, classes: list[dict],
                  patch, softmax_in_network: bool, provenance: dict, from_scratch: bool,
                  description: str = "", spacing_mm=None,
                  run_as: tuple[dict, dict[str, str]] | None = None) -> ModelPackage:
    """Write the package into ``<user data>/models/<new_id>-<version>`` (a temporary folder renamed
    into place) and return it, opened (its weights checked against the card). ``run_as``: the card
    entries that say how to run it and the files of the base's folder they need, when it runs as
    its base does (a brainchop base: :func:`.conformed.run_as_card`), instead of sliding windows."""
    from safetensors.torch import save_file

    root = user_dir()
    version = next_version(new_id, root)
    dest = root / f"{new_id}-{version}"
    tmp = root / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        write_via(tmp / "weights.safetensors", lambda part: save_file(weights, str(part), metadata={"format": "pt"}))
        bc = base.card
        licence = str(bc.get("license") or "unspecified")
        if from_scratch:
            note = (f"trained from scratch with medvision on local data (architecture of {base.id} {base.version}, "
                    "none of its weights); the licence of the training data applies")
        else:
            note = (f"fine-tuned from {base.id} {base.version} ({licence}); the weights derive from it and from the "
                    "local training data, whose terms apply too")
        card = {
            "format": "medvision-model", "format_version": 1, "id": new_id, "version": version, "name": name,
            "task": "segmentation", "modality": bc.get("modality"), "dims": int(bc.get("dims", 3)),
            "description": description or f"{name}: {note}.",
            "architecture": spec,
            "weights": {"file": "weights.safetensors", "sha256": sha256_of(tmp / "weights.safetensors")},
            **inference_card(bc, patch, spacing_mm=spacing_mm),
            "output": {"activation": "softmax", "in_network": bool(softmax_in_network)},
            "postprocessing": {},
            **(run_as[0] if run_as else {}),
            "labels": [{"value": int(c["value"]), "name": c["name"], "color": [int(x) for x in c["color"]]}
                       for c in classes],
            "license": licence, "license_note": note,
            "attribution": bc.get("attribution", ""),
            "provenance": provenance,
        }
        for key in ("sequence", "body_part", "trainable_architectures"):
            if bc.get(key) is not None:
                card[key] = bc[key]
        for file in (run_as[1] if run_as else {}):
            if "/" in file or "\\" in file or not (base.folder / file).is_file():
                raise PackageError(f"{base.id}: its card names {file!r}, which is not a file in {base.folder}")
            shutil.copy2(base.folder / file, tmp / file)
        lic = bc.get("license_file")
        if lic and (base.folder / lic).is_file() and "/" not in lic and "\\" not in lic:
            shutil.copy2(base.folder / lic, tmp / lic)
            card["license_file"] = lic
        write_card(tmp, card)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    package = ModelPackage.open(dest)
    package.verified_weights()
    return package


def created() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
