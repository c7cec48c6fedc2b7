"""Random training patches with monai transforms: crops centred equally often on background and on
each label (or on any label and background 2:1), flips, small rotations and scalings, intensity
jitter; batches of plain tensors.

Every epoch's randomness is seeded from ``(seed, epoch)``, so a resumed run draws the same patches
in its later epochs as a run that was never stopped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["PatchSampler", "fit_patch", "lateralised", "pad_to"]

_SIDE = re.compile(r"(^|[\s_\-.(])(left|right|l|r|lt|rt|links|rechts|gauche|droite)($|[\s_\-.)])", re.I)


def lateralised(names: Sequence[str]) -> bool:
    """True when some label names a side ("hippo-L", "Left lung"): left-right flips would swap them."""
    return any(_SIDE.search(str(n)) for n in names)


def fit_patch(patch: Sequence[int], shape: Sequence[int], multiple: int = 32) -> tuple[int, int, int]:
    """The patch per axis: the asked size, but no larger than the image rounded up to ``multiple``
    (a 25-slice series gets 32, not 64), each a multiple of ``multiple``, and at least two voxels at
    the network's coarsest level (``multiple``) in all (instance norm needs more than one)."""
    out = [max(multiple, min(int(math.ceil(p / multiple)) * multiple, int(math.ceil(n / multiple)) * multiple))
           for p, n in zip(patch, shape, strict=True)]
    while math.prod(o // multiple for o in out) < 2:
        i = int(np.argmax([n / o for n, o in zip(shape, out, strict=True)]))
        out[i] += multiple
    return tuple(out)


def pad_to(x: torch.Tensor, shape: Sequence[int], value: float) -> torch.Tensor:
    """``x`` (..., X, Y, Z) padded at the end of each axis to at least ``shape`` with ``value``."""
    pads = []
    for have, want in zip(reversed(x.shape[-3:]), reversed(tuple(shape)), strict=True):
        pads += [0, max(0, int(want) - int(have))]
    if not any(pads):
        return x
    return torch.nn.functional.pad(x, pads, value=value)


class PatchSampler:
    """Batches ``(image (B, 1, X, Y, Z), label (B, 1, X, Y, Z))`` of random patches of ``regions``.

    Args:
        regions: ``(image, label)`` pairs, ``[x, y, z]`` tensors (normalised image; class indices).
        patch: patch size; regions smaller than it are padded (image with its minimum, labels 0).
        patches_per_case: patches cropped from a region at a time.
        balance: where patches are centred: ``"classes"`` (monai RandCropByLabelClassesd: on the
            background and on each label equally often, so that a small structure is seen as often
            as a large one) or ``"posneg"`` (RandCropByPosNegLabeld: on any labelled voxel twice as
            often as on background).
        n_classes: labels 1..n_classes (default: the largest label in ``regions``).
        patches_per_epoch: patches per epoch (default: ``patches_per_case`` per region); regions
            are visited in a random order, repeated as needed.
        flip_axes: axes flipped at random (left-right, axis 0, is left out for lateralised labels).
        augment: ``True`` or ``"standard"`` (flips, rotations +-10 deg, scaling +-10 %, intensity
            scale/shift), ``"strong"`` (flips, rotations +-15 deg, scaling +-20 %, then what makes one
            scan look like another: gamma contrast, a smooth bias field, blur, lower resolution,
            noise; for training on a template or very few scans), or ``False``/``"none"``.
    """

    def __init__(self, regions: list[tuple[torch.Tensor, torch.Tensor]], patch: Sequence[int], *,
                 patches_per_case: int = 4, batch_size: int = 2, patches_per_epoch: int | None = None,
                 seed: int = 0, flip_axes: Sequence[int] = (0,), augment: bool | str = True, balance: str = "classes",
                 n_classes: int | None = None) -> None:
        from monai.transforms import (
            ClassesToIndicesd,
            Compose,
            FgBgToIndicesd,
            RandAdjustContrastd,
            RandAffined,
            RandBiasFieldd,
            RandCropByLabelClassesd,
            RandCropByPosNegLabeld,
            RandFlipd,
            RandGaussianNoised,
            RandGaussianSmoothd,
            RandScaleIntensityd,
            RandShiftIntensityd,
            RandSimulateLowResolutiond,
        )

        if not regions:
            raise ValueError("no training regions")
        self.patch = tuple(int(p) for p in patch)
        self.batch_size = max(1, int(batch_size))
        self.patches_per_case = max(1, int(patches_per_case))
        self.patches_per_epoch = int(patches_per_epoch or self.patches_per_case * len(regions))
        self.seed = int(seed)
        if balance not in ("classes", "posneg"):
            raise ValueError(f"balance must be 'classes' or 'posneg', not {balance!r}")
        keys = ("image", "label")
        if balance == "classes":
            n = int(n_classes if n_classes is not None else max(int(label.max()) for _, label in regions))
            indices = ClassesToIndicesd("label", num_classes=n + 1)
            self.crop = RandCropByLabelClassesd(keys, "label", self.patch, ratios=[1] * (n + 1), num_classes=n + 1,
                                                num_samples=self.patches_per_case, indices_key="label_cls_indices",
                                                warn=False)
            centres = "background and each label equally often"
        else:
            indices = FgBgToIndicesd("label")
            self.crop = RandCropByPosNegLabeld(keys, "label", self.patch, pos=2, neg=1,
                                               num_samples=self.patches_per_case, fg_indices_key="label_fg_indices",
                                               bg_indices_key="label_bg_indices")
            centres = "labels:background 2:1"
        self.balance = balance
        self.items = []
        for image, label in regions:
            image = pad_to(image.float(), self.patch, float(image.min()))[None]
            label = pad_to(label.float(), self.patch, 0.0)[None]
            self.items.append(indices({"image": image, "label": label}))
        strength = {True: "standard", False: "none", None: "none"}.get(augment, augment)
        if strength not in ("standard", "strong", "none"):
            raise ValueError(f"augment must be 'standard', 'strong' or 'none', not {augment!r}")
        self.strength = strength
        steps = []
        if strength != "none":
            strong = strength == "strong"
            angle, scale = math.radians(15 if strong else 10), 0.2 if strong else 0.1
            steps += [RandFlipd(keys, prob=0.5, spatial_axis=int(a)) for a in flip_axes]
            steps.append(RandAffined(keys, prob=0.5 if not strong else 0.7, rotate_range=[(-angle, angle)] * 3,
                                     scale_range=[(-scale, scale)] * 3, mode=("bilinear", "nearest"),
                                     padding_mode=("border", "zeros"), spatial_size=self.patch, cache_grid=True))
            if strong:
                steps += [RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
                          RandBiasFieldd("image", prob=0.3, coeff_range=(0.0, 0.2)),
                          RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0),
                                              sigma_z=(0.5, 1.0)),
                          RandSimulateLowResolutiond("image", prob=0.2, zoom_range=(0.5, 1.0)),
                          RandGaussianNoised("image", prob=0.3, std=0.05)]
            steps += [RandScaleIntensityd("image", factors=0.1, prob=0.5),
                      RandShiftIntensityd("image", offsets=0.1, prob=0.5)]
        self.augment = Compose(steps) if steps else None
        if strength == "none":
            what = "no augmentation"
        else:
            what = (f"flips along axes {list(flip_axes) or 'none'}, rotations +-{15 if strong else 10} deg, scaling "
                    f"+-{20 if strong else 10} %, " + ("gamma 0.7-1.5, bias field, blur, lower resolution, noise, "
                                                       if strong else "") + "intensity scale/shift +-0.1")
        self.description = (f"patches {'x'.join(map(str, self.patch))} (centres on {centres}), "
                            f"{self.patches_per_epoch} per epoch in batches of {self.batch_size}; {what}")

    def __len__(self) -> int:
        """Iterations per epoch."""
        return int(math.ceil(self.patches_per_epoch / self.batch_size))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch ``epoch`` (its randomness seeded from the sampler's seed and ``epoch``)."""
        rs = np.random.RandomState(np.uint32((self.seed * 1_000_003 + int(epoch) * 7919) % 2**32))
        self.crop.set_random_state(state=rs)
        if self.augment is not None:
            self.augment.set_random_state(seed=int(rs.randint(2**31)))
        visits = int(math.ceil(self.patches_per_epoch / self.patches_per_case))
        order = np.concatenate([rs.permutation(len(self.items)) for _ in range(-(-visits // len(self.items)))])
        left = self.patches_per_epoch
        batch: list[dict] = []
        for i in order[:visits]:
            for patch in self.crop(self.items[int(i)])[:left]:
                left -= 1
                if self.augment is not None:
                    patch = self.augment(patch)
                batch.append(patch)
                if len(batch) == self.batch_size:
                    yield _collate(batch)
                    batch = []
        if batch:
            yield _collate(batch)


def _plain(x) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def _collate(batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.stack([_plain(p["image"]) for p in batch]).float().contiguous()
    label = torch.stack([_plain(p["label"]) for p in batch]).round_().contiguous()
    return image, label
