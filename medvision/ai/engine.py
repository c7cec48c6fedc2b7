"""Inference: a model package on a volume, as a job (progress, cancel), on CUDA or the CPU.

``infer_job(package, volume, options)`` runs the stages of :mod:`medvision.ai.inference` in order:
load the networks on their device; take the frame (and box) the model runs on; prepare the input as
the card says (:mod:`medvision.ai.preprocess`); run the network whole or by sliding windows (monai's
``sliding_window_inference``, Gaussian blending), optionally with test-time augmentation (the
identity and a flip along each axis, probabilities averaged); map the output back onto the volume's
exact grid (labels, the chosen label's probability, an optional voxel-wise uncertainty map);
post-process the label map; check its plausibility. brainchop's models take their own pipeline
(:mod:`medvision.ai.inference.brainchop`).

The network runs on a helper thread while the job yields progress records every 0.1 s: a cancel
(closing the job) stops it at the next layer. On CUDA it runs under autocast (float16) with cuDNN
autotuning; a CUDA out-of-memory error falls back step by step (one window at a time, windows on
the GPU but stitching on the CPU, then the CPU), releasing GPU memory before each step and
saying what it did.
"""

from __future__ import annotations

import time

from ..core.jobs import Progress
from ..core.volume import Volume
from . import memory
from .inference.brainchop import run_brainchop
from .inference.devices import Attempt, fallback_plan, pick_device
from .inference.invert import into_full, invert
from .inference.postprocess import postprocess
from .inference.prepare import load_networks, prepare_input, source_of
from .inference.result import InferenceResult
from .inference.run import run_network
from .options import InferenceOptions
from .package import ModelPackage, PackageError
from .plausibility import implausibilities

__all__ = ["InferenceOptions", "InferenceResult", "infer_job", "Attempt", "fallback_plan", "pick_device"]


def infer_job(package: ModelPackage, volume: Volume, options: InferenceOptions | None = None):
    """Job: run ``package`` on ``volume``; returns an :class:`InferenceResult`."""
    options = options or InferenceOptions()
    card = package.card
    if card.get("task") == "inpainting":
        raise PackageError(f"{package.id} is an inpainting model: it fills a region of the image "
                           f"(medvision inpaint --model {package.id} IMAGE --mask MASK -o OUT)")
    notes = [f"warning: {w}" for w in package.suitability(volume)]
    t0 = time.perf_counter()
    loaded = yield from load_networks(package, options)
    seconds, device = loaded.seconds, loaded.device
    frame, source = source_of(volume, options)
    whole = options.box is None
    if (card.get("inference") or {}).get("mode") == "brainchop":
        labels, chosen = yield from run_brainchop(package, loaded.net, source, device, options, notes, seconds)
        if not whole:
            labels, chosen, _ = into_full(frame, options.box, labels, chosen, None)
        seconds["total"] = time.perf_counter() - t0
        return InferenceResult(labels, chosen, None, device, seconds, notes,
                               implausibilities(card, labels, frame, whole=whole))
    prep = yield from prepare_input(card, source, loaded, notes)
    passes, used = yield from run_network(loaded.net, card, prep.tensor, device, options.sw_batch_size,
                                          options.tta, notes, seconds)
    yield Progress("post-processing", 0, 0)
    t3 = time.perf_counter()
    labels, chosen, uncertainty = invert(card, passes, prep, source, options.uncertainty)
    postprocess(card, labels, prep.region_on_source())
    if not whole:
        labels, chosen, uncertainty = into_full(frame, options.box, labels, chosen, uncertainty)
    seconds["postprocess"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    loaded.net.to("cpu")
    if device == "cuda":
        memory.release_gpu_memory()
    where = used.device if used.sw_device == used.device else f"{used.sw_device} windows, {used.device} stitching"
    return InferenceResult(labels, chosen, uncertainty, where, seconds, notes,
                           implausibilities(card, labels, frame, whole=whole))
