"""The images and labels as the network trains on them: normalised as the card says with the
image's own statistics, resampled to the card's voxel size (images trilinear, labels by their
classes' interpolated masks), by the engine's rules so that training sees what inference sees."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["normalize_for_training", "resample_image", "resample_labels", "resampled_shape"]


def normalize_for_training(card: dict, array) -> torch.Tensor:
    """``array`` ``[x, y, z]`` normalised as ``card["input"]["normalization"]`` says, with the
    statistics (quantiles, mean, std) of this image itself: what the engine does on a whole image
    when the card has no ``quantiles_from`` (the card a fine-tuned package gets)."""
    from ..preprocess import normalize

    spec = dict((card.get("input") or {}).get("normalization") or {"kind": "none"})
    spec.pop("quantiles_from", None)
    x = torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)
    return normalize(x.clone(), spec, None)


def resampled_shape(shape, spacing, target) -> tuple[int, int, int]:
    """The ``[x, y, z]`` shape of an array of ``shape`` at ``spacing`` resampled to ``target`` mm:
    the engine's rule for a card's ``spacing_mm`` (:func:`medvision.ai.preprocess.prepare`)."""
    return tuple(max(1, int(round(n * float(s) / float(t)))) for n, s, t in zip(shape, spacing, target, strict=True))


def resample_image(image: torch.Tensor, shape) -> torch.Tensor:
    """``image`` ``[x, y, z]`` resampled to ``shape`` (trilinear, ``align_corners=False``: as the engine)."""
    import torch.nn.functional as F

    if tuple(image.shape) == tuple(shape):
        return image
    return F.interpolate(image.float()[None, None], tuple(int(n) for n in shape), mode="trilinear",
                         align_corners=False)[0, 0].contiguous()


def resample_labels(label: torch.Tensor, shape, n_classes: int) -> torch.Tensor:
    """Class indices ``[x, y, z]`` resampled to ``shape``: every class's mask interpolated
    trilinearly (as the engine maps probabilities), each voxel gets the largest (uint8)."""
    if tuple(label.shape) == tuple(shape):
        return label
    best = torch.full(tuple(int(n) for n in shape), -1.0)
    out = torch.zeros(tuple(int(n) for n in shape), dtype=torch.uint8)
    for c in range(n_classes + 1):
        mask = resample_image((label == c).float(), shape)
        better = mask > best
        out[better] = c
        best = torch.where(better, mask, best)
    return out
