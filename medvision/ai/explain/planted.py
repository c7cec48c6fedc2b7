"""A known answer for explainers: noise volumes where a block is labelled exactly when a bright marker
lies elsewhere (the block itself carries no signal), and a small network trained on them. An explainer
worth its name puts the peak of its map for the block on the marker; with the network's weights random,
it does not. The tests and ``benchmarks/bench_explain.py`` (the pointing game) use it."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SIZE", "TARGET", "sample", "train", "hit", "marker", "target_region"]

SIZE = 24
TARGET = (slice(14, 20), slice(8, 16), slice(8, 16))  # where the label is: no signal of its own there


def sample(rng: np.random.Generator, marked: bool):
    """(image (1, X, Y, Z) float32, labels (X, Y, Z), the marker's first corner or None): noise everywhere;
    with ``marked``, a bright 3-voxel cube somewhere in the first quarter of x, and then the label over
    TARGET (the image there is the same noise either way)."""
    x = rng.normal(0, 0.3, (1, SIZE, SIZE, SIZE)).astype(np.float32)
    y = np.zeros((SIZE, SIZE, SIZE), np.int64)
    where = None
    if marked:
        where = (int(rng.integers(1, 6)), int(rng.integers(3, SIZE - 6)), int(rng.integers(3, SIZE - 6)))
        x[0, where[0]:where[0] + 3, where[1]:where[1] + 3, where[2]:where[2] + 3] += 2.0
        y[TARGET] = 1
    return x, y, where


def train(steps: int = 400, seed: int = 0) -> torch.nn.Module:
    """A small monai UNet (instance norm) trained on one CPU thread, seeded: the same network on any machine,
    in eval mode."""
    from monai.networks.nets import UNet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (the same sums in the same order on any machine: the same network)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = UNet(3, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        for _ in range(steps):
            batch = [sample(rng, bool(k % 2)) for k in range(4)]
            x = torch.from_numpy(np.stack([b[0] for b in batch]))
            y = torch.from_numpy(np.stack([b[1] for b in batch]))
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def target_region() -> torch.Tensor:
    region = torch.zeros((SIZE,) * 3, dtype=torch.bool)
    region[TARGET] = True
    return region


def marker(x: torch.Tensor) -> tuple[int, int, int]:
    """The first corner of the planted marker in ``x`` (1, 1, X, Y, Z)."""
    found = torch.nonzero(x[0, 0] > 1.6)  # (the marker: 2 + noise; the noise alone: sd 0.3)
    return tuple(int(v) for v in found.min(0).values)  # type: ignore[return-value]


def hit(m: torch.Tensor, where, reach: int) -> bool:
    """Whether the peak of map ``m`` lies on the marker at ``where``, give or take ``reach`` voxels."""
    peak = np.unravel_index(int(torch.argmax(m)), tuple(m.shape))
    return all(w - reach <= p < w + 3 + reach for p, w in zip(peak, where, strict=True))
