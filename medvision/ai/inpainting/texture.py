"""Texture for a smooth fill: the fine grain of the image (its noise and finest detail) copied into the
region from known tissue of the same brightness nearby.

A fill that minimises the error (the biharmonic fill, a network trained on L1) is smooth: in a CT or an
MR with visible noise it shows as a waxy patch, which a reader spots at once and which has the wrong
texture for any tool run on the image afterwards. The image's own grain is at hand around the region:
the high-pass residual of the known voxels (the image minus its in-plane Gaussian blur). The region is cut
into blocks of a few slices; each block takes the residual of a block-shaped donor place in the same
slices, never touching the region (nor near enough for its blur to see it), chosen among random nearby
places as the one whose blurred brightness is closest to the fill's there (fat takes fat's grain, bone
bone's). Copied whole across its slices, the donor keeps the image's slice-to-slice correlation. The
residual has no mean, so the fill's brightness stays; its variance (the image's noise) is what the copy
adds to the fill's error. Nothing inside the region is read: the fill is the only input there.
Deterministic: the same region and image give the same texture."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...core.edits import bounding_box

__all__ = ["add_neighbour_texture", "SIGMA", "BLOCK"]

#: in-plane blur (pixels) whose residual is the texture
SIGMA = 1.5
#: (slices, rows, columns) of the blocks a region is textured by
BLOCK = (4, 8, 8)
#: how far from its block a donor is looked for (pixels in-plane; further for a wider region), and how many
#: places are tried
RADIUS, CANDIDATES = 48, 96
#: width (pixels) of the ring of known voxels the region's grain is measured on
RING = 8


def _blur(planes: torch.Tensor, sigma: float) -> torch.Tensor:
    """In-plane Gaussian blur of (z, y, x), edges reflected."""
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    t = planes[:, None]
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))
    return t[:, 0]


def _area_sums(flat: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column."""
    sat = np.zeros((flat.shape[0] + 1, flat.shape[1] + 1), np.int64)
    sat[1:, 1:] = flat.astype(np.int64).cumsum(0).cumsum(1)
    return sat


def add_neighbour_texture(filled: np.ndarray, hole: np.ndarray, *, sigma: float = SIGMA,
                          block: tuple[int, int, int] = BLOCK, radius: int = RADIUS,
                          candidates: int = CANDIDATES, seed: int = 0) -> int:
    """Add the neighbouring tissue's grain to ``filled`` (float, (z, y, x), the region already filled
    smoothly) inside ``hole``, in place. Returns how many of the region's voxels got none (no place
    around them free of the region: a region too wide for its image)."""
    tight = bounding_box(hole, (0, 0, 0))
    if tight is None:
        return 0
    # a block in the middle of a wide region looks past the region's edge, and the blur's reach beyond it
    reach = int(math.ceil(3 * sigma)) + 1
    widest = max(tight[1].stop - tight[1].start, tight[2].stop - tight[2].start)
    radius = max(radius, (widest + 1) // 2 + reach + max(block[1:]))
    box = bounding_box(hole, (0, radius + block[1], radius + block[2]))
    assert box is not None
    sub = filled[box]
    h = np.ascontiguousarray(hole[box])
    planes = torch.from_numpy(np.ascontiguousarray(sub, dtype=np.float32))
    smooth = _blur(planes, sigma)
    residual = (planes - smooth).numpy()
    smooth_np = smooth.numpy()
    # the blur of a voxel this close to the region saw the region's (smooth) fill: not a donor
    near = F.max_pool2d(torch.from_numpy(h.astype(np.float32))[:, None], 2 * reach + 1, 1, reach)[:, 0].numpy() > 0
    # the grain the region should have: the residual's spread (median absolute deviation, blind to the odd
    # edge) on the known voxels just outside the blur's reach, slices by slices
    ring = (F.max_pool2d(torch.from_numpy(near.astype(np.float32))[:, None], 2 * RING + 1, 1, RING)[:, 0].numpy() > 0)
    ring &= ~near
    rng = np.random.default_rng(seed)
    depth, rows, cols = h.shape
    missed = 0
    for z0 in range(0, depth, block[0]):
        z1 = min(depth, z0 + block[0])
        hz = h[z0:z1]
        if not hz.any():
            continue
        sat = _area_sums(near[z0:z1].any(axis=0))
        around = residual[z0:z1][ring[z0:z1]]
        grain = 1.4826 * float(np.median(np.abs(around - np.median(around)))) if around.size else 0.0
        ys, xs = np.nonzero(hz.any(axis=0))
        for y0 in range(int(ys.min()), int(ys.max()) + 1, block[1]):
            for x0 in range(int(xs.min()), int(xs.max()) + 1, block[2]):
                y1, x1 = min(rows, y0 + block[1]), min(cols, x0 + block[2])
                hm = hz[:, y0:y1, x0:x1]
                if not hm.any():
                    continue
                offset = _donor(sat, smooth_np[z0:z1], residual[z0:z1], grain, hm, (y0, y1, x0, x1), rng, radius,
                                candidates)
                if offset is None:
                    missed += int(hm.sum())
                    continue
                dy, dx = offset
                target = sub[z0:z1, y0:y1, x0:x1]
                target[hm] += residual[z0:z1, y0 + dy:y1 + dy, x0 + dx:x1 + dx][hm]
    return missed


def _donor(sat: np.ndarray, smooth: np.ndarray, residual: np.ndarray, grain: float, hm: np.ndarray,
           rect: tuple[int, int, int, int], rng: np.random.Generator, radius: int,
           candidates: int) -> tuple[int, int] | None:
    """The (dy, dx) of the donor place for one block: inside the image, clear of the region and its
    blur's reach (``sat``), nearest to the fill over the block's region voxels in blurred brightness, and
    in the spread of its residual over the whole block to ``grain`` (an edge in the donor would be copied as
    a false edge)."""
    y0, y1, x0, x1 = rect
    rows, cols = sat.shape[0] - 1, sat.shape[1] - 1
    # random places, and places straight along the rows and the columns (where a border between two
    # tissues runs along one of them, a donor there straddles it the same way)
    along = rng.integers(-radius, radius + 1, size=candidates // 4)
    offsets = np.concatenate([rng.integers(-radius, radius + 1, size=(candidates, 2)),
                              np.stack([along, np.zeros_like(along)], 1), np.stack([np.zeros_like(along), along], 1)])
    dy, dx = offsets[:, 0], offsets[:, 1]
    inside = (y0 + dy >= 0) & (y1 + dy <= rows) & (x0 + dx >= 0) & (x1 + dx <= cols)
    dy, dx = dy[inside], dx[inside]
    if dy.size == 0:
        return None
    a, b, c, d = y0 + dy, y1 + dy, x0 + dx, x1 + dx
    clear = (sat[b, d] - sat[a, d] - sat[b, c] + sat[a, c]) == 0
    dy, dx = dy[clear], dx[clear]
    if dy.size == 0:
        return None
    want = smooth[:, y0:y1, x0:x1]
    cost = []
    for oy, ox in zip(dy, dx, strict=True):
        there = smooth[:, y0 + oy:y1 + oy, x0 + ox:x1 + ox]
        cost.append(float(np.abs(there[hm] - want[hm]).mean())  # the same brightness
                    + abs(float(there.std()) - float(want.std()))  # as flat (a donor across an edge is not)
                    + abs(float(residual[:, y0 + oy:y1 + oy, x0 + ox:x1 + ox].std()) - grain))  # the same grain
    k = int(np.argmin(cost))
    return int(dy[k]), int(dx[k])
