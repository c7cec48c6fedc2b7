"""Holes of the kinds users make, in millimetres, for training and measuring inpainting models
(numpy only): boxes, brush strokes, lesion-shaped blobs (a perturbed ellipsoid, or a structure
taken from a label map), each on a volume's (z, y, x) grid with its spacing, a few mm to several cm
across, and the size bin a hole falls in.

Every generator takes a ``numpy.random.Generator`` and returns a boolean mask the shape of the
volume; the same seed gives the same hole."""

from __future__ import annotations

import numpy as np

__all__ = ["KINDS", "SIZE_BINS", "box_hole", "brush_hole", "blob_hole", "label_hole", "random_hole", "size_bin",
           "equivalent_diameter_mm"]

#: the hole kinds a training run draws from (label: a structure of a label map, where there is one)
KINDS = ("box", "brush", "blob", "label")
#: the bins figures are given in: the hole's largest in-plane extent, in mm
SIZE_BINS = ("<10 mm", "10-30 mm", ">30 mm")


def _center(shape, rng: np.random.Generator, inside: np.ndarray | None) -> np.ndarray:
    """A random voxel (z, y, x): of ``inside`` where given and not empty, else anywhere."""
    if inside is not None and inside.any():
        points = np.flatnonzero(inside)
        return np.array(np.unravel_index(int(points[rng.integers(points.size)]), shape))
    return np.array([int(rng.integers(n)) for n in shape])


def _grid_mm(shape, spacing_zyx, center) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distance along each axis from ``center``, in mm, as open (broadcastable) grids."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return ((z - center[0]) * spacing_zyx[0], (y - center[1]) * spacing_zyx[1], (x - center[2]) * spacing_zyx[2])


def box_hole(shape, spacing_zyx, size_mm: float, rng: np.random.Generator, inside: np.ndarray | None = None,
             depth_mm: float | None = None) -> np.ndarray:
    """An axis-aligned box, ``size_mm`` across in-plane (each side 0.6-1.0 of it), ``depth_mm`` through
    the slices (default: as wide as its smaller side, at least one slice)."""
    c = _center(shape, rng, inside)
    sides = size_mm * rng.uniform(0.6, 1.0, 2)
    depth = depth_mm if depth_mm is not None else float(sides.min())
    dz, dy, dx = _grid_mm(shape, spacing_zyx, c)
    return ((np.abs(dz) <= max(depth / 2, spacing_zyx[0] / 2)) & (np.abs(dy) <= sides[0] / 2)
            & (np.abs(dx) <= sides[1] / 2))


def blob_hole(shape, spacing_zyx, size_mm: float, rng: np.random.Generator, inside: np.ndarray | None = None
              ) -> np.ndarray:
    """A lesion-shaped blob: an ellipsoid ``size_mm`` across at its longest, randomly turned in-plane,
    its surface perturbed by a few low-frequency waves."""
    c = _center(shape, rng, inside)
    dz, dy, dx = _grid_mm(shape, spacing_zyx, c)
    axes = size_mm / 2 * np.array([rng.uniform(0.5, 1.0), 1.0, rng.uniform(0.5, 1.0)])
    turn = rng.uniform(0, np.pi)
    u = dy * np.cos(turn) + dx * np.sin(turn)
    v = -dy * np.sin(turn) + dx * np.cos(turn)
    r = np.sqrt((dz / axes[0]) ** 2 + (u / axes[1]) ** 2 + (v / axes[2]) ** 2)
    angle = np.arctan2(v, u + 1e-9)
    wobble = 1.0 + sum(rng.uniform(0, 0.15) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return r <= wobble


def brush_hole(shape, spacing_zyx, size_mm: float, rng: np.random.Generator, inside: np.ndarray | None = None,
               width_mm: float | None = None) -> np.ndarray:
    """Brush strokes as an annotator paints them: a few connected segments of a random walk spanning
    about ``size_mm``, ``width_mm`` thick (default 0.15-0.35 of the span, at least 2 mm), on one slice
    or a few neighbouring ones."""
    c = _center(shape, rng, inside).astype(float)
    width = width_mm if width_mm is not None else max(2.0, size_mm * rng.uniform(0.15, 0.35))
    mask = np.zeros(shape, bool)
    n_slices = max(1, int(round(width / spacing_zyx[0] * rng.uniform(0.3, 1.0))))
    z0 = int(np.clip(c[0] - n_slices // 2, 0, shape[0] - 1))
    y, x = np.ogrid[: shape[1], : shape[2]]
    point = c[1:] * np.asarray(spacing_zyx[1:])  # in mm
    steps = int(rng.integers(2, 6))
    angle = rng.uniform(0, 2 * np.pi)
    plane = np.zeros(shape[1:], bool)
    for _ in range(steps):
        angle += rng.uniform(-1.2, 1.2)
        length = size_mm / steps * rng.uniform(0.7, 1.3)
        end = point + length * np.array([np.sin(angle), np.cos(angle)])
        # the segment's distance field, thick ``width``
        py, px = y * spacing_zyx[1], x * spacing_zyx[2]
        d = end - point
        t = np.clip(((py - point[0]) * d[0] + (px - point[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        plane |= (py - point[0] - t * d[0]) ** 2 + (px - point[1] - t * d[1]) ** 2 <= (width / 2) ** 2
        point = end
    mask[z0:z0 + n_slices] = plane
    return mask


def label_hole(labels: np.ndarray, rng: np.random.Generator, spacing_zyx=(1.0, 1.0, 1.0),
               max_mm: float = 60.0) -> np.ndarray | None:
    """One structure of a label map (a value drawn at random among those present whose extent is at most
    ``max_mm``), as a hole: the shapes real lesions and organs have. None when no structure fits."""
    values = [int(v) for v in np.unique(labels) if v]
    rng.shuffle(values)
    for value in values:
        mask = labels == value
        extent = [np.ptp(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))) + 1
                  for ax in range(3)]
        if max(e * s for e, s in zip(extent[1:], spacing_zyx[1:], strict=True)) <= max_mm:
            return mask
    return None


def random_hole(shape, spacing_zyx, rng: np.random.Generator, *, kind: str | None = None,
                size_mm: float | None = None, inside: np.ndarray | None = None,
                labels: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """A hole of ``kind`` (drawn from :data:`KINDS` when None; "label" only where ``labels`` are given),
    ``size_mm`` across (drawn log-uniformly from 4 to 60 mm when None), centred in ``inside``."""
    kinds = [k for k in KINDS if k != "label" or labels is not None]
    kind = kind or kinds[int(rng.integers(len(kinds)))]
    size = size_mm if size_mm is not None else float(np.exp(rng.uniform(np.log(4.0), np.log(60.0))))
    if kind == "label" and labels is not None:
        mask = label_hole(labels, rng, spacing_zyx, max_mm=max(size, 10.0))
        if mask is not None:
            return mask, kind
        kind = "blob"
    maker = {"box": box_hole, "brush": brush_hole, "blob": blob_hole}[kind]
    return maker(shape, spacing_zyx, size, rng, inside), kind


def equivalent_diameter_mm(mask2d: np.ndarray, spacing_yx) -> float:
    """The largest in-plane extent of a slice's hole, in mm (0 for an empty one)."""
    if not mask2d.any():
        return 0.0
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    return float(max((rows[-1] - rows[0] + 1) * spacing_yx[0], (cols[-1] - cols[0] + 1) * spacing_yx[1]))


def size_bin(mask2d: np.ndarray, spacing_yx) -> str:
    """The :data:`SIZE_BINS` entry of a slice's hole."""
    d = equivalent_diameter_mm(mask2d, spacing_yx)
    return SIZE_BINS[0] if d < 10 else SIZE_BINS[1] if d <= 30 else SIZE_BINS[2]
