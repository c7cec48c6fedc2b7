"""What a training run is asked to do (:class:`TrainConfig`), what it gives back
(:class:`TrainResult`), and which run of a cross-validation it is (:class:`Run`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .data import Split

__all__ = ["TrainConfig", "TrainResult", "Run", "DEFAULT_EPOCHS", "LOCALIZER_BOX_SPACING_MM", "training_spacing",
           "clean", "same_settings"]

DEFAULT_EPOCHS = 50  # when neither epochs nor minutes are given (early stopping usually ends sooner)
#: the voxel size (mm) a base network that sees a localizer's box resized to a fixed shape learnt at:
#: deepbet resizes the brain's box plus 10 % margins (about 170 x 210 x 150 mm) to 256^3, i.e.
#: 0.6-0.8 mm voxels. Its card can say otherwise with ``input.learnt_spacing_mm``.
LOCALIZER_BOX_SPACING_MM = 0.75
_CHOICES = {"head_init": ("auto", "probe", "prior", "random"), "freeze_part": ("encoder", "body")}
@dataclass
class TrainConfig:
    base: str
    new_id: str
    name: str | None = None
    epochs: int | None = None
    minutes: float | None = None
    device: str = "auto"
    from_scratch: bool = False
    patch_size: tuple[int, int, int] = (64, 64, 64)
    batch_size: int = 2
    patches_per_case: int = 4
    lr: float = 1e-3
    #: the encoder's learning rate as a share of ``lr`` once it is unfrozen (1: the same). 1 by
    #: default: fine-tuning a LinkNet tissue base's encoder on MRIcrop (1200 iterations, seed 0, encoder
    #: transfer) reached validation Dice 0.801 with 1.0 and no freeze, 0.523 with 0.3 after a
    #: quarter-epoch freeze of the encoder (MeshNet, brainchop's bases, has no encoder: one group)
    encoder_lr_factor: float = 1.0
    #: epochs (a fraction: of the iterations of the first epoch) with ``freeze_part`` frozen (0: none)
    freeze_epochs: float = 0
    #: what the first ``freeze_epochs`` hold still: "encoder", or "body" (every pretrained layer: only
    #: the new head learns, a linear probe on the base's features before the whole network is tuned:
    #: "LP-FT", with ``transfer="all"``; see ``transfer``)
    freeze_part: str = "encoder"
    warmup_epochs: int = 2
    patience: int = 10
    seed: int = 0
    workdir: str | None = None
    architecture: str | None = None
    amp: bool = True
    #: patches per epoch (default: patches_per_case per training case/region)
    patches_per_epoch: int | None = None
    weight_decay: float = 1e-4
    #: what of the base's weights to start from: "all" (only the output head new; the default) or
    #: "encoder" (decoder and head new). See ``head_init`` for what the defaults measured.
    transfer: str = "all"
    #: voxel size the network is trained (and the new model run) at: "auto" (the scale the base
    #: learnt at, see :func:`training_spacing`), a number or (x, y, z) in mm, or None: native
    spacing_mm: float | tuple[float, float, float] | str | None = "auto"
    #: the new head: "probe" (fitted alone first to the features the pretrained layers give on 16
    #: training patches, at the training loss: see :mod:`.probe`), "prior" (biases = log class
    #: frequencies, weights x 0.1), "random", or "auto" (the default: when the layers under the head are
    #: pretrained, the probe, kept only if it predicts the validation data better than the class
    #: frequencies (cross-entropy), else "prior"). From brainchop-subcortical-18 (benchmarks/bench_train.py,
    #: 32^3 patches) the probe fails the check on MRIcrop's corpus callosum (cross-entropy 0.99 against
    #: 0.28) and is not kept on brain1's tumour either: "auto" starts at the priors; with them fine-tuning was ahead of
    #: from scratch on every seed (MRIcrop, 50 iterations: 0.379, 0.115, 0.266 against 0.0 each; brain1,
    #: 100 iterations: 0.100, 0.199, 0.028 against 0.0, 0.018, 0.0). With a LinkNet tissue base (since removed; README's
    #: git history) the probe passed on MRIcrop's ventricles, hippocampi and caudate (0.839 against
    #: 0.711 from scratch, 1200 iterations, seeds 0-8) and failed on brain1 (0.06 against 0.39 with "prior").
    head_init: str = "auto"
    #: patch centres: "classes" (background and each label equally often) or "posneg" (labels 2:1)
    sampling: str = "classes"
    #: augmentation: "standard" (flips, small rotations and scalings, intensity jitter) or "strong"
    #: (larger ones, plus gamma, bias field, blur, low resolution, noise: for a template or very few scans)
    augment: str = "standard"
    #: the Dice part of the loss over the whole batch (nnU-Net's "batch Dice") rather than per patch:
    #: a patch without a small structure then does not punish every false positive of it at full weight.
    #: Off by default: on MRIcrop (seeds 0-2, encoder transfer) neither arm learnt the hippocampus better
    batch_dice: bool = False
    val_fraction: float = 0.2
    #: k-fold cross-validation (2 or more; 0: a hold-out split): one run per fold, each validated on
    #: its fold's cases (every case once), then the model itself trained on all the cases for the
    #: median of the folds' best epochs (see :mod:`.crossval`); a time budget is shared by the runs
    folds: int = 0
    #: a single case's validation slab: "x-first", "z-last" ... (None: chosen, see ``region_split``)
    val_slab: str | None = None
    threads: int | None = None
    #: the card names the training cases by their ids (file names, often patients' names) instead of
    #: anonymous numbers ("case-001") beside their content hashes
    case_names: bool = False

    def __post_init__(self) -> None:
        from ..card_schema import is_safe_id

        if not is_safe_id(self.new_id):  # it names the new package's folder: checked before any training
            raise ValueError(f"the new model's id {self.new_id!r} takes letters, digits, '.', '_' and '-' only, "
                             "starting with a letter or digit, at most 100 characters and no '..'")
        for key, allowed in _CHOICES.items():  # (before any data is read)
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be {' or '.join(map(repr, allowed))}, not {getattr(self, key)!r}")

    def as_dict(self) -> dict:
        out = asdict(self)
        out["patch_size"] = [int(p) for p in self.patch_size]
        if isinstance(self.spacing_mm, (tuple, list)):
            out["spacing_mm"] = [float(s) for s in self.spacing_mm]
        return out


@dataclass
class TrainResult:
    package_folder: Path | None  # None: a cross-validation fold's run (no package of its own)
    best_val_dice: float | None
    per_label: dict[str, float | None]
    epochs_run: int
    history: list[dict]
    split_description: str
    package_id: str = ""
    version: str = ""
    run_id: str = ""
    lineage: list[dict] = field(default_factory=list)
    stopped_because: str = ""
    best_epoch: int = 0
    notes: list[str] = field(default_factory=list)
    head_init_used: str = ""
    #: a cross-validated model's folds: see :func:`.crossval.cross_validation_job`
    cross_validation: dict | None = None
    workdir: str = ""  # the run's checkpoint folder


@dataclass
class Run:
    """One run of a cross-validation (see :mod:`.crossval`): its split, what it adds to the
    checkpoint's identity, its folder within ``config.workdir``, its name in progress records,
    whether it writes the package, how many runs of about its length follow it (for the ETA)."""

    split: Split
    identity: dict
    subdir: str
    label: str
    export: bool
    runs_after: int = 0
    cross_validation: dict | None = None
    fold: int | None = None  # its fold's number (None: the final model)


def clean(value):
    """NaN -> None, numpy/torch scalars -> float (JSON and weights_only friendly)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def training_spacing(card: dict, spacing_mm="auto") -> tuple[float, float, float] | None:
    """The voxel size (x, y, z mm) to train at: ``spacing_mm`` itself (a number: isotropic), None
    (or "native") for native resolution, or for "auto" the scale the base card's network learnt at:
    its ``input.learnt_spacing_mm`` or ``input.spacing_mm``; for a base that sees a localizer's box
    resized to a fixed shape (deepbet) :data:`LOCALIZER_BOX_SPACING_MM`; else native (None)."""
    if spacing_mm is None or spacing_mm == "native":
        return None
    if spacing_mm == "auto":
        spec = card.get("input") or {}
        spacing_mm = spec.get("learnt_spacing_mm") or spec.get("spacing_mm")
        if not spacing_mm and spec.get("resize_to") and card.get("localizer"):
            spacing_mm = LOCALIZER_BOX_SPACING_MM
        if not spacing_mm:
            return None
    if isinstance(spacing_mm, str):
        raise ValueError(f"spacing_mm must be 'auto', None, a number or three numbers, not {spacing_mm!r}")
    values = [float(spacing_mm)] * 3 if np.ndim(spacing_mm) == 0 else [float(s) for s in spacing_mm]
    if len(values) != 3 or not all(v > 0 for v in values):
        raise ValueError(f"spacing_mm must be positive (one number or three), not {spacing_mm!r}")
    return tuple(values)


#: settings that do not change what a run computes (a finished fold is reused whatever they are)
_INCIDENTAL = ("workdir", "device", "threads", "name", "amp", "case_names")


def same_settings(saved: dict | None, config: TrainConfig) -> bool:
    """Whether a checkpoint's settings are ``config``'s, but for :data:`_INCIDENTAL` ones."""
    now = json.loads(json.dumps(config.as_dict()))  # (tuples as lists, as a checkpoint holds them)
    return isinstance(saved, dict) and all(saved.get(k) == v for k, v in now.items() if k not in _INCIDENTAL)
