"""What inference gives back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core.labels import LabelMap

__all__ = ["InferenceResult"]


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
