"""brainchop's models run as brainchop runs them: conform to 256^3 at 1 mm, the pre-model's brain
mask where the card names one, quantile normalisation and crop, MeshNet, largest component, back
onto the image by nearest neighbour (:mod:`medvision.ai.networks.brainchop_pipeline`)."""

from __future__ import annotations

import logging
import time

import numpy as np

from ...core.jobs import Progress
from ...core.volume import Volume
from .. import memory
from ..options import InferenceOptions
from ..package import ModelPackage
from .invert import card_labels
from .run import watched

__all__ = ["run_brainchop"]

log = logging.getLogger(__name__)


def run_brainchop(package: ModelPackage, net, source: Volume, device: str, options: InferenceOptions,
                  notes: list[str], seconds: dict[str, float]):
    """Job steps; returns (labels, the chosen label's probability) on ``source``'s grid. After a
    CUDA out-of-memory error the whole run goes again on the CPU."""
    from ..networks import brainchop_pipeline as bp

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
                mask = yield from watched(pre, lambda a=attempt: bp.pre_mask_of(conformed, card, pre, a))
            x, box, pad = bp.prepare_input(conformed, card, mask, attempt)
            net.to(attempt)
            labels, prob = yield from watched(net, lambda xx=x: bp.predict(net, xx))
            labels, prob = labels.cpu().numpy(), prob.cpu().numpy()
            break
        except Exception as exc:
            if attempt == "cpu" or not memory.is_out_of_memory(exc):
                raise
            log.warning("CUDA out of memory (%s); running on the CPU", exc)
            notes.append("out of GPU memory: ran on the CPU")
            net.to("cpu")
            if pre is not None:
                pre.to("cpu")
            memory.release_gpu_memory()
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
        memory.release_gpu_memory()
    return card_labels(card, array, source), chosen
