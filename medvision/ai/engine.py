"""Inference: a model package on a volume, as a job (progress, cancel), on CUDA or the CPU.

``infer_job(package, volume, options)`` prepares the input as the card says
(:mod:`medvision.ai.preprocess`), runs the network whole or by sliding windows (monai's
``sliding_window_inference``, Gaussian blending), optionally with test-time augmentation (the
identity and a flip along each axis, probabilities averaged) and a voxel-wise uncertainty map,
maps the probabilities back onto the volume's exact grid and post-processes the label map.

The network runs on a helper thread while the job yields progress records every 0.1 s: a cancel
(closing the job) stops it at the next layer. On CUDA it runs under autocast (float16) with cuDNN
autotuning; a CUDA out-of-memory error falls back step by step (one window at a time, windows on
the GPU but stitching on the CPU, then the CPU), releasing GPU memory before each step and
saying what it did.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.cpus import cpu_threads
from ..core.jobs import Cancelled, Progress
from ..core.labels import LabelMap, LabelTable
from ..core.volume import Volume
from .memory import is_out_of_memory, release_gpu_memory
from .options import InferenceOptions
from .package import ModelPackage
from .plausibility import implausibilities
from .preprocess import fill_holes, largest_component, prepare

__all__ = ["InferenceOptions", "InferenceResult", "infer_job", "Attempt", "fallback_plan", "pick_device"]

log = logging.getLogger(__name__)


@dataclass
class InferenceResult:
    labels: LabelMap
    #: float32 (z, y, x): the probability of the label chosen at each voxel; None for a one-structure
    #: (threshold) model run without uncertainty, whose mask is thresholded in the model's frame
    probability: np.ndarray | None
    uncertainty: np.ndarray | None
    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: why the result cannot be right (volumes outside the card's ranges, a CT given to an MR model)
    implausible: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Attempt:
    """One way to run the network: where the windows run, where they are stitched, how many at once."""

    device: str
    sw_device: str
    sw_batch_size: int
    why: str = ""


def pick_device(requested: str = "auto") -> str:
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise RuntimeError("no CUDA GPU is available on this machine (run with --device cpu)")
    return "cpu"


def fallback_plan(device: str, sw_batch_size: int, sliding: bool) -> list[Attempt]:
    """The attempts tried in order after CUDA out-of-memory errors."""
    if device == "cpu":
        return [Attempt("cpu", "cpu", sw_batch_size)]
    plan = [Attempt("cuda", "cuda", sw_batch_size)]
    if sliding and sw_batch_size > 1:
        plan.append(Attempt("cuda", "cuda", 1, "one window at a time"))
    if sliding:
        plan.append(Attempt("cpu", "cuda", 1, "windows on the GPU, stitching in CPU memory"))
    plan.append(Attempt("cpu", "cpu", sw_batch_size, "on the CPU"))
    return plan


class _Stop(Exception):
    pass


class _Watch:
    """Counts the network's layers as they run (progress) and stops it when asked (cancel)."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.stop = threading.Event()
        self.calls = 0
        self._hooks = [m.register_forward_pre_hook(self._hook) for m in net.modules() if not list(m.children())]

    def _hook(self, _module, _inputs) -> None:
        if self.stop.is_set():
            raise _Stop()
        self.calls += 1

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def _run_attempt(net, card: dict, x: torch.Tensor, attempt: Attempt, tta: bool) -> list[torch.Tensor]:
    """Probabilities (C, X, Y, Z) on the CPU, one per augmentation pass."""
    inference = card.get("inference") or {}
    sliding = inference.get("mode") == "sliding_window" and inference.get("sliding_window")
    output = card.get("output") or {}
    dev = torch.device(attempt.device if attempt.sw_device == "cpu" else attempt.sw_device)
    net.to(dev)
    amp = dev.type == "cuda"

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = net(batch.to(dev))
        out = out.float()
        act = output.get("activation")
        if not output.get("in_network"):
            out = torch.softmax(out, 1) if act == "softmax" else torch.sigmoid(out) if act == "sigmoid" else out
        return out

    flips = [()] + ([(2,), (3,), (4,)] if tta else [])
    results = []
    with torch.inference_mode():
        for axes in flips:
            inp = torch.flip(x, axes) if axes else x
            if sliding:
                from monai.inferers import sliding_window_inference

                sw = inference["sliding_window"]
                out = sliding_window_inference(
                    inp, tuple(sw["roi_size"]), attempt.sw_batch_size, predictor,
                    overlap=float(sw.get("overlap", 0.5)), mode=sw.get("blend", "gaussian"),
                    sw_device=torch.device(attempt.sw_device), device=torch.device(attempt.device))
            else:
                out = predictor(inp.to(dev))
            out = torch.flip(out, axes) if axes else out
            results.append(out[0].float().cpu())
    return results


def infer_job(package: ModelPackage, volume: Volume, options: InferenceOptions | None = None):  # noqa: C901 - one
    # pipeline read top to bottom (prepare, run, invert, post-process); its stages as modules are still to do
    """Job: run ``package`` on ``volume``; returns an :class:`InferenceResult`."""
    options = options or InferenceOptions()
    card = package.card
    notes = [f"warning: {w}" for w in package.suitability(volume)]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    yield Progress("loading the model", 0, 0, package.name)
    device = pick_device(options.device)
    if device == "cpu":
        torch.set_num_threads(options.threads or cpu_threads())
    else:
        torch.backends.cudnn.benchmark = True
    net = package.network()
    localizer = package.network("localizer") if "localizer" in card else None
    seconds["load"] = time.perf_counter() - t0

    frame = volume.frame(options.frame) if volume.is_4d else volume
    source = frame
    if options.box is not None:
        source = _sub_volume(frame, options.box)
    if (card.get("inference") or {}).get("mode") == "brainchop":
        labels, chosen = yield from _brainchop(package, net, source, device, options, notes, seconds)
        if options.box is not None:
            labels, chosen, _ = _into_full(frame, options.box, labels, chosen, None)
        seconds["total"] = time.perf_counter() - t0
        return InferenceResult(labels, chosen, None, device, seconds, notes,
                               implausibilities(card, labels, frame, whole=options.box is None))
    t1 = time.perf_counter()
    yield Progress("preparing the image", 0, 0)
    prep_device = device if localizer is not None else "cpu"
    try:
        if localizer is not None:
            localizer.to(prep_device)
        prep = prepare(card, source, localizer, prep_device)
    except torch.cuda.OutOfMemoryError:
        release_gpu_memory()
        notes.append("out of GPU memory while preparing: prepared on the CPU")
        prep = prepare(card, source, localizer.to("cpu") if localizer is not None else None, "cpu")
    seconds["prepare"] = time.perf_counter() - t1

    inference = card.get("inference") or {}
    sliding = bool(inference.get("mode") == "sliding_window" and inference.get("sliding_window"))
    sw_batch = options.sw_batch_size or int((inference.get("sliding_window") or {}).get("batch_size", 2))
    plan = fallback_plan(device, sw_batch, sliding)
    t2 = time.perf_counter()
    passes = None
    used = plan[-1]
    for k, attempt in enumerate(plan):
        if attempt.why:
            notes.append(f"out of GPU memory: retried {attempt.why}")
        try:
            passes = yield from _watched(net, lambda a=attempt: _run_attempt(net, card, prep.tensor, a, options.tta))
            used = attempt
            break
        except Exception as exc:
            if not is_out_of_memory(exc) or k == len(plan) - 1:
                raise
            log.warning("CUDA out of memory (%s); falling back", exc)
            net.to("cpu")
            release_gpu_memory()
    seconds["inference"] = time.perf_counter() - t2
    yield Progress("post-processing", 0, 0)
    t3 = time.perf_counter()
    mean = torch.stack(passes).mean(0) if len(passes) > 1 else passes[0]
    output = card.get("output") or {}
    if "threshold" in output and not options.uncertainty:  # one structure: only its channel goes back
        channel = int(output.get("channel", 1 if mean.shape[0] > 1 else 0))
        if prep.nearest_mapping():  # threshold in the model's frame, map the mask back (exact, 4x less data)
            mask = prep.to_grid((mean[channel:channel + 1] > float(output["threshold"])).to(torch.uint8))[0]
            labels, chosen = _threshold_map(card, mask, source), None
        else:
            probs = prep.to_grid(mean[channel:channel + 1])
            labels, chosen = _label_map(dict(card, output=dict(output, channel=0)), probs, source)
    elif prep.nearest_mapping() and not options.uncertainty:  # the class chosen in the model's frame
        best, index = mean.max(0, keepdim=True)  # first of equal maxima, as numpy's argmax
        few = mean.shape[0] <= 256
        array = prep.to_grid(index.to(torch.uint8) if few else index)[0]
        labels = _card_labels(card, array if few else array.astype(np.uint16), source)
        chosen = prep.to_grid(best)[0]
    else:
        probs = prep.to_grid(mean)
        labels, chosen = _label_map(card, probs, source)
    uncertainty = None
    if options.uncertainty:
        if len(passes) > 1:
            var = torch.stack(passes).var(0).mean(0, keepdim=True)
            uncertainty = prep.to_grid(var)[0]
        else:
            p = np.clip(probs, 1e-6, 1.0)
            uncertainty = (-(p * np.log(p)).sum(0) / np.log(max(p.shape[0], 2))).astype(np.float32)
    _postprocess(card, labels, prep)
    if options.box is not None:
        labels, chosen, uncertainty = _into_full(frame, options.box, labels, chosen, uncertainty)
    seconds["postprocess"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    if used.device == "cpu" and device == "cuda":
        notes.append("ran on the CPU after running out of GPU memory")
    net.to("cpu")
    if device == "cuda":
        release_gpu_memory()
    return InferenceResult(labels, chosen, uncertainty, used.device if used.sw_device == used.device else
                           f"{used.sw_device} windows, {used.device} stitching", seconds, notes,
                           implausibilities(card, labels, frame, whole=options.box is None))


def _brainchop(package: ModelPackage, net, source: Volume, device: str, options: InferenceOptions, notes: list[str],
               seconds: dict[str, float]):
    """Job steps of a model run as brainchop runs it (conform, pre-model, crop, MeshNet, largest
    component, back by nearest neighbour: :mod:`medvision.ai.networks.brainchop_pipeline`)."""
    from .networks import brainchop_pipeline as bp

    card = package.card
    if options.tta or options.uncertainty:
        notes.append("test-time augmentation and uncertainty are not offered for brainchop's models: plain run")
    pre = package.network("pre_model") if "pre_model" in card else None
    t1 = time.perf_counter()
    yield Progress("preparing the image", 0, 0, "conforming to 256^3, 1 mm")
    conformed = bp.conform(source)
    seconds["prepare"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    for attempt in (device, "cpu") if device != "cpu" else ("cpu",):
        try:
            mask = None
            if pre is not None:
                yield Progress("finding the brain", 0, 0, card["pre_model"].get("source", "pre-model"))
                mask = yield from _watched(pre, lambda a=attempt: bp.pre_mask_of(conformed, card, pre, a))
            x, box, pad = bp.prepare_input(conformed, card, mask, attempt)
            net.to(attempt)
            labels, prob = yield from _watched(net, lambda xx=x: bp.predict(net, xx))
            labels, prob = labels.cpu().numpy(), prob.cpu().numpy()
            break
        except Exception as exc:
            if attempt == "cpu" or not is_out_of_memory(exc):
                raise
            log.warning("CUDA out of memory (%s); running on the CPU", exc)
            notes.append("out of GPU memory: ran on the CPU")
            net.to("cpu")
            if pre is not None:
                pre.to("cpu")
            release_gpu_memory()
    seconds["inference"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    yield Progress("post-processing", 0, 0)
    cube = bp.finish_cube(labels, box, pad, card)
    chosen_cube = bp.to_cube(prob, box, pad) * (cube != 0)
    array = bp.to_volume_grid(cube, conformed.affine, source)
    chosen = bp.to_volume_grid(chosen_cube, conformed.affine, source)
    table_values = [int(la["value"]) for la in card.get("labels") or []]
    if array.dtype != np.uint8 and max(table_values, default=0) < 256:
        array = array.astype(np.uint8)
    seconds["postprocess"] = time.perf_counter() - t3
    net.to("cpu")
    if device == "cuda":
        release_gpu_memory()
    return _card_labels(card, array, source), chosen


def _watched(net, compute):
    """Run ``compute()`` on a helper thread, yielding progress every 0.1 s; closing the job stops it."""
    watch = _Watch(net)
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = compute()
        except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="inference", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
            yield Progress("inference", 0, 0, f"{watch.calls} layers run")
    except GeneratorExit:
        watch.stop.set()
        worker.join()
        raise
    finally:
        watch.remove()
    if isinstance(box.get("error"), _Stop):
        raise Cancelled("inference cancelled")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _sub_volume(volume: Volume, box) -> Volume:
    z, y, x = box
    origin = volume.index_to_world([x.start, y.start, z.start])
    affine = volume.affine.copy()
    affine[:3, 3] = origin
    return Volume(np.ascontiguousarray(volume.array[box]), affine, volume.frame_of_reference_uid,
                  dict(volume.metadata))


def _into_full(frame: Volume, box, labels: LabelMap, chosen, uncertainty):
    full = np.zeros(frame.shape[-3:], labels.array.dtype)
    full[box] = labels.array
    prob = None
    if chosen is not None:
        prob = np.zeros(frame.shape[-3:], np.float32)
        prob[box] = chosen
    unc = None
    if uncertainty is not None:
        unc = np.zeros(frame.shape[-3:], np.float32)
        unc[box] = uncertainty
    return LabelMap(full, frame.affine, labels.table, name=labels.name), prob, unc


def _card_labels(card: dict, array: np.ndarray, source: Volume, table: LabelTable | None = None) -> LabelMap:
    """``array`` on the source grid as a label map with the card's label table."""
    table = table if table is not None else LabelTable.from_json(json.dumps(card.get("labels") or []))
    return LabelMap(array, source.affine, table, name=str(card.get("id")))


def _threshold_map(card: dict, mask: np.ndarray, source: Volume) -> LabelMap:
    """The label map of a one-structure model from its mask (uint8 0/1) on the source grid."""
    table = LabelTable.from_json(json.dumps(card.get("labels") or []))
    value = table.values()[0] if len(table) else 1
    return _card_labels(card, mask if value == 1 else mask * np.uint8(value), source, table)


def _label_map(card: dict, probs: np.ndarray, source: Volume) -> tuple[LabelMap, np.ndarray]:
    output = card.get("output") or {}
    if "threshold" in output:  # one structure: a channel against a threshold
        p = probs[int(output.get("channel", 1 if probs.shape[0] > 1 else 0))]
        return _threshold_map(card, (p > float(output["threshold"])).view(np.uint8), source), p.astype(np.float32)
    array = probs.argmax(0)
    array = array.astype(np.uint8 if array.max(initial=0) < 256 else np.uint16)
    return _card_labels(card, array, source), probs.max(0).astype(np.float32)


def _padded_bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The box of ``mask``'s voxels widened by one voxel each side (within the array); None if empty."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(max(0, int(hit[0]) - 1), min(mask.shape[axis], int(hit[-1]) + 2)))
    return tuple(box)


def _postprocess(card: dict, labels: LabelMap, prep) -> None:
    post = card.get("postprocessing") or {}
    if not (post.get("largest_component") or post.get("fill_holes")):
        return
    region = prep.region_on_source()
    for value in labels.table.values():
        sub = labels.array[region]
        mask = sub == value
        box = _padded_bbox(mask)
        if box is None:
            continue
        # on the label's bounding box plus one voxel: the same components and holes, less to scan
        sub, mask = sub[box], mask[box]
        if post.get("largest_component"):
            mask = largest_component(mask)
        if post.get("fill_holes"):
            mask = fill_holes(mask)
        sub[(sub == value) & ~mask] = 0
        sub[mask & (sub == 0)] = value


