"""brainchop's way of running its MeshNet models, step by step, on medvision Volumes.

The steps are those of brainchop v4's web app (``brainchop-mainthread.js``, ``tensor-utils.js``,
niivue's ``conform``), written anew:

1. conform: the image resliced (trilinear) onto a 256^3 grid of 1 mm voxels in LIA orientation
   (index i towards the patient's left, j inferior, k anterior, FreeSurfer's), centred where the
   input's voxel ``dims / 2`` lies, voxels whose interpolation cube leaves the input set to 0;
   intensities to uint8: a uint8 image keeps its values (less its minimum), any other is scaled
   so that its minimum goes to 0 and the top 0.1 % of its non-zero voxels (from a 1000-bin
   histogram of the input) to 255, clipped and truncated. niivue takes the centre from the file
   as stored; here the image is first reoriented to RAS (axes permuted and flipped, never
   interpolated), so every storage order of one image gives the same grid in patient space
   (and the same as brainchop for the usual RAS-stored NIfTI);
2. intensities of the whole cube to float32 by min-max ``(x - min) / (max - min)`` or by
   quantiles ``(x - q05) / (q95 - q05)``, not clipped, with brainchop's quantiles: the sorted
   values at ``floor(0.05 n)`` and ``ceil(0.95 n) - 1``;
3. the region the network sees: the box of the pre-model's brain mask (argmax > 0) if the card
   has one, else of the voxels above ``threshold * max`` of the normalised cube (``autoThreshold``),
   else of the voxels above 0; cut out, padded with ``padding`` zeros on each side;
4. the network on it in the conformed index order ``[i, j, k]`` (brainchop transposes its
   ``[k, j, i]`` tensor), the class of each voxel the argmax of the logits (the first of equal
   maxima);
5. back into the 256^3 cube (zeros outside the box), then only the largest 26-connected component
   of all non-background voxels together is kept (brainchop's ``BWLabeler`` with
   ``onlyLargestClusterPerClass`` on the binarised labels);
6. onto the volume's own grid by nearest neighbour (each voxel takes the conformed voxel its centre
   lies in; outside the cube: background).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from medvision.core.volume import Volume

from .layout import place

__all__ = ["Conformed", "conform", "normalize", "crop_box", "network_input", "predict", "to_cube",
           "keep_largest_component", "to_volume_grid", "segment", "BrainchopError", "CONFORMED_SHAPE"]

log = logging.getLogger(__name__)

CONFORMED_SHAPE = 256
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# LIA: index i -> -x (left), j -> -z (inferior), k -> +y (anterior), in RAS
_LIA_RAS = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


class BrainchopError(ValueError):
    """An image the brainchop pipeline cannot segment (constant, nothing above the threshold)."""


@dataclass
class Conformed:
    """The conformed uint8 cube, indexed ``[i, j, k]`` (LIA), and its index -> LPS affine."""

    cube: np.ndarray
    affine: np.ndarray


def _conformed_affine_ras(ras_affine: np.ndarray, dims: tuple[int, int, int], n: int) -> np.ndarray:
    centre = ras_affine @ np.array([dims[0] / 2, dims[1] / 2, dims[2] / 2, 1.0])
    out = np.eye(4)
    out[:3, :3] = _LIA_RAS
    out[:3, 3] = centre[:3] - _LIA_RAS @ np.full(3, n / 2)
    return out


def _uint8_scale(values: np.ndarray, is_uint8: bool) -> tuple[float, float]:
    """niivue's (FastSurfer's) intensity mapping to 0..255: (source minimum, scale)."""
    low = float(values.min())
    if is_uint8:
        return low, 1.0
    high = float(values.max())
    flat = values.astype(np.float64, copy=False).ravel()
    nz = int(np.count_nonzero(np.abs(flat) >= 1e-15))
    if high == low:
        return low, 1.0
    bins = 1000
    size = (high - low) / bins
    index = np.minimum(np.floor((flat - low) / size), bins - 1).astype(np.int64)
    cs = np.cumsum(np.bincount(index, minlength=bins))
    nth = flat.size - math.floor((1.0 - 0.999) * nz)
    idx = 0
    while idx < bins - 1 and cs[idx + 1] < nth:
        idx += 1
    src_max = idx * size + low
    return low, (255.0 / (src_max - low) if src_max != low else 1.0)


def conform(volume: Volume, n: int = CONFORMED_SHAPE) -> Conformed:
    """The volume (first frame) resliced to brainchop's conformed 256^3, 1 mm, LIA uint8 cube."""
    canonical = volume.frame(0).reoriented("RAS") if volume.is_4d else volume.reoriented("RAS")
    data = np.ascontiguousarray(canonical.array)  # (z, y, x): x fastest in memory, as NIfTI stores it
    dims = data.shape[::-1]
    ras = _LPS_FROM_RAS @ canonical.affine
    out_ras = _conformed_affine_ras(ras, dims, n)
    to_input = np.linalg.inv(ras) @ out_ras  # conformed index -> input index
    values = data.astype(np.float32, copy=False)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, scale = _uint8_scale(values, data.dtype == np.uint8)
    flat = values.ravel()
    cube = np.zeros((n, n, n), np.uint8)
    m = to_input[:3, :3]
    t = to_input[:3, 3]
    (i0, i1), (j0, j1), (k0, k1) = _reach(to_input, dims, n)
    # one plane of constant k at a time: (i, j) grid -> input coordinates, within the box the input reaches
    gi, gj = np.meshgrid(np.arange(i0, i1, dtype=np.float64), np.arange(j0, j1, dtype=np.float64), indexing="ij")
    sx, sy = dims[0], dims[0] * dims[1]
    for k in range(k0, k1):
        c = [m[a, 0] * gi + m[a, 1] * gj + (m[a, 2] * k + t[a]) for a in range(3)]
        f = [np.floor(v) for v in c]
        inside = (f[0] >= 0) & (f[1] >= 0) & (f[2] >= 0)
        for a in range(3):
            inside &= np.ceil(c[a]) < dims[a]
        if not inside.any():
            continue
        fx, fy, fz = (v[inside].astype(np.int64) for v in f)
        rx, ry, rz = (c[a][inside] - f[a][inside] for a in range(3))
        base = fx + fy * sx + fz * sy
        acc = np.zeros(base.shape, np.float64)
        for dx, wx in ((0, 1 - rx), (1, rx)):
            for dy, wy in ((0, 1 - ry), (sx, ry)):
                for dz, wz in ((0, 1 - rz), (sy, rz)):
                    # the corner's index is clamped: a corner with weight 0 may lie just outside
                    acc += flat[np.minimum(base + dx + dy + dz, flat.size - 1)] * (wx * wy * wz)
        # niivue stores the interpolated value as float32, then scales it in double precision
        acc = np.clip(scale * (acc.astype(np.float32).astype(np.float64) - low), 0, 255)
        plane = np.zeros(gi.shape, np.uint8)
        plane[inside] = acc.astype(np.uint8)
        cube[i0:i1, j0:j1, k] = plane
    return Conformed(cube, _LPS_FROM_RAS @ out_ras)


def _reach(to_input: np.ndarray, dims, n: int) -> list[tuple[int, int]]:
    """The (start, stop) of each cube axis outside which no voxel lands inside the input (whose index runs
    over ``0 .. dims - 1``): the input's corners taken to cube indices, a voxel wider, within the cube.
    An image smaller than the cube (a crop, a thin slab) is resliced on its own box only."""
    corners = np.array([[x, y, z, 1.0] for x in (-1, dims[0]) for y in (-1, dims[1]) for z in (-1, dims[2])])
    at = np.linalg.solve(to_input, corners.T)[:3]
    return [(int(np.clip(np.floor(at[a].min()) - 1, 0, n)), int(np.clip(np.ceil(at[a].max()) + 2, 0, n)))
            for a in range(3)]


def normalize(cube: torch.Tensor, kind: str, low_quantile: float = 0.05, high_quantile: float = 0.95) -> torch.Tensor:
    """brainchop's normalisation of the whole conformed cube (float32, not clipped)."""
    x = cube.float()
    if kind == "minmax":
        lo, hi = x.min(), x.max()
    elif kind == "quantile":
        n = x.numel()
        flat = x.flatten()
        lo_i, hi_i = math.floor(n * low_quantile), math.ceil(n * high_quantile) - 1
        lo = flat.kthvalue(lo_i + 1).values
        hi = flat.kthvalue(hi_i + 1).values
    else:
        raise ValueError(f"unknown brainchop normalisation {kind!r}")
    span = hi - lo
    if not bool(span > 0):
        if kind == "quantile":
            raise BrainchopError(f"the image's {low_quantile:g} and {high_quantile:g} quantiles on brainchop's 256 mm "
                                 "cube are equal: it fills too little of the cube for this model's normalisation "
                                 "(brainchop would divide by zero); use a model with min-max normalisation")
        raise BrainchopError("the image is constant: nothing to segment")
    return (x - lo) / span


def crop_box(norm: torch.Tensor, threshold: float = 0.0, mask: torch.Tensor | None = None) -> tuple[slice, ...]:
    """The box (in the cube's ``[i, j, k]``) the network sees: of ``mask``, or of ``norm`` above
    ``threshold * max`` (0 < threshold <= 1), or of ``norm`` above 0."""
    if mask is None:
        if 0 < threshold <= 1:
            mask = norm > norm.max() * torch.tensor(threshold, dtype=norm.dtype)
        else:
            mask = norm > 0
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = torch.nonzero(mask.any(dim=others[1]).any(dim=others[0])).flatten()
        if hit.numel() == 0:
            raise BrainchopError("nothing in the image is bright enough to place the model's crop box")
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def network_input(norm: torch.Tensor, box: tuple[slice, ...], padding: int) -> torch.Tensor:
    """The crop, zero-padded by ``padding`` on each side, as a (1, 1, D, H, W) tensor."""
    crop = norm[box]
    if padding:
        crop = torch.nn.functional.pad(crop, (padding,) * 6)
    return crop[None, None].contiguous()


@torch.inference_mode()
def predict(net: torch.nn.Module, x: torch.Tensor, slab: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Class (uint8 or int16) and its softmax probability per voxel of ``x`` (1, 1, D, H, W).

    The hidden layers run on the whole input; the 1^3 classifier one slab of ``slab`` planes at a
    time (a 104-class output of a whole crop would need gigabytes), as brainchop's sequential
    last layer does."""
    place(net, x.device)
    feats = x
    for block in net.layers:
        feats = block(feats)
    depth = feats.shape[2]
    classes = net.classifier.out_channels
    labels = torch.empty(feats.shape[2:], dtype=torch.uint8 if classes <= 256 else torch.int16, device=x.device)
    prob = torch.empty(feats.shape[2:], dtype=torch.float32, device=x.device)
    for start in range(0, depth, slab):
        logits = net.classifier(feats[:, :, start:start + slab]).float()[0]
        labels[start:start + slab] = logits.argmax(0).to(labels.dtype)
        prob[start:start + slab] = torch.softmax(logits, 0).amax(0)
    return labels, prob


def to_cube(labels: np.ndarray, box: tuple[slice, ...], padding: int, n: int = CONFORMED_SHAPE) -> np.ndarray:
    """The network's classes (padded crop) back into the n^3 cube, zeros outside the box."""
    if padding:
        labels = labels[padding:-padding, padding:-padding, padding:-padding]
    cube = np.zeros((n, n, n), labels.dtype)
    cube[box] = labels
    return cube


def keep_largest_component(cube: np.ndarray) -> np.ndarray:
    """Zero every non-background voxel outside the largest 26-connected component of all of them."""
    from ..masks import largest_component

    keep = largest_component(cube != 0)
    out = cube.copy()
    out[~keep] = 0
    return out


def to_volume_grid(cube: np.ndarray, conformed_affine: np.ndarray, volume: Volume) -> np.ndarray:
    """The cube's values on ``volume``'s (z, y, x) grid by nearest neighbour (outside: 0)."""
    shape = volume.shape[-3:]
    n = cube.shape[0]
    to_cube_index = np.linalg.inv(conformed_affine) @ volume.affine  # volume (x, y, z) -> cube (i, j, k)
    out = np.zeros(shape, cube.dtype)
    xs = np.arange(shape[2], dtype=np.float64)
    ys = np.arange(shape[1], dtype=np.float64)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")  # (y, x) plane
    for z in range(shape[0]):
        # half-way points go up, with a tolerance so that rounding noise cannot split a tie
        idx = [np.floor(to_cube_index[a, 0] * gx + to_cube_index[a, 1] * gy + to_cube_index[a, 2] * z
                        + to_cube_index[a, 3] + 0.5 + 1e-6).astype(np.int64) for a in range(3)]
        inside = np.ones(gx.shape, bool)
        for a in range(3):
            inside &= (idx[a] >= 0) & (idx[a] < n)
        out[z][inside] = cube[idx[0][inside], idx[1][inside], idx[2][inside]]
    return out


def _premodel_mask(pre_net: torch.nn.Module, cube_t: torch.Tensor, kind: str) -> torch.Tensor:
    """brainchop's phase 1: the pre-model on the whole cube, its argmax > 0 (no post-processing)."""
    x = normalize(cube_t, kind)[None, None]
    labels, _ = predict(pre_net, x)
    return labels != 0


def segment(volume: Volume, net: torch.nn.Module, card: dict, pre_net: torch.nn.Module | None = None,
            device: str | torch.device = "cpu") -> np.ndarray:
    """The model's labels on ``volume``'s own grid (uint8/uint16), brainchop's way: the reference
    pipeline (the engine runs the same steps as a job)."""
    conformed = conform(volume)
    labels, _, box, pad = run_conformed(conformed, net, card, pre_net, device)
    cube = finish_cube(labels, box, pad, card)
    return to_volume_grid(cube, conformed.affine, volume)


def prepare_input(conformed: Conformed, card: dict, pre_mask: torch.Tensor | None, device) -> tuple:
    """The network input (1, 1, D, H, W) on ``device``, its box in the cube and its padding."""
    spec = card.get("input") or {}
    norm_spec = spec.get("normalization") or {"kind": "minmax"}
    crop = spec.get("crop") or {}
    cube_t = torch.from_numpy(conformed.cube).to(device)
    norm = normalize(cube_t, norm_spec.get("kind", "minmax"), float(norm_spec.get("low_quantile", 0.05)),
                     float(norm_spec.get("high_quantile", 0.95)))
    box = crop_box(norm, float(crop.get("threshold", 0.0)), pre_mask)
    pad = int(crop.get("padding", 0))
    return network_input(norm, box, pad), box, pad


def pre_mask_of(conformed: Conformed, card: dict, pre_net: torch.nn.Module | None, device) -> torch.Tensor | None:
    """The pre-model's brain mask on the cube (None when the card has no pre-model)."""
    if "pre_model" not in card:
        return None
    if pre_net is None:
        raise ValueError("this model needs its pre-model network")
    kind = ((card["pre_model"].get("normalization")) or {}).get("kind", "minmax")
    return _premodel_mask(pre_net.eval(), torch.from_numpy(conformed.cube).to(device), kind)


def run_conformed(conformed: Conformed, net: torch.nn.Module, card: dict, pre_net: torch.nn.Module | None,
                  device) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...], int]:
    """Pre-model, crop, network: (classes, probabilities) of the padded crop, its box and padding."""
    device = torch.device(device)
    mask = pre_mask_of(conformed, card, pre_net, device)
    x, box, pad = prepare_input(conformed, card, mask, device)
    labels, prob = predict(net.eval(), x)
    return labels.cpu().numpy(), prob.cpu().numpy(), box, pad


def finish_cube(labels: np.ndarray, box: tuple[slice, ...], pad: int, card: dict) -> np.ndarray:
    """The classes in the cube, post-processed as the card says, mapped to the card's label values."""
    cube = to_cube(labels, box, pad)
    post = card.get("postprocessing") or {}
    if post.get("largest_component_of_all_labels"):
        cube = keep_largest_component(cube)
    return cube
