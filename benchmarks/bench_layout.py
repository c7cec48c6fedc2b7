"""MeshNet on the CPU: the shipped brainchop networks' hidden layers on one input in the plain layout and
with channels-last weights (what ``medvision.ai.networks.layout.place`` chooses), and whether the layout
``place`` picks is the faster one. Seconds per pass (best of ``--repeats``), ratio plain / channels-last.

    python benchmarks/bench_layout.py [--size 112] [--threads 1] [--repeats 2]

No data needed (a random input; the time of a convolution does not depend on the values). One JSON line
per model.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from medvision.ai.networks.layout import place
from medvision.ai.package import Registry


def seconds(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            feats = x
            for block in net.layers:
                feats = block(feats)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(1, 1, args.size, args.size, args.size)
    registry = Registry()
    for pkg in registry.packages():
        if pkg.card["architecture"]["name"] != "meshnet.MeshNet":
            continue
        net = pkg.network().eval()
        seconds(net, x[..., :24, :24, :24], 1)  # warm-up
        plain = seconds(net.to(memory_format=torch.contiguous_format), x, args.repeats)
        last = seconds(net.to(memory_format=torch.channels_last_3d), x, args.repeats)
        place(net, "cpu")
        picked = "channels_last" if getattr(net, "cpu_memory_format", None) is not None else "plain"
        faster = "channels_last" if last < plain else "plain"
        print(json.dumps({"model": pkg.id, "input": [args.size] * 3, "threads": args.threads,
                          "plain_s": round(plain, 3), "channels_last_s": round(last, 3),
                          "ratio_plain_over_channels_last": round(plain / last, 2), "place_picks": picked,
                          "picks_the_faster": picked == faster}), flush=True)


if __name__ == "__main__":
    main()
