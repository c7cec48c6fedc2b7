"""Explaining a model's labels on a volume, as a job: the input prepared exactly as for inference, the
region turned into the network's grid, the map made there and brought back onto the image's exact grid.

The region is a label of the model's own proposal (by name), a box on the image, or both (the label
inside the box). Its score is the mean centred logit of that label's class there (:mod:`.methods`).
Models the sanity check can run on get it on request (:mod:`.sanity`). Not (yet) explained: brainchop's
own pipeline, and models without gradients (TorchScript, ONNX), which are said to be so."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.jobs import Progress
from ...core.volume import Volume
from ..inference.prepare import load_networks, prepare_input, source_of
from ..options import InferenceOptions
from .methods import (
    LogitsOf,
    RegionScore,
    blurred,
    default_layer,
    gradcam,
    integrated_gradients,
    occlusion,
    scale_blind,
)
from .sanity import RandomisationCheck, randomisation_check

__all__ = ["ExplainOptions", "ExplainResult", "explain_job", "METHODS", "ExplainError"]

METHODS = ("gradcam", "ig", "occlusion")


class ExplainError(ValueError):
    """A region, a model or a method that cannot be explained, said in one sentence."""


@dataclass
class ExplainOptions:
    method: str = "gradcam"
    label: str | None = None  # a label of the model's proposal, by name
    box: tuple[slice, slice, slice] | None = None  # (z, y, x) on the image
    layer: str | None = None  # Grad-CAM's layer (default: the card's, else the deepest decoder layer)
    sanity: bool = False
    device: str = "auto"
    frame: int = 0
    ig_tolerance: float = 0.05
    ig_max_steps: int = 64
    #: "auto": the image blurred (sigma 2 voxels) for a network that normalises each image by its own
    #: statistics (instance or group norm), else "constant"; "constant": air for CT, 0 after normalisation
    ig_baseline: str = "auto"
    occlusion_patch: int = 0  # voxels of the network's grid (0: an eighth of the region's extent, 4 at least)


@dataclass
class ExplainResult:
    map: np.ndarray  # float32 (z, y, x) on the frame's grid, 0 where the network did not look
    method: str
    label: str
    region_voxels: int  # on the network's grid
    layer: str | None = None
    check: RandomisationCheck | None = None
    completeness_error: float | None = None
    steps: int | None = None
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _check_model(package, method: str) -> None:
    card = package.card
    if card.get("task") not in (None, "segmentation"):
        raise ExplainError(f"{package.id} is an {card.get('task')} model: explanations are for models that label")
    if (card.get("inference") or {}).get("mode") == "brainchop":
        raise ExplainError(f"{package.id} runs brainchop's own pipeline, which medvision does not explain yet")
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}: one of {', '.join(METHODS)}")
    kind = (card.get("architecture") or {}).get("name")
    if kind in ("torchscript", "onnx") and method != "occlusion":
        raise ExplainError(f"{package.id} is a {kind} model: it gives no gradients to explain with; only occlusion "
                           "works on it (--method occlusion)")


def _label_channel(card: dict, name: str | None, output: torch.Tensor, region_box: torch.Tensor | None
                   ) -> tuple[str, int, torch.Tensor]:
    """(label name, output channel, the label's voxels in the model's proposal) for ``name`` (or, with only a
    box, the label the proposal holds most in it)."""
    spec = card.get("output") or {}
    labels = {int(la["value"]): str(la.get("name", la["value"])) for la in card.get("labels") or []}
    if "threshold" in spec:
        channel = int(spec.get("channel", 1 if output.shape[1] > 1 else 0))
        proposal = (output[0, channel] > float(spec["threshold"])).to(torch.uint8)
        value_channel = {v: channel for v in labels}
    else:
        proposal = output[0].argmax(0)
        value_channel = {v: v for v in labels}
    if name is None:
        if region_box is None:
            raise ExplainError("give the region to explain: a label of the proposal, a box, or both")
        inside = proposal[region_box]
        counts = torch.bincount(inside.flatten().long(), minlength=max(labels, default=0) + 1)
        counts[0] = 0
        if int(counts.sum()) == 0:
            raise ExplainError("the model labels no voxel inside the box: give a label (--label) to explain there")
        value = int(counts.argmax())
    else:
        named = [v for v, n in labels.items() if n.lower() == name.lower()]
        if not named:
            raise ExplainError(f"the model has no label {name!r} (its labels: {', '.join(labels.values())})")
        value = named[0]
    return labels.get(value, str(value)), value_channel.get(value, value), proposal == value


def explain_job(package, volume: Volume, options: ExplainOptions | None = None):
    """Job: the map of ``options.method`` for the region; returns an :class:`ExplainResult`."""
    options = options or ExplainOptions()
    _check_model(package, options.method)
    names = [str(la.get("name", la["value"])) for la in package.card.get("labels") or []]
    if options.label is not None and options.label.lower() not in (n.lower() for n in names):
        raise ExplainError(f"the model has no label {options.label!r} (its labels: {', '.join(names)})")
    if options.label is None and options.box is None:
        raise ExplainError("give the region to explain: a label of the proposal, a box, or both")
    t0 = time.perf_counter()
    notes: list[str] = []
    if volume.is_4d:
        notes.append(f"a 4D series: frame {options.frame + 1} of {volume.array.shape[0]} explained")
    loaded = yield from load_networks(package, InferenceOptions(device=options.device, frame=options.frame))
    frame, source = source_of(volume, InferenceOptions(frame=options.frame))
    prep = yield from prepare_input(package.card, source, loaded, notes)
    device, net = loaded.device, loaded.net.to(loaded.device).eval()
    x = prep.tensor.to(device).float()
    box_mask = None
    if options.box is not None:
        mask = np.zeros(frame.shape[-3:], bool)
        mask[options.box] = True
        if not mask.any():
            raise ExplainError("the box lies outside the image")
        box_mask = prep.to_model(mask).to(device)
        if not box_mask.any():
            raise ExplainError("the box lies outside the part of the image the model looks at")
    yield Progress("explaining", 0, 0, "the model's proposal")
    with torch.no_grad():
        output = net(x).float()
    name, channel, region = _label_channel(package.card, options.label, output, box_mask)
    if box_mask is not None and options.label is not None:
        region = region & box_mask
    elif box_mask is not None:
        region = box_mask
    if not region.any():
        raise ExplainError(f"the region is empty: the model labels no voxel as {name!r} there")
    probabilities = bool((package.card.get("output") or {}).get("in_network"))
    if probabilities and callable(getattr(net, "logits", None)):  # the values before its softmax (deepbet)
        net, probabilities = LogitsOf(net), False
    elif probabilities:
        notes.append("the network gives probabilities only: its scores are their centred logarithms, whose "
                     "gradients vanish where it is sure")
    score = RegionScore(channel, region, probabilities)
    result = ExplainResult(np.zeros(0, np.float32), options.method, name, int(region.sum()), notes=notes)
    yield Progress("explaining", 0, 0, f"{options.method} for {name!r}")
    made = _make(net, x, score, options, result, package.card, region)
    if options.sanity:
        yield Progress("explaining", 0, 0, "the randomisation check")
        result.check = randomisation_check(net, lambda n: _make(n, x, score, options, None, package.card, region),
                                           made)
    if options.method == "gradcam" and float(made.max()) > 0:  # (its scale depends on the layer: the peak is 1)
        made = made / made.max()
    result.map = prep.to_grid(made[None].cpu())[0]
    result.seconds["total"] = time.perf_counter() - t0
    return result


def _make(net, x: torch.Tensor, score: RegionScore, options: ExplainOptions, result: ExplainResult | None,
          card: dict, region: torch.Tensor) -> torch.Tensor:
    """The map of ``options.method`` on the network's grid ((X, Y, Z) float32); ``result`` (the real run,
    not a sanity copy) gets the method's own figures."""
    if options.method == "gradcam":
        layer = options.layer or (card.get("explain") or {}).get("layer")
        layer = (f"net.{layer}" if isinstance(net, LogitsOf) else layer) if layer else default_layer(net, x)
        if result is not None:
            result.layer = layer.removeprefix("net.") if isinstance(net, LogitsOf) else layer
        return gradcam(net, x, score, layer)
    baseline_value = float(x.min()) if str(card.get("modality") or "").upper() == "CT" else 0.0
    if options.method == "ig":
        blur = options.ig_baseline == "blur" or (options.ig_baseline == "auto" and scale_blind(net))
        baseline = blurred(x, 2.0) if blur else torch.full_like(x, baseline_value)
        if result is not None and blur:
            result.notes.append("integrated gradients from the image blurred (2 voxels): the network normalises "
                                "each image by its own statistics, so a constant baseline would leave the whole "
                                "change at the path's very start" if options.ig_baseline == "auto" else
                                "integrated gradients from the image blurred (2 voxels)")
        ig = integrated_gradients(net, x, baseline, score, options.ig_tolerance, max_steps=options.ig_max_steps)
        if result is not None:
            result.completeness_error, result.steps = ig.completeness_error, ig.steps
            if ig.completeness_error > options.ig_tolerance:
                result.notes.append(f"integrated gradients: the attributions sum to the score's change within "
                                    f"{100 * ig.completeness_error:.1f} % after {ig.steps} steps (asked: "
                                    f"{100 * options.ig_tolerance:.0f} %)")
        return ig.attributions
    hit = torch.nonzero(region)
    lo, hi = hit.min(0).values, hit.max(0).values + 1
    patch = options.occlusion_patch or max(4, int((hi - lo).max()) // 8)
    grow = [(max(0, int(a) - 2 * patch), min(n, int(b) + 2 * patch)) for a, b, n in zip(lo, hi, x.shape[2:],
                                                                                      strict=True)]
    box = tuple(slice(a, b) for a, b in grow)
    if result is not None:
        result.steps = int(np.prod([-(-(b - a) // patch) for a, b in grow]))
    return occlusion(net, x, score, (patch,) * 3, box, baseline_value)  # type: ignore[arg-type]
