"""Running an inpainting package on a volume and a region, as a job (progress, cancel).

The region's slices are filled one by one from the slice and its neighbours (the region voided in
each), on a crop around the region, with intensities scaled by the voided image's percentiles and
scaled back; the result is composited so that every voxel outside the region keeps its exact value
(and the volume its dtype). The result is a new volume: the original is never changed."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.jobs import Progress
from ...core.volume import Volume
from .. import memory
from ..inference.devices import pick_device
from ..package import ModelPackage, PackageError
from .data import coarse_fill, intensity_range, neighbours
from .network import KNOWN_FILLS, padded_input
from .texture import add_neighbour_texture

__all__ = ["InpaintOptions", "InpaintResult", "InpaintError", "inpaint_job", "anomaly_job", "check_region",
           "canonical_code", "in_dtype", "MAX_SHARE"]

#: a region over more than this share of the image is refused: there would be too little left to fill it from
MAX_SHARE = 0.5
#: image around the region the network sees, in pixels each side (at least)
MARGIN = 64


class InpaintError(ValueError):
    """A region or an image that cannot be inpainted, said in one sentence."""


@dataclass
class InpaintOptions:
    device: str = "auto"
    frame: int = 0  # of a 4D series
    batch: int = 4  # slices at once
    #: the image's grain copied into the fill (:mod:`.texture`); None: as the method's card says
    texture: bool | None = None


@dataclass
class InpaintResult:
    volume: Volume  # the filled image (the frame filled, for a 4D series)
    #: float32 (z, y, x): filled minus original, 0 outside the region
    difference: np.ndarray
    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_region(mask: np.ndarray, shape) -> np.ndarray:
    """The region as a boolean (z, y, x) array on the image's grid, or :class:`InpaintError` saying why not."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise InpaintError(f"the region is {mask.shape[::-1]} voxels but the image is {tuple(shape)[::-1]}: "
                           "it must lie on the image's grid")
    mask = mask != 0
    if not mask.any():
        raise InpaintError("the region is empty: paint or choose the part of the image to fill")
    share = float(mask.mean())
    if share > MAX_SHARE:
        raise InpaintError(f"the region covers {100 * share:.0f} % of the image; inpainting needs most of the image "
                           f"around it (at most {100 * MAX_SHARE:.0f} %)")
    return mask


def canonical_code(volume: Volume) -> str:
    """The orientation the model fills a volume in: its acquisition plane kept (the slice axis stays the
    slice axis), the in-plane axes and the slice direction as a radiologist displays them (axial: x to
    the left, y posterior, z superior; coronal: x left, y inferior, z posterior; sagittal: x posterior,
    y inferior, z left), so that a volume stored with its axes flipped or swapped in-plane gives the
    same fill."""
    slice_axis = volume.orientation[2]
    return "LPS" if slice_axis in "SI" else "LIP" if slice_axis in "AP" else "PIL"


def _crop_box(mask: np.ndarray, margin: int, multiple: int) -> tuple[slice, slice]:
    """The in-plane box of the region over all slices, widened by ``margin`` and to a multiple of ``multiple``."""
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    box = []
    for hit, n in ((rows, mask.shape[1]), (cols, mask.shape[2])):
        lo, hi = max(0, int(hit[0]) - margin), min(n, int(hit[-1]) + 1 + margin)
        extra = (-(hi - lo)) % multiple
        grow_hi = min(extra, n - hi)
        lo, hi = max(0, lo - (extra - grow_hi)), hi + grow_hi
        box.append(slice(lo, hi))
    return box[0], box[1]


def _fill_slices(net, filled: np.ndarray, mask: np.ndarray, zs: list[int], context: int, multiple: int,
                 device: str) -> np.ndarray:
    """The network's fill (scaled intensities) of slices ``zs`` of the cropped arrays (``filled``: their coarse
    fill), (len(zs), h, w)."""
    depth = filled.shape[0]
    idx = [neighbours(z, depth, context) for z in zs]
    slices = torch.from_numpy(np.stack([filled[i] for i in idx])).float()
    masks = torch.from_numpy(np.stack([mask[i] for i in idx]).astype(np.float32))
    x, (h, w) = padded_input(slices, masks, multiple)
    with torch.inference_mode():
        out = net(x.to(device)).float()[..., :h, :w].cpu()
    return out[:, 0].numpy()


def _network_fill(net, fill: np.ndarray, filled_in: np.ndarray, sub_mask: np.ndarray, zs: list[int],
                  shape: tuple[int, int, int], device: str, notes: list[str]):
    """Sub-job: the network's fill of slices ``zs`` written into ``fill`` inside the region, a few slices at
    once (``shape``: context, size multiple, batch); on the CPU after running out of GPU memory. Returns
    (net, device): where it ended up."""
    context, multiple, batch = shape
    for k in range(0, len(zs), max(1, batch)):
        part = zs[k:k + batch]
        yield Progress("inpainting", k, len(zs), f"slice {part[0] + 1}")
        try:
            out = _fill_slices(net, filled_in, sub_mask, part, context, multiple, device)
        except Exception as exc:
            if device == "cpu" or not memory.is_out_of_memory(exc):
                raise
            notes.append("out of GPU memory: ran on the CPU")
            net, device = net.to("cpu"), "cpu"
            memory.release_gpu_memory()
            out = _fill_slices(net, filled_in, sub_mask, part, context, multiple, device)
        for z, plane in zip(part, out, strict=True):
            fill[z][sub_mask[z]] = plane[sub_mask[z]]
    return net, device


def inpaint_job(package: ModelPackage, volume: Volume, region: np.ndarray, options: InpaintOptions | None = None):
    """Job: fill ``region`` (a mask on ``volume``'s grid) with ``package`` (or the built-in fill,
    :mod:`.builtin`); returns an :class:`InpaintResult`."""
    options = options or InpaintOptions()
    t0 = time.perf_counter()
    if package.card.get("task") != "inpainting":
        raise PackageError(f"{package.id} is a {package.card.get('task')} model, not an inpainting one")
    notes = [f"warning: {w}" for w in package.suitability(volume)]
    frame = volume
    if volume.is_4d:
        frame = volume.frame(options.frame)
        notes.append(f"a 4D series: frame {options.frame + 1} of {volume.array.shape[0]} filled")
    mask = check_region(region, frame.shape)
    stored = frame.orientation
    code = canonical_code(frame)
    if code != stored:  # (exact: axes permuted and flipped, no interpolation)
        mask = Volume(mask.view(np.uint8), frame.affine, None, {}).reoriented(code).array.astype(bool)
        frame = frame.reoriented(code)
    yield Progress("loading the model", 0, 0, package.name)
    builtin = getattr(package, "builtin", False)
    device = "cpu" if builtin else pick_device(options.device)
    net = None if builtin else package.network(device=device)
    spec = package.card.get("input") or {}
    texture = options.texture if options.texture is not None else spec.get("texture") == "neighbour"
    context, multiple = int(spec.get("context", 1)), int(spec.get("multiple", 8))
    coarse = spec.get("coarse", "push_pull")
    if coarse not in KNOWN_FILLS:
        raise PackageError(f"{package.id}: its card asks for a coarse fill medvision does not know ({coarse!r}; "
                           f"known: {', '.join(KNOWN_FILLS)})")
    seconds = {"load": time.perf_counter() - t0}
    original = frame.array
    low, high = intensity_range(original, mask)
    rows, cols = _crop_box(mask, MARGIN, multiple)
    scaled = ((original[:, rows, cols].astype(np.float32) - low) / (high - low))
    sub_mask = mask[:, rows, cols]
    zs = [int(z) for z in np.flatnonzero(sub_mask.any(axis=(1, 2)))]
    # each slice's hole filled once (a slice is the neighbour of up to 2 * context others)
    yield Progress("inpainting", 0, len(zs), "the smooth fill")
    filled_in = coarse_fill(scaled, sub_mask, coarse, frame.spacing[::-1])
    t1 = time.perf_counter()
    # the fill of the crop (scaled intensities): the network's, or the smooth fill itself without one
    fill = filled_in if net is None else filled_in.copy()  # (the network reads the smooth fill as it is)
    if net is not None:
        net, device = yield from _network_fill(net, fill, filled_in, sub_mask, zs, (context, multiple, options.batch),
                                               device, notes)
    if texture:
        yield Progress("inpainting", len(zs), len(zs), "the image's grain")
        if add_neighbour_texture(fill, sub_mask):
            notes.append("part of the region is too wide for its image to take the grain from around it: "
                         "left smooth there")
    result = original.copy()
    view = result[:, rows, cols]  # (a view: written in place)
    view[sub_mask] = in_dtype(fill[sub_mask] * (high - low) + low, original.dtype)
    seconds["inpaint"] = time.perf_counter() - t1
    difference = np.zeros(original.shape, np.float32)
    difference[mask] = result[mask].astype(np.float32) - original[mask].astype(np.float32)
    metadata = dict(frame.metadata)
    metadata["derived"] = {"kind": "inpainted", "model": package.id, "version": package.version,
                           "voxels": int(mask.sum()), "grain": bool(texture)}
    filled = Volume(result, frame.affine, frame.frame_of_reference_uid, metadata)
    if code != stored:  # back to the grid the image is stored on
        filled = filled.reoriented(stored)
        difference = Volume(difference, frame.affine, None, {}).reoriented(stored).array
        filled = Volume(np.ascontiguousarray(filled.array), filled.affine, filled.frame_of_reference_uid,
                        filled.metadata)
    seconds["total"] = time.perf_counter() - t0
    if device == "cuda" and net is not None:
        net.to("cpu")
        memory.release_gpu_memory()
    yield Progress("inpainting", len(zs), len(zs))
    return InpaintResult(filled, np.ascontiguousarray(difference), device, seconds, notes)


def in_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Filled values in the image's own dtype: rounded and clipped to its range for integers."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def anomaly_job(package: ModelPackage, volume: Volume, region: np.ndarray | None = None, *, hole_mm: float = 12.0,
                options: InpaintOptions | None = None):
    """Job: where the image is not what the model expects. Square holes ``hole_mm`` wide on a grid twice as
    wide are filled in four passes (the grid shifted by half a period each way), so every voxel is filled
    once from what surrounds it; the map is |original - filled| in units of the image's intensity range (the
    0.5-99.5 percentiles), float32 (z, y, x), 0 outside ``region`` (default: the body, voxels above the
    range's lowest tenth). Returns (map, notes)."""
    options = options or InpaintOptions()
    frame = volume.frame(options.frame) if volume.is_4d else volume
    array = frame.array
    low, high = intensity_range(array)
    if region is None:
        region = array > low + 0.1 * (high - low)
    region = np.asarray(region) != 0
    if region.shape != tuple(frame.shape) or not region.any():
        raise InpaintError("the region to map is empty or not on the image's grid")
    spacing_yx = frame.spacing[1::-1]  # (y, x) in mm
    step = [max(1, int(round(hole_mm / s))) for s in spacing_yx]
    rows = (np.arange(frame.shape[1]) // step[0]) % 2
    cols = (np.arange(frame.shape[2]) // step[1]) % 2
    total = np.zeros(frame.shape, np.float32)
    notes: list[str] = []
    single = Volume(array, frame.affine, frame.frame_of_reference_uid, dict(frame.metadata))
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        holes = ((rows == dy)[:, None] & (cols == dx)[None, :])[None] & region
        if not holes.any():
            continue
        yield Progress("anomaly map", k, 4, f"pass {k + 1} of 4")
        # (no grain: the map measures the distance to what the model expects, not to one noisy draw)
        result = yield from inpaint_job(package, single, holes, dataclasses.replace(options, frame=0, texture=False))
        total[holes] = np.abs(result.difference[holes]) / (high - low)
        notes += [n for n in result.notes if n not in notes]
    total[~region] = 0
    return total, notes
