"""Stage 3: the network's output back onto the image's grid: the label map with the card's label
table, the probability of the label chosen at each voxel, and (when asked) an uncertainty map."""

from __future__ import annotations

import json

import numpy as np
import torch

from ...core.labels import LabelMap, LabelTable
from ...core.volume import Volume
from ..preprocess import Prepared

__all__ = ["card_labels", "into_full", "invert", "label_map", "threshold_map"]


def card_labels(card: dict, array: np.ndarray, source: Volume, table: LabelTable | None = None) -> LabelMap:
    """``array`` on the source grid as a label map with the card's label table."""
    table = table if table is not None else LabelTable.from_json(json.dumps(card.get("labels") or []))
    return LabelMap(array, source.affine, table, name=str(card.get("id")))


def threshold_map(card: dict, mask: np.ndarray, source: Volume) -> LabelMap:
    """The label map of a one-structure model from its mask (uint8 0/1) on the source grid."""
    table = LabelTable.from_json(json.dumps(card.get("labels") or []))
    value = table.values()[0] if len(table) else 1
    return card_labels(card, mask if value == 1 else mask * np.uint8(value), source, table)


def label_map(card: dict, probs: np.ndarray, source: Volume) -> tuple[LabelMap, np.ndarray]:
    """The label map and the chosen label's probability from per-class probabilities (C, z, y, x)
    on the source grid: a channel against the card's threshold, or the most probable class."""
    output = card.get("output") or {}
    if "threshold" in output:  # one structure: a channel against a threshold
        p = probs[int(output.get("channel", 1 if probs.shape[0] > 1 else 0))]
        return threshold_map(card, (p > float(output["threshold"])).view(np.uint8), source), p.astype(np.float32)
    array = probs.argmax(0)
    array = array.astype(np.uint8 if array.max(initial=0) < 256 else np.uint16)
    return card_labels(card, array, source), probs.max(0).astype(np.float32)


def invert(card: dict, passes: list[torch.Tensor], prep: Prepared, source: Volume, uncertainty: bool
           ) -> tuple[LabelMap, np.ndarray | None, np.ndarray | None]:
    """(labels, chosen probability or None, uncertainty or None) on ``source``'s grid from the
    network's passes in the model's frame.

    Where the model's frame maps back by nearest neighbour and no uncertainty is asked, the decision
    is taken in the model's frame and only it goes back (exact, and far less data); otherwise the
    probabilities go back and the decision is taken on the source grid. Uncertainty is the variance
    across augmentation passes, or with one pass the normalised entropy of the probabilities."""
    mean = torch.stack(passes).mean(0) if len(passes) > 1 else passes[0]
    output = card.get("output") or {}
    probs: np.ndarray | None = None
    chosen: np.ndarray | None
    if "threshold" in output and not uncertainty:  # one structure: only its channel goes back
        channel = int(output.get("channel", 1 if mean.shape[0] > 1 else 0))
        if prep.nearest_mapping():  # threshold in the model's frame, map the mask back
            mask = prep.to_grid((mean[channel:channel + 1] > float(output["threshold"])).to(torch.uint8))[0]
            labels, chosen = threshold_map(card, mask, source), None
        else:
            probs = prep.to_grid(mean[channel:channel + 1])
            labels, chosen = label_map(dict(card, output=dict(output, channel=0)), probs, source)
    elif prep.nearest_mapping() and not uncertainty:  # the class chosen in the model's frame
        best, index = mean.max(0, keepdim=True)  # first of equal maxima, as numpy's argmax
        few = mean.shape[0] <= 256
        array = prep.to_grid(index.to(torch.uint8) if few else index)[0]
        labels = card_labels(card, array if few else array.astype(np.uint16), source)
        chosen = prep.to_grid(best)[0]
    else:
        probs = prep.to_grid(mean)
        labels, chosen = label_map(card, probs, source)
    unc = None
    if uncertainty:
        if len(passes) > 1:
            unc = prep.to_grid(torch.stack(passes).var(0).mean(0, keepdim=True))[0]
        else:
            assert probs is not None  # with uncertainty asked, the probabilities went back
            p = np.clip(probs, 1e-6, 1.0)
            unc = (-(p * np.log(p)).sum(0) / np.log(max(p.shape[0], 2))).astype(np.float32)
    return labels, chosen, unc


def into_full(frame: Volume, box, labels: LabelMap, chosen, uncertainty):
    """The results of a run on ``box`` of ``frame`` placed into arrays of the whole frame."""
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
