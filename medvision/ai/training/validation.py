"""Running a network over the validation regions as the engine runs a whole image (sliding
windows at the training voxel size, the output mapped back onto each region's own grid), and what
is measured there: Dice per label (:func:`validate_dice`), the cross-entropy of the probabilities
(:func:`validation_cross_entropy`), and how long one validation takes (:func:`estimate_validation_s`)."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from ..memory import is_out_of_memory, release_gpu_memory
from .budget import VALIDATION_MARGIN, window_count
from .model import logits_function

__all__ = ["val_outputs", "sliding_windows", "estimate_validation_s", "validation_cross_entropy", "validate_dice"]

log = logging.getLogger(__name__)


def val_outputs(net, regions, patch, batch_size, device, amp):
    """(logits or, when resampled back, class probabilities; labels) of each validation region on the
    labels' own grid: sliding windows over the region's context, as the engine runs a whole image
    (``patch`` None: the network on the whole context at once, as brainchop runs its crop)."""
    from monai.inferers import sliding_window_inference

    fn = logits_function(net)

    def predictor(x):
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            return fn(x).float()

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for image, label, inner, native in regions:
                if patch is None:
                    out = predictor(image[None, None].to(device))
                else:
                    out = sliding_windows(sliding_window_inference, image, patch, batch_size, predictor, device)
                probabilities = tuple(out.shape[2:]) != tuple(native)
                if probabilities:  # back onto the region's own grid, as the engine does
                    out = torch.nn.functional.interpolate(torch.softmax(out.float(), 1).cpu(), tuple(native),
                                                          mode="trilinear", align_corners=False)
                yield out.cpu()[(slice(None), slice(None), *inner)], probabilities, label
    finally:
        net.train(was_training)


def sliding_windows(sliding_window_inference, image, patch, batch_size, predictor, device):
    """The network's output over ``image`` by overlapping windows; on running out of GPU memory, again
    one window at a time with the windows on the GPU and the whole output stitched in CPU memory."""
    kw = {"overlap": 0.5, "mode": "gaussian", "cval": float(image.min())}
    try:
        return sliding_window_inference(image[None, None].to(device), tuple(patch), batch_size, predictor, **kw)
    except RuntimeError as exc:
        if device == "cpu" or not is_out_of_memory(exc):
            raise
        log.warning("out of GPU memory while validating (%s): stitching in CPU memory", exc)
    release_gpu_memory()  # (outside the handler: the error's frames no longer hold GPU tensors)
    return sliding_window_inference(image[None, None], tuple(patch), 1, predictor, sw_device=device, device="cpu",
                                    **kw)


def estimate_validation_s(net, regions, patch, batch_size, device, amp, whole: bool = False) -> float:
    """About how long a validation over ``regions`` takes: a timed forward pass of ``batch_size``
    windows times the batches of windows the regions need (``whole``: times the regions' voxels
    over the windows', each region run at once), times :data:`.budget.VALIDATION_MARGIN`."""
    fn = logits_function(net)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            x = torch.zeros((batch_size, 1, *patch), device=device)
            times = []
            for _ in range(2):  # (the first pass allocates and warms up: the faster one counts)
                t = time.perf_counter()
                fn(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            seconds = min(times)
    finally:
        net.train(was_training)
    if whole:
        batches = sum(image.numel() for image, *_ in regions) / (batch_size * math.prod(patch))
    else:
        batches = sum(math.ceil(window_count(tuple(image.shape), patch) / batch_size) for image, *_ in regions)
    return VALIDATION_MARGIN * seconds * batches


def validation_cross_entropy(net, regions, patch, batch_size, device, amp) -> float:
    """Mean cross-entropy (nats per voxel) of the network's predictions on the validation regions'
    labels: how well its probabilities, not only its argmax, describe data it was not fitted on."""
    total, count = 0.0, 0
    for out, probabilities, label in val_outputs(net, regions, patch, batch_size, device, amp):
        log_p = torch.log(out.clamp_min(1e-7)) if probabilities else torch.log_softmax(out.float(), 1)
        total += float(-log_p[0].gather(0, label[None].long()).sum())
        count += label.numel()
    return total / max(1, count)


def validate_dice(net, regions, patch, batch_size, device, n_classes, amp) -> tuple[float | None, list[float | None]]:
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    scores = []
    for out, _, label in val_outputs(net, regions, patch, batch_size, device, amp):
        pred = one_hot(out.argmax(1, keepdim=True), n_classes + 1)
        ref = one_hot(label[None, None].long(), n_classes + 1)
        scores.append(compute_dice(pred, ref, include_background=False, ignore_empty=True)[0].numpy())
    per = np.array(scores, dtype=np.float64)
    with np.errstate(all="ignore"):
        per_label = [None if np.all(np.isnan(per[:, c])) else float(np.nanmean(per[:, c])) for c in range(n_classes)]
    present = [d for d in per_label if d is not None]
    return (float(np.mean(present)) if present else None), per_label
