"""Training data for a base that sees images as brainchop does (a card with ``input.conform``).

Such a base (brainchop's MeshNet packages) never saw an image at its own grid: the engine
conforms every image to a 256^3 cube of 1 mm voxels in LIA orientation with niivue's uint8
intensity mapping, normalises the whole cube (min-max or quantiles), and runs the network on the
box of the voxels above a threshold (:mod:`medvision.ai.networks.brainchop_pipeline`). The
training data for a fine-tuning go through the same steps, with the pipeline's own functions:

* the image: :func:`~..networks.brainchop_pipeline.conform`, then
  :func:`~..networks.brainchop_pipeline.prepare_input` (normalisation of the cube, the crop
  box, its padding): the network's input exactly as the engine gives it;
* the labels: carried onto the conformed grid the way the image is (each class's mask resampled
  trilinearly with the same cube-to-image mapping, the largest wins; voxels whose interpolation
  cube leaves the image are background, as conform leaves them 0), then cut to the same box.

The new package is run as its base runs (``inference.mode = "brainchop"``: conform,
normalisation, crop, padding and pre-model as the base's card), with two differences that
:func:`run_as_card` says in its notes: the crop keeps the base's threshold only when that box
holds every labelled voxel of the training cases (else the box of every non-zero voxel: a box
that cut a labelled structure at training would cut it in use), and no largest-component
post-processing (the base keeps the largest connected piece of all its labels together, one
brain; the new labels need not form one piece: a multifocal tumour, hippocampi apart from the
ventricles).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..networks import brainchop_pipeline as bp
from ..package import ModelPackage
from .data import CaseData, TrainingData, TrainingDataError

__all__ = ["is_conformed", "ConformedData", "prepare_conformed", "conform_labels", "run_as_card",
           "validation_margin"]

log = logging.getLogger(__name__)

#: the crop a fine-tuned card falls back to when the base's threshold box would cut its labels
FOOTPRINT_CROP = 0.0


def is_conformed(card: dict) -> bool:
    """Whether the card's network sees images conformed as brainchop does."""
    return bool((card.get("input") or {}).get("conform"))


def validation_margin(card: dict, default: int = 32) -> int:
    """Voxels of image to show the network around a validation slab: a MeshNet's receptive-field
    radius (then the slab's output equals the network's on the whole crop), else ``default``."""
    args = (card.get("architecture") or {}).get("args") or {}
    if "dilations" in args:
        from ..networks.meshnet import receptive_field

        return receptive_field(args["dilations"], int(args.get("kernel_size", 3))) // 2
    return default


def conform_labels(labels: np.ndarray, affine: np.ndarray, conformed: bp.Conformed, n_classes: int,
                   chunk: int = 32) -> np.ndarray:
    """Class indices ``labels`` (z, y, x) on a grid of ``affine`` carried onto the conformed cube
    ``[i, j, k]``: each class's mask interpolated trilinearly at the cube's voxel centres, the
    largest wins (ties: the lower class); background outside the image."""
    n = conformed.cube.shape[0]
    dims = np.array(labels.shape[::-1], dtype=np.float64)  # (x, y, z)
    to_input = np.linalg.inv(affine) @ conformed.affine  # cube (i, j, k) -> labels' (x, y, z)
    corners = np.array([[x, y, z, 1.0] for x in (-1, dims[0]) for y in (-1, dims[1]) for z in (-1, dims[2])])
    in_cube = (np.linalg.inv(to_input) @ corners.T)[:3]
    lo = np.clip(np.floor(in_cube.min(1)).astype(int), 0, n)
    hi = np.clip(np.ceil(in_cube.max(1)).astype(int) + 1, 0, n)
    out = np.zeros((n, n, n), np.uint8)
    if np.any(hi <= lo):
        return out
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), n_classes + 1)
    onehot = onehot.permute(3, 0, 1, 2)[None].float()  # (1, C, z, y, x)
    ii, jj = (np.arange(lo[a], hi[a], dtype=np.float64) for a in range(2))
    gi, gj = np.meshgrid(ii, jj, indexing="ij")
    for k0 in range(lo[2], hi[2], chunk):
        ks = np.arange(k0, min(hi[2], k0 + chunk), dtype=np.float64)
        c = [to_input[a, 0] * gi[..., None] + to_input[a, 1] * gj[..., None] + to_input[a, 2] * ks
             + to_input[a, 3] for a in range(3)]  # each (i, j, k) of the block
        inside = np.ones(c[0].shape, bool)
        for a in range(3):
            inside &= (np.floor(c[a]) >= 0) & (np.ceil(c[a]) < dims[a])
        if not inside.any():
            continue
        # grid_sample's (x, y, z) in [-1, 1] with align_corners: -1 and 1 are the first and last centres
        grid = np.stack([2 * c[a] / max(dims[a] - 1, 1) - 1 for a in range(3)], -1)
        grid_t = torch.from_numpy(grid.astype(np.float32))[None]  # (1, I, J, K, 3)
        probs = torch.nn.functional.grid_sample(onehot, grid_t, mode="bilinear", padding_mode="border",
                                                align_corners=True)[0]  # (C, I, J, K)
        block = probs.argmax(0).numpy().astype(np.uint8)
        block[~inside] = 0
        out[lo[0]:hi[0], lo[1]:hi[1], k0:k0 + block.shape[2]] = block
    return out


@dataclass
class ConformedData:
    """Every case's network input and labels (``[i, j, k]`` of the padded crop, as the engine
    builds it), the crop the new card runs with, and what to tell the user."""

    arrays: dict[str, tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]]
    crop: dict
    notes: list[str]

    def labels_of(self, case: CaseData) -> np.ndarray:
        return self.arrays[case.id][1].numpy()


def _pre_net(base: ModelPackage):
    return base.network("pre_model") if "pre_model" in base.card else None


def prepare_conformed(data: TrainingData, base: ModelPackage, device: str = "cpu"):
    """Job steps: conform, normalise and crop every case as the engine would for ``base``
    (see the module doc); returns a :class:`ConformedData`."""
    from ...core.jobs import Progress

    card = base.card
    n_classes = len(data.names)
    pre_net = _pre_net(base)
    crop = dict((card.get("input") or {}).get("crop") or {})
    staged = []
    for k, case in enumerate(data.cases):
        yield Progress("preparing", k, len(data.cases), f"conforming {case.id} to 256^3, 1 mm (as {base.id} sees it)")
        try:
            conformed = bp.conform(case.volume)
            mask = bp.pre_mask_of(conformed, card, pre_net, device)
            cube_t = torch.from_numpy(conformed.cube).to(device)
            spec = card["input"].get("normalization") or {"kind": "minmax"}
            norm = bp.normalize(cube_t, spec.get("kind", "minmax"), float(spec.get("low_quantile", 0.05)),
                                float(spec.get("high_quantile", 0.95))).cpu()
        except bp.BrainchopError as exc:
            raise TrainingDataError(f"{case.id}: {exc}") from exc
        labels = conform_labels(case.labels, case.volume.affine, conformed, n_classes)
        staged.append((case, norm, None if mask is None else mask.cpu(), labels))
    notes = []
    threshold = float(crop.get("threshold", 0.0))
    if any(m is None for _, _, m, _ in staged) and 0 < threshold <= 1:
        cut = {}
        for case, norm, mask, labels in staged:
            if mask is not None:
                continue
            box = bp.crop_box(norm, threshold)
            inside = np.zeros(labels.shape, bool)
            inside[box] = True
            outside = int(np.count_nonzero(labels[~inside]))
            if outside:
                cut[case.id] = (outside, int(np.count_nonzero(labels)))
        if cut:
            crop["threshold"] = FOOTPRINT_CROP
            where = ", ".join(f"{cid}: {o} of {t} labelled voxels" for cid, (o, t) in cut.items())
            notes.append(f"{base.id}'s crop (the box of the voxels above {threshold:g} of the maximum) would cut the "
                         f"labels ({where}): the new model sees the box of every non-zero voxel instead")
        else:
            notes.append(f"{base.id}'s crop (the box of the voxels above {threshold:g} of the maximum) holds every "
                         "labelled voxel: the new model keeps it")
    pad = int(crop.get("padding", 0))
    arrays = {}
    for case, norm, mask, labels in staged:
        box = bp.crop_box(norm, float(crop.get("threshold", 0.0)), mask)
        image = bp.network_input(norm, box, pad)[0, 0].contiguous()
        label = torch.from_numpy(np.ascontiguousarray(labels[box]))
        if pad:
            label = torch.nn.functional.pad(label, (pad,) * 6)
        if not label.any():
            raise TrainingDataError(f"{case.id}: no labelled voxel lies in the part of the image {base.id} sees "
                                    "(conformed to its 256 mm cube and cropped)")
        arrays[case.id] = (image, label, (1.0, 1.0, 1.0))
        size = "x".join(str(int(s)) for s in image.shape)
        notes.append(f"{case.id}: conformed to 1 mm LIA as {base.id} sees it; the network's crop is {size} voxels")
    return ConformedData(arrays, crop, notes)


def run_as_card(base: ModelPackage, crop: dict) -> tuple[dict, dict[str, str]]:
    """The card entries (``input``, ``inference``, ``postprocessing``, ``pre_model``) of a package
    fine-tuned from ``base``, run as the base runs, and the files to copy from the base's folder
    (``{file name: why}``)."""
    card = base.card
    spec = dict(card["input"])
    spec["crop"] = dict(crop)
    entries = {"input": spec, "inference": {"mode": "brainchop"}, "postprocessing": {}}
    files = {}
    if "pre_model" in card:
        entries["pre_model"] = card["pre_model"]
        files[card["pre_model"]["weights"]["file"]] = "the base's pre-model (its brain mask places the crop)"
    return entries, files
