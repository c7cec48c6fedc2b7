"""The end of a run: a cross-validation fold's figures (no package), or the new model package
(card with provenance: parent, cases as anonymous numbers with their hashes, hyperparameters,
metrics, lineage; safetensors weights of the best epoch) and the run's checkpoint marked finished."""

from __future__ import annotations

import re
import time

from ..package import PackageError, user_dir
from . import checkpoint as ckpt
from .config import Run, TrainResult, clean
from .conformed import run_as_card
from .data import TrainingData
from .export import created, write_package
from .optim import Optimisation
from .prepare import Setup
from .resume import RunState, mark_finished

__all__ = ["fold_result", "write_model", "anonymous_cases"]


def fold_result(setup: Setup, state: RunState) -> TrainResult:
    """A cross-validation fold's result (its figures; no package)."""
    return TrainResult(package_folder=None, best_val_dice=clean(state.best.val_dice),
                       per_label=setup.task.per_label(state.best.per_label), epochs_run=state.epoch,
                       history=list(state.history), split_description=setup.split.description, run_id=state.run_id,
                       lineage=list(state.lineage), stopped_because=state.stopped, best_epoch=state.best.epoch,
                       notes=setup.notes, head_init_used=state.head_used, workdir=str(state.workdir))


def write_model(setup: Setup, opt: Optimisation, state: RunState, data: TrainingData, run: Run | None) -> TrainResult:
    """The new model package from the run's best weights; its result."""
    config, base = setup.config, setup.base
    weights = state.best.weights or {k: v.detach().cpu() for k, v in setup.net.state_dict().items()}
    cv = run.cross_validation if run is not None else None
    provenance = _provenance(setup, opt, state, data, cv)
    names = setup.task.names
    name = config.name or f"{', '.join(names)} ({'fine-tuned from ' + base.id if setup.fine_tune else 'trained'})"
    try:
        package = write_package(base=base, new_id=config.new_id, name=name, state=weights, spec=setup.tn.spec,
                                classes=data.classes, patch=setup.patch, softmax_in_network=setup.tn.softmax_in_network,
                                provenance=provenance, from_scratch=not setup.fine_tune, spacing_mm=setup.target,
                                run_as=run_as_card(base, setup.conformed.crop) if setup.conformed else None)
    except PackageError:
        raise
    except Exception as exc:
        size = sum(t.numel() * t.element_size() for t in weights.values())
        raise RuntimeError(f"could not write the new model into {user_dir()}: "
                           f"{ckpt.disk_problem(exc, user_dir(), size)}; "
                           f"the training is kept (epoch {state.epoch}'s checkpoint): once there is room, a run with "
                           "the same model id, base and cases writes the model from it") from exc
    if not mark_finished(state.workdir, package=str(package.folder)):  # (the same command again starts a new run)
        ckpt.set_aside(state.workdir, f"{state.run_id}-finished")  # the model is written: set the run aside
    result = fold_result(setup, state)
    result.package_folder, result.package_id, result.version = package.folder, package.id, package.version
    if cv:  # (the folds' figures; the model's last epoch)
        result.best_val_dice, result.per_label, result.best_epoch = cv["val_dice_mean"], cv["per_label_mean"], \
            state.epoch
        result.split_description, result.cross_validation = f"{cv['description']}; {setup.split.description}", cv
    return result


def _provenance(setup: Setup, opt: Optimisation, state: RunState, data: TrainingData, cv: dict | None) -> dict:
    config, base = setup.config, setup.base
    hyper = config.as_dict() | {"patch_used": list(setup.patch), "optimizer": "AdamW",
                                "loss": setup.task.loss_description,
                                "schedule": "linear warm-up, cosine decay (per step)",
                                "sampling": setup.sampler.description, "freeze_epochs_used": opt.freeze_epochs,
                                "encoder_lr_factor_used": opt.encoder_factor,
                                "spacing_mm_used": list(setup.target) if setup.target else None,
                                "head_init_used": state.head_used}
    provenance = {
        "parent": f"{base.id} {base.version}", "parent_id": base.id, "parent_version": base.version,
        "parent_sha256": base.card["weights"]["sha256"], "from_scratch": not setup.fine_tune,
        "cases": [c.id for c in data.cases], "data_hashes": {c.id: c.sha256 for c in data.cases},
        "label_mapping": {c.id: c.original_values for c in data.cases},
        "hyperparameters": hyper,
        "metrics": {"val_dice": clean(state.best.val_dice), "per_label": setup.task.per_label(state.best.per_label),
                    "best_epoch": state.best.epoch},
        "split": setup.split.description, "epochs_run": state.epoch, "stopped_because": state.stopped,
        "created": created(), "trained_by": "medvision train", "run_id": state.run_id, "lineage": state.lineage,
        "device": setup.device, "seconds": round(state.seconds_before + time.perf_counter() - state.session_start, 1),
    }
    if setup.group.several:
        provenance["processes"] = setup.group.world  # data-parallel (torchrun)
    if cv:  # the figures are the folds': this model saw every case
        provenance["cross_validation"] = cv
        provenance["metrics"] = {"val_dice": cv["val_dice_mean"], "val_dice_sd": cv["val_dice_sd"],
                                 "per_label": cv["per_label_mean"], "validation": cv["description"]}
        provenance["seconds"] = round(provenance["seconds"] + cv["seconds"], 1)
    # case ids come from file names, often patients' names: numbers in the card unless asked
    return anonymous_cases(provenance, [c.id for c in data.cases], keep=config.case_names)


def anonymous_cases(provenance: dict, ids: list[str], keep: bool = False) -> dict:
    """``provenance`` with every case id (in values and keys, as a whole word) replaced by ``case-NNN`` in the
    order of ``ids``; the content hashes stay, so a case can still be matched to its files by who holds them.
    ``keep``: the ids are left as they are (the user asked for names in the card)."""
    numbers = {cid: f"case-{i + 1:03d}" for i, cid in enumerate(ids)}
    if not numbers or keep:
        return provenance
    pattern = re.compile("|".join(rf"(?<![\w.-]){re.escape(cid)}(?![\w.-])"
                                  for cid in sorted(numbers, key=len, reverse=True)))

    def swap(value):
        if isinstance(value, str):
            return numbers.get(value) or pattern.sub(lambda m: numbers[m.group(0)], value)
        if isinstance(value, dict):
            return {swap(k) if isinstance(k, str) else k: swap(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [swap(v) for v in value]
        return value

    out = {k: (v if k in ("parent", "parent_id", "parent_version", "parent_sha256", "hyperparameters", "created",
                          "run_id", "lineage", "device") else swap(v)) for k, v in provenance.items()}
    out["case_names"] = "anonymous (case-NNN in the order trained; the hashes identify the files)"
    return out
