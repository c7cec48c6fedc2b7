"""The training loop as a job: ``train_job(config, data)`` yields progress and returns a
:class:`TrainResult` after writing the new model package.

The images are seen at the voxel size the base network learnt at (``spacing_mm="auto"``: the base
card's ``input.spacing_mm``, or for a base that sees a localizer's box resized to a fixed shape
-- deepbet: a ~200 mm box over 256 voxels -- :data:`LOCALIZER_BOX_SPACING_MM`): each training
region and validation context is resampled to it (trilinear; labels per class), and the new card
asks the engine for the same ``spacing_mm``. Every base weight but the output head's is reused
(``transfer="all"``). The new head is first fitted alone to the pretrained features of a few
training patches (:mod:`.probe`: a linear probe at the training loss, kept by ``head_init="auto"`` only when it
predicts the validation data better than the class frequencies do), so that
fine-tuning starts from a head that already reads the base's features for the new labels; a
network from scratch starts at the class frequencies (``"prior"``: softmax biases = log
frequencies, weights scaled down).

A base that sees images as brainchop does (a card with ``input.conform``: brainchop's MeshNet
packages) is fine-tuned on what it sees (:mod:`.conformed`): every case conformed to the 256^3
1 mm LIA cube, normalised and cropped by the pipeline's own functions, the labels carried onto the
cube; validation runs the network on the whole validation context at once (the slab and the
network's receptive field around it), as the engine runs the crop; the new card runs as the base
runs (``inference.mode = "brainchop"``), without the base's largest-component post-processing.

One epoch: random patches of the training regions (:class:`.sampling.PatchSampler`, centred on
the background and each label equally often), DiceCE loss (monai, softmax, one-hot targets),
AdamW with a linear warm-up then a cosine decay (set every step); a fine-tuning can first hold the
encoder still (``freeze_part="encoder"``) or every pretrained layer (``"body"``: with
``transfer="all"`` only the new head learns, a linear probe, then fine-tuning, "LP-FT") for
``freeze_epochs`` epochs (a fraction counts iterations; none by default), then trains them too,
warmed up again over one epoch (the encoder at ``lr * encoder_lr_factor``);
autocast + GradScaler on CUDA only. Then validation: sliding windows (monai, roi = patch) over each
validation region at the training voxel size, the probabilities mapped back onto the region's own
grid (as the engine does), Dice per label there (monai ``compute_dice``; a label absent from a
region's reference is left out of its mean), mean over labels. The best weights are kept; training
stops after ``epochs``, when ``minutes`` is used, or when the validation Dice has not improved for
``patience`` epochs. ``minutes`` covers the whole run, from its start to the package written
(:mod:`.budget`): the probe gets a share of it, and the last epoch stops early enough for its
validation, its checkpoint and the package to fit.

Started by torchrun in several processes (several GPUs), the run is data-parallel
(:mod:`.distributed`): each process draws its share of an epoch's patches, the gradients are
averaged every step, process 0 alone validates, checkpoints and writes the package.

After every epoch the checkpoint (:mod:`.checkpoint`) is written before the epoch's progress
record is yielded, so closing the job at any yield keeps every finished epoch; the same config
(base, new id, data hash) in the same work folder resumes from it. Progress records: stage
``"training"`` (done = iteration in the epoch) about every 20 iterations, stage ``"epoch"`` (done =
epoch, total = epochs or 0) with ``preview`` = ``{epoch, train_loss, val_dice, per_label, lr,
seconds, eta_s, best_val_dice, best_epoch, frozen}``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...core.jobs import Job, Progress
from ..engine import pick_device
from ..memory import is_out_of_memory, release_gpu_memory
from ..package import PackageError, Registry, user_dir
from . import checkpoint as ckpt
from .budget import PROBE_SHARE, VALIDATION_MARGIN, Budget, window_count
from .conformed import is_conformed, prepare_conformed, run_as_card, validation_margin
from .data import Part, Split, TrainingData, normalize_for_training, resample_image, resample_labels, resampled_shape
from .distributed import Group
from .export import created, write_package
from .model import (
    encoder_modules,
    encoder_parameters,
    head_and_decoder_parameters,
    logits_function,
    make_network,
    size_multiple,
)
from .probe import fit_head_probe
from .sampling import PatchSampler, fit_patch, lateralised

__all__ = ["TrainConfig", "TrainResult", "train_job", "DEFAULT_EPOCHS", "WarmupCosine", "training_spacing",
           "init_head_from_priors", "LOCALIZER_BOX_SPACING_MM"]

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 50  # when neither epochs nor minutes are given (early stopping usually ends sooner)
#: the voxel size (mm) a base network that sees a localizer's box resized to a fixed shape learnt at:
#: deepbet resizes the brain's box plus 10 % margins (about 170 x 210 x 150 mm) to 256^3, i.e.
#: 0.6-0.8 mm voxels. Its card can say otherwise with ``input.learnt_spacing_mm``.
LOCALIZER_BOX_SPACING_MM = 0.75
#: batches of training patches the ``head_init="probe"`` head is fitted on (16 patches: 8-9 s on 2 CPU cores)
PROBE_BATCHES = 8
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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


class WarmupCosine:
    """Learning-rate factor: linear warm-up over ``warmup_epochs``, then a cosine decay to ``floor``
    at the horizon (the planned epochs; estimated from the time budget when only that is given)."""

    def __init__(self, warmup_epochs: float, floor: float = 0.02) -> None:
        self.warmup = float(warmup_epochs)
        self.floor = float(floor)
        self.steps = 0
        self.horizon: float | None = None

    def factor(self, position: float) -> float:
        warm = min(1.0, position / self.warmup) if self.warmup > 0 else 1.0
        if self.horizon is None or self.horizon <= self.warmup:
            return warm
        frac = min(1.0, max(0.0, (position - self.warmup) / (self.horizon - self.warmup)))
        return warm * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * frac)))

    def state_dict(self) -> dict:
        return {"kind": "warmup-cosine", "warmup_epochs": self.warmup, "floor": self.floor, "steps": self.steps,
                "horizon": -1.0 if self.horizon is None else float(self.horizon)}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state.get("steps", 0))
        h = float(state.get("horizon", -1.0))
        self.horizon = None if h < 0 else h


def _clean(value):
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


def init_head_from_priors(net: torch.nn.Module, head: list[str], frequencies: np.ndarray) -> bool:
    """The new head's output biases set to the log class frequencies (so its first softmax says the
    priors) and its weights scaled by 0.1: the head starts near the best constant answer instead of
    a random one whose large first gradients would run back into the pretrained layers. False when
    the head has no bias of one value per class (nothing changed)."""
    params = dict(net.named_parameters())
    biases = [n for n in head if n.endswith("bias") and params[n].shape == (len(frequencies),)]
    if not biases:
        return False
    prior = torch.log(torch.as_tensor(np.maximum(frequencies, 1e-4), dtype=torch.float32))
    with torch.no_grad():
        for name in head:
            if name.endswith("weight"):
                params[name].mul_(0.1)
        for name in biases:
            params[name].copy_(prior - prior.mean())
    return True


def _val_outputs(net, regions, patch, batch_size, device, amp):
    """(logits or, when resampled back, class probabilities; labels) of each validation region on the
    labels' own grid: sliding windows over the region's context, as the engine runs a whole image
    (``patch`` None: the network on the whole context at once, as brainchop runs its crop)."""
    from monai.inferers import sliding_window_inference

    fn = logits_function(net)

    def predictor(x):
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            return fn(x).float()

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for image, label, inner, native in regions:
                if patch is None:
                    out = predictor(image[None, None].to(device))
                else:
                    out = _sliding_windows(sliding_window_inference, image, patch, batch_size, predictor, device)
                probabilities = tuple(out.shape[2:]) != tuple(native)
                if probabilities:  # back onto the region's own grid, as the engine does
                    out = torch.nn.functional.interpolate(torch.softmax(out.float(), 1).cpu(), tuple(native),
                                                          mode="trilinear", align_corners=False)
                yield out.cpu()[(slice(None), slice(None), *inner)], probabilities, label
    finally:
        net.train(was_training)


def _sliding_windows(sliding_window_inference, image, patch, batch_size, predictor, device):
    """The network's output over ``image`` by overlapping windows; on running out of GPU memory, again
    one window at a time with the windows on the GPU and the whole output stitched in CPU memory."""
    kw = {"overlap": 0.5, "mode": "gaussian", "cval": float(image.min())}
    try:
        return sliding_window_inference(image[None, None].to(device), tuple(patch), batch_size, predictor, **kw)
    except RuntimeError as exc:
        if device == "cpu" or not is_out_of_memory(exc):
            raise
        log.warning("out of GPU memory while validating (%s): stitching in CPU memory", exc)
    release_gpu_memory()  # (outside the handler: the error's frames no longer hold GPU tensors)
    return sliding_window_inference(image[None, None], tuple(patch), 1, predictor, sw_device=device, device="cpu",
                                    **kw)


def _kept(epochs_kept: int) -> str:
    return (f"epoch {epochs_kept}'s checkpoint is kept: a run with the same model id, base and cases resumes from "
            "it" if epochs_kept else "no epoch had finished yet")


def _out_of_memory(what: str, epochs_kept: int) -> str:
    """What to tell the user when the GPU has no room for ``what`` (training or validation)."""
    return (f"out of GPU memory while {what}; {_kept(epochs_kept)}. Run it on the CPU (device cpu) or with smaller "
            "patches (medvision train --patch 32 --batch-size 1)")


def _estimate_validation_s(net, regions, patch, batch_size, device, amp, whole: bool = False) -> float:
    """About how long a validation over ``regions`` takes: a timed forward pass of ``batch_size``
    windows times the batches of windows the regions need (``whole``: times the regions' voxels
    over the windows', each region run at once), times :data:`.budget.VALIDATION_MARGIN`."""
    fn = logits_function(net)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            x = torch.zeros((batch_size, 1, *patch), device=device)
            times = []
            for _ in range(2):  # (the first pass allocates and warms up: the faster one counts)
                t = time.perf_counter()
                fn(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            seconds = min(times)
    finally:
        net.train(was_training)
    if whole:
        batches = sum(image.numel() for image, *_ in regions) / (batch_size * math.prod(patch))
    else:
        batches = sum(math.ceil(window_count(tuple(image.shape), patch) / batch_size) for image, *_ in regions)
    return VALIDATION_MARGIN * seconds * batches


def _validation_cross_entropy(net, regions, patch, batch_size, device, amp) -> float:
    """Mean cross-entropy (nats per voxel) of the network's predictions on the validation regions'
    labels: how well its probabilities, not only its argmax, describe data it was not fitted on."""
    total, count = 0.0, 0
    for out, probabilities, label in _val_outputs(net, regions, patch, batch_size, device, amp):
        log_p = torch.log(out.clamp_min(1e-7)) if probabilities else torch.log_softmax(out.float(), 1)
        total += float(-log_p[0].gather(0, label[None].long()).sum())
        count += label.numel()
    return total / max(1, count)


def _validate(net, regions, patch, batch_size, device, n_classes, amp) -> tuple[float | None, list[float | None]]:
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    scores = []
    for out, _, label in _val_outputs(net, regions, patch, batch_size, device, amp):
        pred = one_hot(out.argmax(1, keepdim=True), n_classes + 1)
        ref = one_hot(label[None, None].long(), n_classes + 1)
        scores.append(compute_dice(pred, ref, include_background=False, ignore_empty=True)[0].numpy())
    per = np.array(scores, dtype=np.float64)
    with np.errstate(all="ignore"):
        per_label = [None if np.all(np.isnan(per[:, c])) else float(np.nanmean(per[:, c])) for c in range(n_classes)]
    present = [d for d in per_label if d is not None]
    return (float(np.mean(present)) if present else None), per_label


def _probe_batches(sampler: PatchSampler):
    """Training patches for the probe from "epochs" 0, -1, -2 ... (ones training never draws)."""
    for k in itertools.count():
        yield from sampler.epoch(-k)


def train_job(config: TrainConfig, data: TrainingData, registry: Registry | None = None) -> Job[TrainResult]:
    """Job: fine-tune ``config.base`` on ``data``; returns a :class:`TrainResult` (see the module doc).
    With ``config.folds``: a k-fold cross-validation, then the model (:mod:`.crossval`)."""
    if config.folds:
        from .crossval import cross_validation_job

        return (yield from cross_validation_job(config, data, registry))
    return (yield from train_run(config, data, registry))


def train_run(config: TrainConfig, data: TrainingData, registry: Registry | None = None,
              run: Run | None = None) -> Job[TrainResult]:
    """One training run: on ``run.split`` when given (a cross-validation's fold or final model),
    else on ``data.split``."""
    tag = f"{run.label}: " if run else ""
    budget = Budget(config.minutes)  # (the whole run counts: loading, probe, validation, the package)

    def progress(stage, done, total, message, preview=None) -> Progress:
        return Progress(stage, done, total, tag + message, preview=preview)

    yield progress("preparing", 0, 0, "loading the base model")
    if not _ID.match(config.new_id or ""):
        raise ValueError(f"{config.new_id!r} is not a usable model id (letters, digits, '.', '_', '-')")
    for key, allowed in (("head_init", ("auto", "probe", "prior", "random")), ("freeze_part", ("encoder", "body"))):
        if getattr(config, key) not in allowed:  # before any data is read
            raise ValueError(f"{key} must be {' or '.join(map(repr, allowed))}, not {getattr(config, key)!r}")
    registry = registry or Registry()
    base = registry.get(config.base)
    if config.new_id == base.id:
        raise ValueError(f"the new model needs its own id, not the base's ({base.id})")
    device = pick_device(config.device)
    group = Group.from_environment(device)  # (several processes under torchrun: see .distributed)
    if device == "cpu" or group.several:  # (torchrun sets one thread per process: the patches need more)
        torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // group.world))
    card = base.card
    orientation = (card.get("input") or {}).get("orientation") or None
    names = data.names
    n_classes = len(names)
    tn = make_network(base, n_classes, config.from_scratch, config.architecture, config.seed, config.transfer)
    net = tn.net.to(device)
    group.broadcast_module(net)  # (every process starts from the same weights)
    fine_tune = bool(tn.pretrained)
    head_init = config.head_init if config.head_init != "auto" else ("probe" if fine_tune else "prior")
    notes = list(data.notes) + tn.notes

    conformed = None  # a base that sees images as brainchop does: the data go through its steps
    if is_conformed(card):
        if config.spacing_mm not in ("auto", "native", None):
            raise ValueError(f"{base.id} sees every image conformed to 1 mm voxels: its fine-tuning cannot be given "
                             f"another voxel size (spacing {config.spacing_mm!r})")
        conformed = yield from prepare_conformed(data, base, device)
        notes += conformed.notes
        split = run.split if run else data.split(config.seed, config.val_fraction, slab=config.val_slab,
                                                 labels_of=conformed.labels_of,
                                                 context_margin=validation_margin(card))
        target = None
        arrays = conformed.arrays
    else:
        split = run.split if run else data.split(config.seed, config.val_fraction, orientation,
                                                 slab=config.val_slab)
        target = training_spacing(card, config.spacing_mm)
        arrays = {}
        for k, case in enumerate(data.cases):
            yield progress("preparing", k, len(data.cases), f"normalising {case.id}")
            image, label, spacing = case.arrays(orientation)
            arrays[case.id] = (normalize_for_training(card, image), torch.from_numpy(label), spacing)
    if target is not None:
        scale = f" (the scale {base.id} learnt at)" if config.spacing_mm == "auto" else ""
        notes.append(f"trained at {'x'.join(f'{s:g}' for s in target)} mm voxels{scale}; "
                     "the new model is run at that voxel size too")

    def region(part, resample=True):
        """(image, labels) of the part's box, resampled (each region on its own) to ``target``."""
        image, label, spacing = arrays[part.case]
        box = part.box or (slice(None),) * 3
        image, label = image[box].contiguous(), label[box].contiguous()
        if target is None or not resample:
            return image, label
        shape = resampled_shape(image.shape, spacing, target)
        return resample_image(image, shape), resample_labels(label, shape, n_classes)

    train_regions = []
    for k, p in enumerate(split.train):
        yield progress("preparing", k, len(split.train), f"training region {k + 1} of {p.case}")
        train_regions.append(region(p))
    val_regions = []
    for p in split.val:  # (image of the context, labels of the box, the box within the context, context shape)
        context = p.context or p.box or (slice(None),) * 3
        native_image, _ = region(Part(p.case, context), resample=False)
        image, _ = region(Part(p.case, context)) if target is not None else (native_image, None)
        _, label = region(p, resample=False)
        inner = tuple(slice(b.start - c.start, b.stop - c.start) if b.start is not None else slice(None)
                      for b, c in zip(p.box or (slice(None),) * 3, context, strict=True))
        val_regions.append((image, label, inner, tuple(native_image.shape)))
    extent = np.max([r[1].shape for r in train_regions] + [r[0].shape for r in val_regions], axis=0)
    patch = fit_patch(config.patch_size, extent, size_multiple(net))
    if tuple(patch) != tuple(config.patch_size):
        notes.append(f"patch {'x'.join(map(str, config.patch_size))} -> {'x'.join(map(str, patch))} "
                     f"(fitted to the images, multiples of {size_multiple(net)})")
    val_patch = None if conformed else patch  # (a conformed base's network sees its whole crop at once)
    flip_axes = () if lateralised(names) else (0,)
    per_epoch = config.patches_per_epoch
    if group.several:  # each process draws its share of the epoch's patches, its own ones
        per_epoch = group.share(per_epoch or config.patches_per_case * len(train_regions))
        notes.append(f"data-parallel over {group.world} processes (torchrun): each draws {per_epoch} of the epoch's "
                     "patches, the gradients are averaged every step")
    sampler = PatchSampler(train_regions, patch, patches_per_case=config.patches_per_case,
                           batch_size=config.batch_size, patches_per_epoch=per_epoch,
                           seed=config.seed + 100_003 * group.rank, flip_axes=flip_axes, balance=config.sampling,
                           n_classes=n_classes, augment=config.augment)
    if head_init in ("prior", "probe"):
        counts = sum(np.bincount(label.numpy().ravel(), minlength=n_classes + 1)[: n_classes + 1]
                     for _, label in train_regions)
        if init_head_from_priors(net, tn.head, counts / max(1, counts.sum())) and head_init == "prior":
            notes.append("the new head starts at the class frequencies of the training regions")

    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=bool(config.batch_dice))
    encoder = encoder_parameters(net)
    pretrained = set(tn.pretrained)
    held = encoder if config.freeze_part == "encoder" else [p for n, p in net.named_parameters() if n in pretrained]
    freeze_epochs = float(config.freeze_epochs) if fine_tune and held else 0.0
    enc_factor = float(config.encoder_lr_factor) if fine_tune else 1.0
    if freeze_epochs:
        held_text = "every pretrained layer held: only the new head learns" if config.freeze_part == "body" \
            else "the encoder held"
        notes.append(f"for the first {freeze_epochs:g} epoch{'s' if freeze_epochs > 1 else ''} {held_text}; then all "
                     "of it trains, what was held warmed up again over one epoch")
    groups = [{"params": encoder, "name": "encoder", "base_lr": config.lr * enc_factor}] if encoder else []
    rest = head_and_decoder_parameters(net)
    if freeze_epochs and config.freeze_part == "body":  # a held (pretrained) decoder warms up again after the probe
        held_ids = {id(p) for p in held}
        groups.append({"params": [p for p in rest if id(p) in held_ids], "name": "decoder", "base_lr": config.lr})
        rest = [p for p in rest if id(p) not in held_ids]
    groups.append({"params": rest, "name": "decoder+head", "base_lr": config.lr})
    for g in groups:
        g["lr"] = g["base_lr"]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    use_amp = bool(config.amp) and device == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    schedule = WarmupCosine(config.warmup_epochs)

    identity = {"base": base.id, "base_version": base.version, "new_id": config.new_id,
                "data_hash": data.data_hash(), "architecture": tn.spec["name"],
                "from_scratch": bool(config.from_scratch), "transfer": config.transfer,
                "spacing_mm": list(target) if target else None, "head_init": head_init,
                "sampling": config.sampling}
    if conformed:
        identity["conformed_crop"] = conformed.crop
    if config.val_slab:  # (only when set: checkpoints of runs before the option still resume)
        identity["val_slab"] = config.val_slab
    if run is not None:
        identity.update(run.identity)
    key = ckpt.identity_key(identity)
    workdir = Path(config.workdir) if config.workdir else _default_workdir(config.new_id, key)
    if config.workdir and run is not None:
        workdir = workdir / run.subdir
    state, start = None, "new"  # (process 0 decides; the others read the checkpoint it kept)
    if group.main:
        state = _resumable_checkpoint(workdir, net, config.epochs, notes)
        if state is not None and state.get("identity") == identity and state.get("finished") and run is not None \
                and not run.export and _same_settings(state.get("config"), config):
            start = "reuse"  # a cross-validation's fold that finished, with these settings, before it was stopped
        elif state is not None and (state.get("identity") != identity or state.get("finished")):
            ckpt.set_aside(workdir, f"{state.get('run_id', 'old')}{'-finished' if state.get('finished') else ''}")
            state = None
        start = "resume" if state is not None and start == "new" else start
    start = group.broadcast(start)
    if not group.main and start != "new":
        state = ckpt.load_checkpoint(workdir, set_aside_bad=False)
        if state is None:
            raise RuntimeError(f"process {group.rank} cannot read the checkpoint process 0 resumes from in {workdir}: "
                               "run the processes on one machine, or give --workdir a folder they all see")
    if start == "reuse":
        notes.append(f"{run.label} finished in an earlier session (run {state['run_id']}): its result is reused")
        yield progress("epoch", int(state["epoch"]), int(state["epoch"]), "finished earlier")
        return _fold_result(state, names, split, notes, workdir)
    history: list[dict] = []
    epoch = 0
    best = {"score": -math.inf, "val_dice": None, "per_label": [None] * n_classes, "epoch": 0, "weights": None}
    bad_epochs = 0
    seconds_before = 0.0
    head_used, head_note = head_init, None  # the head training started from, and how it was fitted
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if group.main:  # (the others' patches come from their own seeds)
            ckpt.restore_rng_states(state["rng"])
        history, epoch, bad_epochs = list(state["history"]), int(state["epoch"]), int(state["bad_epochs"])
        best.update(score=float(state["best_score"]), val_dice=state["best_val_dice"],
                    per_label=list(state["best_per_label"]), epoch=int(state["best_epoch"]),
                    weights=state["best_model"])
        run_id, lineage = state["run_id"], list(state["lineage"])
        seconds_before = float(state.get("seconds", 0.0))
        head_used, head_note = state.get("head_used", head_init), state.get("head_note")
        if head_note:
            notes.append(head_note)
        lineage.append({"session": len(lineage) + 1, "started": ckpt.now(), "from_epoch": epoch, "device": device})
        notes.append(f"resumed run {run_id} after epoch {epoch} (session {len(lineage)})")
    else:
        run_id = ckpt.new_run_id()
        lineage = [{"session": 1, "started": ckpt.now(), "from_epoch": 0, "device": device}]

    if budget.limited and group.main:  # what the end of an epoch will cost, before it was measured
        budget.saw_checkpoint(6 * sum(p.numel() * p.element_size() for p in net.parameters()) / 200e6)
        if val_regions:
            budget.saw_validation(_estimate_validation_s(net, val_regions, patch, config.batch_size, device, use_amp,
                                                         whole=val_patch is None))
    if state is None and head_init == "probe" and group.main:
        yield progress("preparing", 0, 0, "fitting the new head to the base's features (a linear probe)")
        t_probe = time.perf_counter()
        probe_end = budget.part(PROBE_SHARE)  # (None without a time budget)
        checked = config.head_init == "auto" and bool(val_regions)
        probe, no_time = None, False
        if probe_end is not None and time.perf_counter() + (2 * budget.validation_s if checked else 0) >= probe_end:
            no_time = True  # its check alone would take more than its share of the budget
        elif checked:  # the head at the class frequencies, on the validation regions
            t_ce = time.perf_counter()
            prior_ce = _validation_cross_entropy(net, val_regions, val_patch, config.batch_size, device, use_amp)
            budget.saw_validation(time.perf_counter() - t_ce)
            prior_head = {n: p.detach().clone() for n, p in net.named_parameters() if n in set(tn.head)}
        fit_end = None if probe_end is None else probe_end - (budget.validation_s if checked else 0.0)
        if no_time or (fit_end is not None and time.perf_counter() >= fit_end):
            no_time = True
        else:
            batches = itertools.islice(_probe_batches(sampler), PROBE_BATCHES)
            probe = fit_head_probe(net, logits_function(net), tn.head, batches, n_classes + 1, seed=config.seed,
                                   device=device, deadline=fit_end)
        if no_time:
            head_used = "prior"
            head_note = (f"the new head was not probed: the time budget ({config.minutes:g} min) leaves no room for "
                         "the linear probe and its check; it starts at the class frequencies")
        elif probe is None:
            head_used = "prior"
            head_note = ("the new head was not probed (it is not one module that maps each voxel's features to the "
                         "logits, or the fit did not improve on the class frequencies): it starts at those")
        else:
            short = (f", cut short by the time budget after {probe['steps']} steps" if probe["stopped_early"]
                     else "")
            fitted = (f"the new head fitted alone to the {'pretrained' if fine_tune else 'random'} features of "
                      f"{probe['patches']} training patches (a linear probe on {probe['voxels']} voxels at the "
                      f"training loss: {probe['loss_before']:.3f} -> {probe['loss_after']:.3f}, "
                      f"balanced accuracy {probe['accuracy']:.2f}, {time.perf_counter() - t_probe:.0f} s{short})")
            if not checked:
                head_note = f"{fitted}; fine-tuning starts from it"
            else:
                probe_ce = _validation_cross_entropy(net, val_regions, val_patch, config.batch_size, device, use_amp)
                versus = f"cross-entropy {probe_ce:.3f} against {prior_ce:.3f} nats per voxel"
                if probe_ce < prior_ce:
                    head_note = (f"{fitted}; on the validation data it predicts the labels better than the class "
                                 f"frequencies do ({versus}), so fine-tuning starts from it")
                else:  # the features do not carry the labels to data the probe was not fitted on
                    head_used = "prior"
                    with torch.no_grad():
                        for n, p in net.named_parameters():
                            if n in prior_head:
                                p.copy_(prior_head[n])
                    head_note = (f"{fitted}; on the validation data it predicts the labels worse than the class "
                                 f"frequencies do ({versus}): the base's features do not tell these labels apart "
                                 "beyond the training patches, so the new head starts at the class frequencies")
        notes.append(head_note)
    if state is None and head_init == "probe" and group.several:  # process 0's head in every process
        if not group.main:
            yield progress("preparing", 0, 0, "waiting for process 0's linear probe")
        head_used, head_note = group.broadcast((head_used, head_note))
        group.broadcast_module(net)
        if not group.main:
            notes.append(head_note)

    max_epochs = int(config.epochs) if config.epochs else (None if config.minutes else DEFAULT_EPOCHS)
    fn = logits_function(net)
    n_iter = len(sampler)
    session_start = time.perf_counter()
    session_epochs = session_iterations = 0
    cut_short = False  # an epoch ended early for the time budget
    skipped_validation = []  # epochs the time budget left no room to validate
    stopped = ""
    resumed = f"resuming run {run_id} after epoch {epoch}; " if len(lineage) > 1 else ""
    yield progress("training", 0, n_iter, f"{resumed}{'fine-tuning' if fine_tune else 'training from scratch'} on "
                   f"{device}, {n_iter} iterations per epoch; {split.description}; checkpoints in {workdir}")
    while True:
        elapsed = time.perf_counter() - session_start
        if max_epochs is not None and epoch >= max_epochs:
            stopped = f"{max_epochs} epochs done"
        elif budget.limited and session_epochs and (cut_short or not budget.room_for_iteration(bool(val_regions))):
            stopped = f"time budget of {config.minutes:g} min used"
        elif config.patience and bad_epochs >= config.patience:
            stopped = f"early stopping: no better validation Dice for {config.patience} epochs"
        stopped = group.broadcast(stopped)  # (process 0's clock and validation decide)
        if stopped:
            break
        epoch += 1
        t0 = time.perf_counter()
        frozen = epoch - 1 < freeze_epochs  # at the epoch's start (a fraction unfreezes within it)

        def freeze(on: bool) -> None:
            for p in held:
                p.requires_grad_(not on)
            body = on and config.freeze_part == "body"
            net.train(not body)  # norms and dropouts of held layers as in inference
            for m in encoder_modules(net) if on and not body else ():
                m.eval()

        freeze(frozen)
        is_frozen = frozen
        horizons = [max_epochs] if max_epochs else []
        if budget.limited and session_epochs:
            horizons.append(epoch - 1 + max(0.0, budget.left()) / (elapsed / session_epochs))
        schedule.horizon = group.broadcast(min(horizons) if horizons else None)
        losses = []
        validate_after = bool(val_regions) and group.main
        for it, (x, y) in enumerate(sampler.epoch(epoch)):
            if it:  # (an epoch started does at least one iteration: the loop's start checked for room)
                cut_short = budget.limited and not budget.room_for_iteration(validate_after)
                if group.several and budget.limited:
                    cut_short = group.broadcast(cut_short)  # (process 0's clock decides)
                if cut_short:
                    break
            t_it = time.perf_counter()
            if is_frozen and epoch - 1 + it / n_iter >= freeze_epochs:
                is_frozen = False
                freeze(False)
            position = epoch - 1 + (it + 1) / n_iter
            factor = schedule.factor(position)
            for g in optimizer.param_groups:
                extra = min(1.0, position - freeze_epochs) if g["name"] in ("encoder", "decoder") and freeze_epochs \
                    else 1.0
                g["lr"] = g["base_lr"] * factor * max(0.0, extra)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            try:
                with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                    loss = loss_fn(fn(x), y)
                scaler.scale(loss).backward()
                group.average_gradients(net.parameters())
                scaler.step(optimizer)
                scaler.update()
            except RuntimeError as exc:
                if is_out_of_memory(exc):
                    raise RuntimeError(_out_of_memory("training", epoch - 1)) from exc
                raise
            optimizer.zero_grad(set_to_none=True)
            schedule.steps += 1
            losses.append(float(loss.detach()))
            session_iterations += 1
            budget.saw_iteration(time.perf_counter() - t_it, session_iterations)
            if (it + 1) % 20 == 0:
                yield progress("training", it + 1, n_iter, f"epoch {epoch}: loss {np.mean(losses):.4f}")
        train_seconds = time.perf_counter() - t0
        group.broadcast_module(net, buffers_only=True)  # process 0's norm statistics
        val_dice, per_label = None, [None] * n_classes
        validating = bool(val_regions) and group.main  # (none for a cross-validation's final model)
        if validating and not budget.room_for_validation():
            validating = False
            skipped_validation.append(epoch)
        if validating:
            yield progress("validation", 0, len(val_regions), f"epoch {epoch}")
        t1 = time.perf_counter()
        try:
            if validating:
                val_dice, per_label = _validate(net, val_regions, val_patch, config.batch_size, device, n_classes,
                                                use_amp)
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise RuntimeError(_out_of_memory("validating", epoch - 1)) from exc
            raise
        val_seconds = time.perf_counter() - t1
        if validating:
            budget.saw_validation(val_seconds)
        train_loss = group.mean(float(np.mean(losses))) if losses else None
        # no validation data (a cross-validation's final model): the last epoch is kept
        score = val_dice if val_dice is not None else float(epoch) if not val_regions else -(train_loss or 0.0)
        if skipped_validation and skipped_validation[-1] == epoch and group.main:
            score = -math.inf  # not validated: not the best (the last weights are kept when no epoch was)
        if score > best["score"] + 1e-4:  # (process 0's best: the others' is not used)
            best.update(score=score, val_dice=val_dice, per_label=per_label, epoch=epoch,
                        weights={k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
                        if group.main else None)
            bad_epochs = 0
        else:
            bad_epochs += 1
        session_epochs += 1
        elapsed = time.perf_counter() - session_start
        per_epoch = elapsed / session_epochs
        etas = [max(0.0, budget.left())] if budget.limited else []
        if max_epochs is not None:
            etas.append((max_epochs - epoch) * per_epoch)
        lrs = {g["name"]: float(g["lr"]) for g in optimizer.param_groups}
        record = {"epoch": epoch, "train_loss": _clean(train_loss), "val_dice": _clean(val_dice),
                  "per_label": {n: _clean(d) for n, d in zip(names, per_label, strict=True)},
                  "lr": lrs["decoder+head"], "encoder_lr": lrs.get("encoder"), "frozen": frozen,
                  "seconds": time.perf_counter() - t0, "train_seconds": train_seconds, "val_seconds": val_seconds,
                  "iterations": len(losses), "session": len(lineage)}
        history.append(record)
        t2 = time.perf_counter()
        saved = {
            "run_id": run_id, "lineage": lineage, "identity": identity, "config": config.as_dict(), "epoch": epoch,
            "model": net.state_dict(), "best_model": best["weights"], "best_score": float(best["score"]),
            "best_val_dice": best["val_dice"], "best_per_label": best["per_label"], "best_epoch": best["epoch"],
            "bad_epochs": bad_epochs, "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict() if use_amp else {}, "history": history, "rng": ckpt.rng_states(),
            "seconds": seconds_before + elapsed, "head_used": head_used, "head_note": head_note, "finished": False}
        try:
            if group.main:
                ckpt.save_checkpoint(workdir, saved)
        except ckpt.CheckpointError as exc:
            raise RuntimeError(f"{exc}; " + (f"{_kept(epoch - 1)} once there is room" if epoch > 1 else
                                             "no epoch is kept: free some space and start again")) from exc
        record["checkpoint_seconds"] = time.perf_counter() - t2
        budget.saw_checkpoint(record["checkpoint_seconds"])
        preview = {k: record[k] for k in ("epoch", "train_loss", "val_dice", "per_label", "lr", "seconds", "frozen")}
        eta = min(etas) if etas else None
        if eta is not None and run is not None and run.runs_after:  # the runs after this one, about as long
            eta += run.runs_after * (seconds_before + elapsed + eta)
        preview.update(eta_s=eta, best_val_dice=best["val_dice"], best_epoch=best["epoch"], validated=bool(val_regions))
        if run is not None:
            preview["run"] = run.label
        dice = "n/a" if val_dice is None else f"{val_dice:.3f}"
        yield progress("epoch", epoch, max_epochs or 0,
                       f"epoch {epoch}: loss {train_loss:.4f}, validation Dice {dice}", preview=preview)

    if skipped_validation:
        notes.append(f"epoch{'s' if len(skipped_validation) > 1 else ''} {', '.join(map(str, skipped_validation))} "
                     f"not validated: the time budget ({config.minutes:g} min) had no room left for it")
    if cut_short:
        notes.append(f"epoch {epoch} was cut short ({history[-1]['iterations']} of {n_iter} iterations) to end within "
                     f"the time budget of {config.minutes:g} min (the whole run counts: {budget.elapsed():.0f} s "
                     "before the package)")
    group.check_same(net)
    per_label_best = {n: _clean(d) for n, d in zip(names, best["per_label"], strict=True)}
    if run is not None and not run.export:  # a cross-validation's fold: its figures, no package
        if group.main:
            _mark_finished(workdir, stopped_because=stopped)
        net.to("cpu")
        return group.broadcast(_fold_result(  # (process 0's figures: it validated)
            {"best_val_dice": best["val_dice"], "best_per_label": best["per_label"], "epoch": epoch,
             "history": history, "run_id": run_id, "lineage": lineage, "stopped_because": stopped,
             "best_epoch": best["epoch"], "head_used": head_used}, names, split, notes, workdir))
    if not group.main:  # process 0 writes the package
        net.to("cpu")
        return group.broadcast(None)

    # ---- the package -------------------------------------------------------------------------
    yield progress("writing the package", 0, 0, config.new_id)
    weights = best["weights"] or {k: v.detach().cpu() for k, v in net.state_dict().items()}
    hyper = config.as_dict() | {"patch_used": list(patch), "optimizer": "AdamW", "loss": "DiceCELoss(softmax)",
                                "schedule": "linear warm-up, cosine decay (per step)", "sampling": sampler.description,
                                "freeze_epochs_used": freeze_epochs, "encoder_lr_factor_used": enc_factor,
                                "spacing_mm_used": list(target) if target else None, "head_init_used": head_used}
    provenance = {
        "parent": f"{base.id} {base.version}", "parent_id": base.id, "parent_version": base.version,
        "parent_sha256": base.card["weights"]["sha256"], "from_scratch": not fine_tune,
        "cases": [c.id for c in data.cases], "data_hashes": {c.id: c.sha256 for c in data.cases},
        "label_mapping": {c.id: c.original_values for c in data.cases},
        "hyperparameters": hyper,
        "metrics": {"val_dice": _clean(best["val_dice"]), "per_label": per_label_best, "best_epoch": best["epoch"]},
        "split": split.description, "epochs_run": epoch, "stopped_because": stopped,
        "created": created(), "trained_by": "medvision train", "run_id": run_id, "lineage": lineage,
        "device": device, "seconds": round(seconds_before + time.perf_counter() - session_start, 1),
    }
    if group.several:
        provenance["processes"] = group.world  # data-parallel (torchrun)
    cv = run.cross_validation if run is not None else None
    if cv:  # the figures are the folds': this model saw every case
        provenance["cross_validation"] = cv
        provenance["metrics"] = {"val_dice": cv["val_dice_mean"], "val_dice_sd": cv["val_dice_sd"],
                                 "per_label": cv["per_label_mean"], "validation": cv["description"]}
        provenance["seconds"] = round(provenance["seconds"] + cv["seconds"], 1)
    # case ids come from file names, often patients' names: numbers in the card unless asked
    provenance = anonymous_cases(provenance, [c.id for c in data.cases], keep=config.case_names)
    name = config.name or f"{', '.join(names)} ({'fine-tuned from ' + base.id if fine_tune else 'trained'})"
    try:
        package = write_package(base=base, new_id=config.new_id, name=name, state=weights, spec=tn.spec,
                                classes=data.classes, patch=patch, softmax_in_network=tn.softmax_in_network,
                                provenance=provenance, from_scratch=not fine_tune, spacing_mm=target,
                                run_as=run_as_card(base, conformed.crop) if conformed else None)
    except PackageError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a full disk
        size = sum(t.numel() * t.element_size() for t in weights.values())
        raise RuntimeError(f"could not write the new model into {user_dir()}: "
                           f"{ckpt.disk_problem(exc, user_dir(), size)}; "
                           f"the training is kept (epoch {epoch}'s checkpoint): once there is room, a run with the "
                           "same model id, base and cases writes the model from it") from exc
    if not _mark_finished(workdir, package=str(package.folder)):  # (the same command again starts a new run)
        ckpt.set_aside(workdir, f"{run_id}-finished")  # the model is written: set the run aside, not redo it
    net.to("cpu")
    result = TrainResult(package.folder, _clean(best["val_dice"]), per_label_best, epoch, history, split.description,
                         package.id, package.version, run_id, lineage, stopped, best["epoch"], notes, head_used,
                         workdir=str(workdir))
    if cv:  # (the folds' figures; the model's last epoch)
        result.best_val_dice, result.per_label, result.best_epoch = cv["val_dice_mean"], cv["per_label_mean"], epoch
        result.split_description, result.cross_validation = f"{cv['description']}; {split.description}", cv
    return group.broadcast(result)


def _mark_finished(workdir: Path, **extra) -> bool:
    """Mark the run's checkpoint finished (with ``extra``); False (logged) when it cannot be written."""
    state = ckpt.load_checkpoint(workdir)
    if state is None:
        return False
    state.update(finished=True, **extra)
    try:
        ckpt.save_checkpoint(workdir, state)
    except ckpt.CheckpointError as exc:
        log.warning("%s; the run's checkpoint is not marked finished", exc)
        return False
    return True


#: settings that do not change what a run computes (a finished fold is reused whatever they are)
_INCIDENTAL = ("workdir", "device", "threads", "name", "amp", "case_names")


def _same_settings(saved: dict | None, config: TrainConfig) -> bool:
    """Whether a checkpoint's settings are ``config``'s, but for :data:`_INCIDENTAL` ones."""
    now = json.loads(json.dumps(config.as_dict()))  # (tuples as lists, as a checkpoint holds them)
    return isinstance(saved, dict) and all(saved.get(k) == v for k, v in now.items() if k not in _INCIDENTAL)


def _resumable_checkpoint(workdir: Path, net, epochs: int | None, notes: list[str]) -> dict | None:
    """The checkpoint to resume from, or None. One that loads but cannot be resumed (an epoch of "abc" or 10^9,
    weights of other shapes) is set aside like an unreadable one and never trusted."""
    state = ckpt.load_checkpoint(workdir)
    problem = ckpt.contents_problem(state, net.state_dict(), epochs) if state is not None else None
    if not problem:
        return state
    kept = ckpt.set_aside(workdir, "bad")
    log.warning("%s: the checkpoint %s: set aside as %s, a new run starts", workdir, problem, kept)
    notes.append(f"the checkpoint in {workdir} {problem}: set aside as {kept.name if kept else '?'}, a new run "
                 "started")
    return None


def anonymous_cases(provenance: dict, ids: list[str], keep: bool = False) -> dict:
    """``provenance`` with every case id (in values and keys, as a whole word) replaced by ``case-NNN`` in the
    order of ``ids``; the content hashes stay, so a case can still be matched to its files by who holds them.
    ``keep``: the ids are left as they are (the user asked for names in the card)."""
    import re

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


def _fold_result(state: dict, names: list[str], split: Split, notes: list[str], workdir: Path) -> TrainResult:
    """The result of a cross-validation fold's run, from its finished checkpoint."""
    per_label = {n: _clean(d) for n, d in zip(names, state["best_per_label"], strict=True)}
    return TrainResult(None, _clean(state["best_val_dice"]), per_label, int(state["epoch"]), list(state["history"]),
                       split.description, run_id=state["run_id"], lineage=list(state["lineage"]),
                       stopped_because=state.get("stopped_because", ""), best_epoch=int(state["best_epoch"]),
                       notes=notes, head_init_used=state.get("head_used", ""), workdir=str(workdir))


def _default_workdir(new_id: str, key: str) -> Path:
    from ...paths import cache_dir

    return cache_dir() / "training" / f"{new_id}-{key[:12]}"
