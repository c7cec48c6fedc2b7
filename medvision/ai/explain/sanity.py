"""The model-parameter randomisation check (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

A map that explains the model must change when the model's weights are replaced by random ones. The
layers' weights are randomised in a cascade from the top (the output side) down: the top layer, the top
half, all of them; the map is made again each time and compared with the original by Spearman's rank
correlation. Two maps of unrelated models (two independent full randomisations) give the correlation
that the image alone explains (its edges, the region's place). The check fails when the fully
randomised model's map stays as close to the original as 0.9 or more (an explainer that ignores the
model: an edge detector passes the image through whatever the weights), or closer than the unrelated
pair by more than 0.1."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["spearman", "randomised", "RandomisationCheck", "randomisation_check", "NEAR", "MARGIN"]

#: a fully randomised model's map this close to the original (rank correlation): the map ignores the model
NEAR = 0.9
#: ... or closer to it than two unrelated models' maps are to each other by more than this
MARGIN = 0.1


def spearman(a: torch.Tensor, b: torch.Tensor, most: int = 200_000) -> float:
    """Spearman's rank correlation of two maps of the same shape (a regular subsample of at most ``most``
    values; equal values share their mean rank). Two constant maps: 1; one constant map: 0."""
    x, y = a.detach().double().flatten().cpu(), b.detach().double().flatten().cpu()
    step = max(1, x.numel() // most)
    x, y = x[::step], y[::step]
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    nx, ny = float(rx.norm()), float(ry.norm())
    if nx == 0 or ny == 0:
        return 1.0 if nx == ny else 0.0
    return float((rx * ry).sum()) / (nx * ny)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks from 0, ties given their mean rank."""
    ordered, order = torch.sort(v, stable=True)
    starts = torch.ones(v.numel(), dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    group = torch.cumsum(starts.long(), 0) - 1
    sums = torch.zeros(int(group[-1]) + 1, dtype=torch.float64).index_add_(0, group, torch.arange(
        v.numel(), dtype=torch.float64))
    mean = sums / torch.bincount(group).double()
    r = torch.empty(v.numel(), dtype=torch.float64)
    r[order] = mean[group]
    return r


def _layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules with their own weight (convolutions, linear layers), in the order they are defined."""
    return [m for m in net.modules() if isinstance(getattr(m, "weight", None), torch.nn.Parameter)
            and m.weight.dim() > 1]


def randomised(net: torch.nn.Module, top: int, seed: int) -> torch.nn.Module:
    """A copy of ``net`` whose ``top`` last layers' weights are random (normal, each layer's own standard
    deviation) and biases zero."""
    copied = copy.deepcopy(net)
    layers = _layers(copied)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in layers[len(layers) - top:]:
            std = float(m.weight.std()) or 0.02
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return copied


@dataclass
class RandomisationCheck:
    #: (layers randomised from the top, rank correlation with the original map)
    cascade: list[tuple[int, float]] = field(default_factory=list)
    unrelated: float = 0.0  # two independent full randomisations' maps
    passed: bool = False

    def summary(self) -> str:
        steps = ", ".join(f"top {n}: {r:.2f}" for n, r in self.cascade)
        verdict = "passes" if self.passed else "fails randomisation check: may not reflect the model"
        return (f"{verdict} (rank correlation with the original map as layers are randomised, {steps}; two unrelated "
                f"models' maps: {self.unrelated:.2f})")


def randomisation_check(net: torch.nn.Module, make_map: Callable[[torch.nn.Module], torch.Tensor],
                        original: torch.Tensor, seed: int = 0) -> RandomisationCheck:
    """The cascade (the top layer, the top half, all) and the unrelated pair's correlation for the maps
    ``make_map`` makes with a network."""
    n = len(_layers(net))
    if n == 0:
        raise ValueError("the network has no layer with weights to randomise")
    stages = sorted({1, max(1, n // 2), n})
    check = RandomisationCheck()
    full = None
    for top in stages:
        m = make_map(randomised(net, top, seed))
        check.cascade.append((top, spearman(original, m)))
        if top == n:
            full = m
    other = make_map(randomised(net, n, seed + 1))
    assert full is not None
    check.unrelated = spearman(full, other)
    last = check.cascade[-1][1]
    check.passed = last < NEAR and last <= check.unrelated + MARGIN
    return check
