"""deepbet's brain extraction, step by step, on medvision Volumes (the reference for cards with a localizer).

The steps are those of deepbet 1.0.2 (``deepbet.bet.BrainExtraction``), written anew:

1. the first frame, as float32, its axes permuted/flipped to RAS canonical order (index
   ``x`` towards the patient's right, ``y`` anterior, ``z`` superior; array order ``[x, y, z]``,
   as nibabel's ``as_closest_canonical(img).get_fdata()`` gives it), NaN set to 0;
2. a nearest-exact resize to 128^3; its 0.5 % and 99.5 % quantiles (``low``, ``high``);
3. deepbet's normalisation (scale ``low..high`` to 0..1, clip, standardise, then
   ``0.226 * x + 0.449``), the localizer, softmax channel 1 > 0.5, largest 26-connected component;
4. a box around it: along each axis the slices where more than 2 % of the plane is foreground,
   scaled to the full grid, widened by 10 % of its size on each side;
5. the box cut from the full image, resized (nearest-exact) to 256^3, normalised with the same
   ``low``/``high``, the segmenter, softmax channel 1 resized back to the box;
6. threshold 0.5; inside the box the largest 26-connected component with its holes filled
   (background not 6-connected to the box's border); zero outside the box;
7. the axes put back to the volume's own ``(z, y, x)`` grid.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from ...core.volume import Volume
from ..masks import fill_holes, largest_component

__all__ = ["brain_mask", "deepbet_normalize", "box_with_margin", "NoBrainFoundError"]

log = logging.getLogger(__name__)

LOCALIZER_SHAPE = (128, 128, 128)
SEGMENTER_SHAPE = (256, 256, 256)


class NoBrainFoundError(ValueError):
    """The localizer or the segmenter found no brain in the image."""


def deepbet_normalize(
    x: torch.Tensor, low: torch.Tensor | float, high: torch.Tensor | float, mean: float = 0.449, std: float = 0.226
) -> torch.Tensor:
    """deepbet's intensity normalisation: ``low..high`` to 0..1 (clipped), standardised, to ``mean``/``std``.

    The standard deviation is torch's default (unbiased), as in deepbet.
    """
    x = ((x - low) / (high - low)).clamp(min=0, max=1)
    z = (x - x.mean()) / x.std()
    return std * z + mean


def box_with_margin(
    foreground: np.ndarray, full_shape: tuple[int, ...], margin: float = 0.1, min_fraction: float = 0.02
) -> tuple[slice, slice, slice]:
    """deepbet's bounding box: from a mask on a small grid to slices of the full grid.

    Along each axis the box spans the planes where more than ``min_fraction`` of the plane is
    foreground; its centre and size are scaled to ``full_shape``, the size widened by
    ``margin`` on each side, both rounded (half to even), and the ends truncated towards zero
    and clipped to the grid. float32 arithmetic, as deepbet does it in torch.
    """
    f32 = np.float32
    widen = f32(1) + f32(2) * f32(margin)
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        profile = foreground.mean(axis=others, dtype=np.float32)
        planes = np.flatnonzero(profile > min_fraction)
        if planes.size == 0:
            raise NoBrainFoundError("the localizer found too little brain to place a bounding box")
        lo, hi = int(planes.min()), int(planes.max()) + 1
        scale = f32(full_shape[axis]) / f32(foreground.shape[axis])
        centre = np.round(scale * f32((lo + hi) / 2))
        size = np.round(widen * (scale * f32(hi - lo)))
        start, stop = int(centre - size / f32(2)), int(centre + size / f32(2))
        box.append(slice(max(0, start), min(full_shape[axis], stop)))
    return tuple(box)  # type: ignore[return-value]


def _axis_map(src_affine: np.ndarray, dst_affine: np.ndarray) -> list[tuple[int, bool]]:
    """For each index axis j of ``dst``: the index axis i of ``src`` it is, and whether it is reversed."""
    out = []
    for j in range(3):
        col = dst_affine[:3, j]
        for i in range(3):
            if np.allclose(col, src_affine[:3, i]):
                out.append((i, False))
                break
            if np.allclose(col, -src_affine[:3, i]):
                out.append((i, True))
                break
        else:
            raise ValueError("the reoriented grid is not a permutation of the original's axes")
    return out


def _ras_to_own_grid(ras_xyz: np.ndarray, volume: Volume, ras: Volume) -> np.ndarray:
    """An array in RAS index order ``[x, y, z]`` of ``ras`` back onto ``volume``'s ``(z, y, x)`` grid."""
    mapping = _axis_map(volume.affine, ras.affine)
    arr = ras_xyz
    for j, (_, flipped) in enumerate(mapping):
        if flipped:
            arr = np.flip(arr, axis=j)
    src_to_dst = [next(j for j, (i, _) in enumerate(mapping) if i == src) for src in range(3)]
    arr = arr.transpose(src_to_dst)  # index order of ``volume``: [x, y, z]
    return np.ascontiguousarray(arr.transpose(2, 1, 0))


def _resize(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(x[None, None], size=tuple(shape), mode="nearest-exact")[0, 0]


@torch.no_grad()
def brain_mask(
    volume: Volume,
    segmenter: torch.nn.Module,
    localizer: torch.nn.Module,
    device: str | torch.device = "cpu",
    *,
    threshold: float = 0.5,
    margin: float = 0.1,
    localizer_shape: tuple[int, int, int] = LOCALIZER_SHAPE,
    segmenter_shape: tuple[int, int, int] = SEGMENTER_SHAPE,
) -> np.ndarray:
    """deepbet's brain mask of a T1-weighted ``volume``, boolean ``(z, y, x)`` on its own grid.

    ``segmenter`` and ``localizer`` are deepbet networks (eager ``LinkNet3D`` or the original
    TorchScript modules) returning softmax probabilities; they are put in eval mode and moved
    to ``device``. A 4D volume uses its first frame. Raises ``NoBrainFoundError`` when the
    image holds no brain the networks can find.
    """
    device = torch.device(device)
    own = volume.frame(0)
    ras = own.reoriented("RAS")
    segmenter.eval().to(device)
    localizer.eval().to(device)

    x = torch.from_numpy(np.ascontiguousarray(ras.array.transpose(2, 1, 0), dtype=np.float32)).to(device)
    x = torch.nan_to_num(x)

    small = _resize(x, localizer_shape)
    low, high = small.quantile(0.005), small.quantile(0.995)
    if not bool(high > low):
        raise NoBrainFoundError("the image has no contrast (its 0.5 % and 99.5 % quantiles are equal)")
    found = localizer(deepbet_normalize(small, low, high)[None, None])[0, 1] > 0.5
    found = largest_component(found.cpu().numpy())
    box = box_with_margin(found, tuple(x.shape), margin)
    log.debug("deepbet box %s on RAS grid %s", box, tuple(x.shape))

    crop = x[box]
    brain = segmenter(deepbet_normalize(_resize(crop, segmenter_shape), low, high)[None, None])[0, 1]
    inside = (_resize(brain, tuple(crop.shape)) > threshold).cpu().numpy()
    inside = fill_holes(largest_component(inside))
    if not inside.any():
        raise NoBrainFoundError("the segmenter found no brain inside the localizer's box")

    mask = np.zeros(tuple(x.shape), dtype=bool)
    mask[box] = inside
    return _ras_to_own_grid(mask, own, ras)
