"""What a training run does that depends on its task: the loss, what validation measures, how the
new head starts, how the card describes it. Segmentation is the task today; the stages of
:mod:`.trainer` take any object with these members (an inpainting task is the next one).

A task is built for one run from the label names it learns (``names``: without the background)."""

from __future__ import annotations

import numpy as np
import torch

from .config import TrainConfig, clean
from .validation import validate_dice, validation_cross_entropy

__all__ = ["SegmentationTask", "init_head_from_priors"]


class SegmentationTask:
    """Voxel labels: DiceCE loss (monai, softmax, one-hot targets), validation Dice per label (a label
    absent from a region's reference is left out of its mean), the head started at the class
    frequencies (or fitted by a linear probe, :mod:`.head`)."""

    name = "segmentation"
    loss_description = "DiceCELoss(softmax)"

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.n_classes = len(self.names)

    def loss(self, config: TrainConfig):
        from monai.losses import DiceCELoss

        return DiceCELoss(to_onehot_y=True, softmax=True, batch=bool(config.batch_dice))

    def validate(self, net, regions, patch, batch_size, device, amp) -> tuple[float | None, list[float | None]]:
        """(mean Dice over the labels present, Dice per label) on the validation regions."""
        return validate_dice(net, regions, patch, batch_size, device, self.n_classes, amp)

    def probabilities_fit(self, net, regions, patch, batch_size, device, amp) -> float:
        """How well the network's probabilities describe the validation labels (cross-entropy, lower is
        better): what the linear probe's check compares."""
        return validation_cross_entropy(net, regions, patch, batch_size, device, amp)

    def per_label(self, values) -> dict[str, float | None]:
        """Per-label figures by label name, JSON-ready."""
        return {n: clean(d) for n, d in zip(self.names, values, strict=True)}

    def no_scores(self) -> list[None]:
        return [None] * self.n_classes

    def class_frequencies(self, regions) -> np.ndarray:
        """The share of each class (background first) in the training regions' labels."""
        counts = sum(np.bincount(label.numpy().ravel(), minlength=self.n_classes + 1)[: self.n_classes + 1]
                     for _, label in regions)
        return counts / max(1, counts.sum())


def init_head_from_priors(net: torch.nn.Module, head: list[str], frequencies: np.ndarray) -> bool:
    """The new head's output biases set to the log class frequencies (so its first softmax says the
    priors) and its weights scaled by 0.1: the head starts near the best constant answer instead of
    a random one whose large first gradients would run back into the pretrained layers. False when
    the head has no bias of one value per class (nothing changed)."""
    params = dict(net.named_parameters())
    biases = [n for n in head if n.endswith("bias") and params[n].shape == (len(frequencies),)]
    if not biases:
        return False
    prior = torch.log(torch.as_tensor(np.maximum(frequencies, 1e-4), dtype=torch.float32))
    with torch.no_grad():
        for name in head:
            if name.endswith("weight"):
                params[name].mul_(0.1)
        for name in biases:
            params[name].copy_(prior - prior.mean())
    return True
