"""The first stage of a training run: the base model, the device, the network with its new head,
and the data as the network will see it (normalised, resampled to the training voxel size, cut into
training regions and validation contexts), the patch size and the patch sampler."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.cpus import cpu_threads
from ...core.jobs import Progress
from ..inference.devices import pick_device
from ..networks.layout import place
from ..package import ModelPackage, Registry
from .config import Run, TrainConfig, training_spacing
from .conformed import is_conformed, prepare_conformed, validation_margin
from .data import Part, Split, TrainingData
from .distributed import Group
from .model import TrainNetwork, make_network, size_multiple
from .progress import Reporter
from .resample import normalize_for_training, resample_image, resample_labels, resampled_shape
from .sampling import PatchSampler, fit_patch, lateralised
from .task import SegmentationTask, init_head_from_priors

__all__ = ["Setup", "prepare"]


@dataclass
class Setup:
    """What the later stages of one run work with (see :func:`prepare`)."""

    config: TrainConfig
    base: ModelPackage
    device: str
    group: Group
    tn: TrainNetwork
    net: torch.nn.Module
    task: SegmentationTask
    split: Split
    #: (image, labels) of each training region at the training voxel size
    train_regions: list
    #: (image of the context, labels of the box, the box within the context, the context's native shape)
    val_regions: list
    patch: tuple[int, int, int]
    sampler: PatchSampler
    head_init: str  # "probe", "prior" or "random" ("auto" decided)
    target: tuple[float, float, float] | None = None  # the training voxel size (None: native)
    conformed: object | None = None  # a brainchop base's conformed data (:mod:`.conformed`)
    notes: list[str] = field(default_factory=list)

    @property
    def fine_tune(self) -> bool:
        return bool(self.tn.pretrained)

    @property
    def val_patch(self) -> tuple[int, int, int] | None:
        """The validation windows (None: a conformed base's network sees its whole crop at once)."""
        return None if self.conformed else self.patch


def prepare(config: TrainConfig, data: TrainingData, registry: Registry | None, run: Run | None,
            progress: Reporter) -> Generator[Progress, None, Setup]:
    """Job stage: load the base, build the network, read and cut the data (see the module docstring)."""
    yield progress("preparing", 0, 0, "loading the base model")
    base = (registry or Registry()).get(config.base)
    if config.new_id == base.id:
        raise ValueError(f"the new model needs its own id, not the base's ({base.id})")
    device = pick_device(config.device)
    group = Group.from_environment(device)  # (several processes under torchrun: see .distributed)
    if device == "cpu" or group.several:  # (torchrun sets one thread per process: the patches need more)
        torch.set_num_threads(config.threads or max(1, cpu_threads() // group.world))
    task = SegmentationTask(data.names)
    tn = make_network(base, task.n_classes, config.from_scratch, config.architecture, config.seed, config.transfer)
    net = place(tn.net, device)
    group.broadcast_module(net)  # (every process starts from the same weights)
    head_init = config.head_init if config.head_init != "auto" else ("probe" if tn.pretrained else "prior")
    notes = list(data.notes) + tn.notes
    conformed, split, target, arrays = yield from _read_cases(config, data, base, device, run, progress, notes)
    train_regions, val_regions = yield from _regions(split, arrays, target, task.n_classes, progress)
    patch = _patch(config, net, train_regions, val_regions, notes)
    sampler = _sampler(config, group, train_regions, patch, task, notes)
    if head_init in ("prior", "probe") and init_head_from_priors(net, tn.head, task.class_frequencies(train_regions)) \
            and head_init == "prior":
        notes.append("the new head starts at the class frequencies of the training regions")
    return Setup(config=config, base=base, device=device, group=group, tn=tn, net=net, task=task, split=split,
                 train_regions=train_regions, val_regions=val_regions, patch=patch, sampler=sampler,
                 head_init=head_init, target=target, conformed=conformed, notes=notes)


def _read_cases(config, data, base, device, run, progress, notes):
    """(conformed data or None, the split, the training voxel size, {case id: (image, labels, spacing)})."""
    card = base.card
    if is_conformed(card):  # a base that sees images as brainchop does: the data go through its steps
        if config.spacing_mm not in ("auto", "native", None):
            raise ValueError(f"{base.id} sees every image conformed to 1 mm voxels: its fine-tuning cannot be given "
                             f"another voxel size (spacing {config.spacing_mm!r})")
        conformed = yield from prepare_conformed(data, base, device)
        notes += conformed.notes
        split = run.split if run else data.split(config.seed, config.val_fraction, slab=config.val_slab,
                                                 labels_of=conformed.labels_of,
                                                 context_margin=validation_margin(card))
        return conformed, split, None, conformed.arrays
    orientation = (card.get("input") or {}).get("orientation") or None
    split = run.split if run else data.split(config.seed, config.val_fraction, orientation, slab=config.val_slab)
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
    return None, split, target, arrays


def _regions(split: Split, arrays: dict, target, n_classes: int, progress: Reporter):
    """The training regions and the validation regions (see :class:`Setup`)."""

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
    for p in split.val:
        context = p.context or p.box or (slice(None),) * 3
        native_image, _ = region(Part(p.case, context), resample=False)
        image, _ = region(Part(p.case, context)) if target is not None else (native_image, None)
        _, label = region(p, resample=False)
        inner = tuple(slice(b.start - c.start, b.stop - c.start) if b.start is not None else slice(None)
                      for b, c in zip(p.box or (slice(None),) * 3, context, strict=True))
        val_regions.append((image, label, inner, tuple(native_image.shape)))
    return train_regions, val_regions


def _patch(config: TrainConfig, net, train_regions, val_regions, notes: list[str]) -> tuple[int, int, int]:
    """The training patch: the asked one fitted to the images and to the network's size multiple."""
    extent = np.max([r[1].shape for r in train_regions] + [r[0].shape for r in val_regions], axis=0)
    patch = fit_patch(config.patch_size, extent, size_multiple(net))
    if tuple(patch) != tuple(config.patch_size):
        notes.append(f"patch {'x'.join(map(str, config.patch_size))} -> {'x'.join(map(str, patch))} "
                     f"(fitted to the images, multiples of {size_multiple(net)})")
    return patch


def _sampler(config: TrainConfig, group: Group, train_regions, patch, task, notes: list[str]) -> PatchSampler:
    per_epoch = config.patches_per_epoch
    if group.several:  # each process draws its share of the epoch's patches, its own ones
        per_epoch = group.share(per_epoch or config.patches_per_case * len(train_regions))
        notes.append(f"data-parallel over {group.world} processes (torchrun): each draws {per_epoch} of the epoch's "
                     "patches, the gradients are averaged every step")
    return PatchSampler(train_regions, patch, patches_per_case=config.patches_per_case,
                        batch_size=config.batch_size, patches_per_epoch=per_epoch,
                        seed=config.seed + 100_003 * group.rank, flip_axes=() if lateralised(task.names) else (0,),
                        balance=config.sampling, n_classes=task.n_classes, augment=config.augment)
