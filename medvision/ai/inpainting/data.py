"""Volumes as an inpainting model trains on and is measured on: intensities scaled by the percentiles
of the voided image (the BraTS 2023 inpainting challenge's convention, here the 0.5th and 99.5th),
and training samples of a slice, its neighbours and a hole of the kinds users make
(:mod:`.holes`), cropped around the hole, at a random in-plane scale so that one model serves
images of any pixel size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...core.edits import bounding_box
from ...core.volume import Volume
from .holes import random_hole
from .network import COARSE, VOLUME_COARSE

__all__ = ["InpaintVolume", "Sample", "coarse_fill", "intensity_range", "neighbours", "sample_batch"]

LOW_Q, HIGH_Q = 0.005, 0.995


def intensity_range(array: np.ndarray, hole: np.ndarray | None = None) -> tuple[float, float]:
    """The (low, high) percentiles that scale ``array`` to about [0, 1], from the voxels outside
    ``hole`` (the voided image): what the model is given and what its output is scaled back by."""
    if array.size > 2_000_000:  # a regular subsample (every other row and column of evenly spaced slices),
        # taken before anything is copied: the same percentiles to well under a grey level
        step = int(np.ceil(array.size / 4 / 2_000_000))
        array = array[::step, ::2, ::2]
        hole = hole[::step, ::2, ::2] if hole is not None else None
    values = array[~hole] if hole is not None and hole.any() else array.ravel()
    low, high = np.quantile(values.astype(np.float32), [LOW_Q, HIGH_Q])
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def neighbours(z: int, depth: int, context: int) -> list[int]:
    """The slice indices a 2.5D model sees for slice ``z``: ``context`` each side, repeated at the ends."""
    return [min(max(z + k, 0), depth - 1) for k in range(-context, context + 1)]


@dataclass
class InpaintVolume:
    """One training or test volume: scaled intensities (z, y, x), its spacing, where the body is (holes
    are centred there) and, where it has them, labels (their structures make lesion-shaped holes)."""

    name: str
    array: np.ndarray  # float32, scaled
    spacing_zyx: tuple[float, float, float]
    body: np.ndarray
    labels: np.ndarray | None = None

    @classmethod
    def from_volume(cls, volume: Volume, name: str, labels: np.ndarray | None = None) -> InpaintVolume:
        frame = volume.frame(0) if volume.is_4d else volume
        array = frame.array.astype(np.float32)
        low, high = intensity_range(array)
        scaled = (array - low) / (high - low)
        body = scaled > 0.1
        if body.mean() < 0.05:  # (an image without background: anywhere)
            body = np.ones_like(body)
        spacing = tuple(float(s) for s in frame.spacing[::-1])  # (x, y, z) -> (z, y, x)
        return cls(name, np.ascontiguousarray(scaled), spacing, body, labels)


@dataclass
class Sample:
    """A batch: ``slices`` and ``masks`` (B, 2 * context + 1, H, W; masks 1 in the hole), each sample's
    hole kind, the slices' coarse fill, and the centre slice's truth (B, 1, H, W)."""

    slices: torch.Tensor
    masks: torch.Tensor
    kinds: list[str]
    #: the slices with their holes filled by the coarse fill the network refines (B, 2 * context + 1, H, W)
    coarse: torch.Tensor

    @property
    def target(self) -> torch.Tensor:
        c = self.slices.shape[1] // 2
        return self.slices[:, c:c + 1]

    @property
    def hole(self) -> torch.Tensor:
        c = self.masks.shape[1] // 2
        return self.masks[:, c:c + 1]


def _crop_at(plane: np.ndarray, cy: int, cx: int, size: int) -> np.ndarray:
    """``size`` x ``size`` around (cy, cx) of the last two axes, padded with edge values where it leaves."""
    h, w = plane.shape[-2:]
    y0, x0 = cy - size // 2, cx - size // 2
    pad = ((0, 0),) * (plane.ndim - 2) + ((max(0, -y0), max(0, y0 + size - h)), (max(0, -x0), max(0, x0 + size - w)))
    if any(p != (0, 0) for p in pad):
        plane = np.pad(plane, pad, mode="edge")
        y0, x0 = y0 + pad[-2][0], x0 + pad[-1][0]
    return plane[..., y0:y0 + size, x0:x0 + size]


def coarse_fill(array: np.ndarray, hole: np.ndarray, coarse: str, spacing_zyx) -> np.ndarray:
    """``array`` (z, y, x) with ``hole`` filled by the ``coarse`` fill (:data:`.network.COARSE`, slice by slice,
    or :data:`.network.VOLUME_COARSE`, in 3D) where the slices hold one; float32."""
    values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    valid = torch.from_numpy(~hole).float()
    if coarse in VOLUME_COARSE:
        return VOLUME_COARSE[coarse](values, valid, spacing_zyx).numpy()
    filled = values.clone()
    # on the holes' box, 16 pixels wider each way (the biharmonic fill depends on the two pixels around a hole)
    box = bounding_box(hole, (0, 16, 16))
    if box is None:
        return filled.numpy()
    zs = np.flatnonzero(hole.any(axis=(1, 2)))
    for k in range(0, len(zs), 16):  # a few slices at once
        part = (torch.from_numpy(zs[k:k + 16]), *box[1:])
        filled[part] = COARSE[coarse](values[part], valid[part])
    return filled.numpy()


def _one(vol: InpaintVolume, rng: np.random.Generator, crop: int, context: int, kind: str | None,
         zoom: float, coarse: str) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    """One sample: (slices, masks, kind, coarse fill), each array (2 * context + 1, crop, crop)."""
    spacing = (vol.spacing_zyx[0], vol.spacing_zyx[1] / zoom, vol.spacing_zyx[2] / zoom)
    hole, got = random_hole(vol.array.shape, spacing, rng, kind=kind, inside=vol.body, labels=vol.labels)
    if not hole.any():  # (a label structure can be absent from a crop: never, but a zero-size draw)
        hole, got = random_hole(vol.array.shape, spacing, rng, kind="blob", inside=vol.body)
    zs = np.flatnonzero(hole.any(axis=(1, 2)))
    z = int(zs[rng.integers(zs.size)])
    ys, xs = np.nonzero(hole[z])
    cy, cx = int(round(ys.mean())), int(round(xs.mean()))
    span = int(np.ceil(crop / zoom))
    index = neighbours(z, vol.array.shape[0], context)
    slices = _crop_at(vol.array[index], cy, cx, span)
    masks = _crop_at(hole[index].astype(np.float32), cy, cx, span)
    # the coarse fill on the volume's own grid (in 3D: from the whole hole), then cropped and scaled as the slices
    filled = _crop_at(_hole_filled(vol, hole, coarse, index), cy, cx, span)
    if span != crop:
        s, f = (F.interpolate(torch.from_numpy(np.ascontiguousarray(a))[None], (crop, crop), mode="bilinear",
                              align_corners=False)[0].numpy() for a in (slices, filled))
        m = F.interpolate(torch.from_numpy(np.ascontiguousarray(masks))[None], (crop, crop), mode="nearest")[0].numpy()
        slices, masks, filled = s, m, f
    if rng.random() < 0.5:  # left-right flips: anatomy is roughly symmetric
        slices, masks, filled = slices[..., ::-1], masks[..., ::-1], filled[..., ::-1]
    return np.ascontiguousarray(slices), np.ascontiguousarray(masks), got, np.ascontiguousarray(filled)


def _hole_filled(vol: InpaintVolume, hole: np.ndarray, coarse: str, index: list[int]) -> np.ndarray:
    """Slices ``index`` of the volume with ``hole`` coarse-filled, the fill computed on the hole's slices only
    (two known ones each side, for the fill in 3D)."""
    box = bounding_box(hole, (2, 0, 0))
    assert box is not None  # (the caller draws a hole that holds a voxel)
    lo, hi = box[0].start, box[0].stop
    slab = coarse_fill(vol.array[lo:hi], hole[lo:hi], coarse, vol.spacing_zyx)
    return np.stack([slab[i - lo] if lo <= i < hi else vol.array[i] for i in index])


def sample_batch(volumes: list[InpaintVolume], rng: np.random.Generator, batch: int, crop: int = 128,
                 context: int = 1, kind: str | None = None, zoom_range: tuple[float, float] = (0.6, 1.6),
                 coarse: str = "push_pull") -> Sample:
    """A batch of training samples: each from a volume drawn at random, at an in-plane scale drawn
    log-uniformly from ``zoom_range`` (1: the volume's own pixels), with its ``coarse`` fill."""
    parts = []
    for _ in range(batch):
        vol = volumes[int(rng.integers(len(volumes)))]
        zoom = float(np.exp(rng.uniform(np.log(zoom_range[0]), np.log(zoom_range[1]))))
        parts.append(_one(vol, rng, crop, context, kind, zoom, coarse))
    slices = torch.from_numpy(np.stack([p[0] for p in parts]))
    masks = torch.from_numpy(np.stack([(p[1] > 0.5).astype(np.float32) for p in parts]))
    filled = torch.from_numpy(np.stack([p[3] for p in parts]))
    # (outside the nearest-neighbour scaled masks: the slices themselves, as the network is given them)
    return Sample(slices, masks, [p[2] for p in parts], torch.where(masks > 0, filled, slices))
