"""Where a network runs: the device asked for, and the steps tried after CUDA out-of-memory errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Attempt", "fallback_plan", "pick_device"]


@dataclass(frozen=True)
class Attempt:
    """One way to run the network: where the windows run, where they are stitched, how many at once."""

    device: str
    sw_device: str
    sw_batch_size: int
    why: str = ""


def pick_device(requested: str = "auto") -> str:
    """``cpu``, or ``cuda`` when asked for or (``auto``) when there is a CUDA GPU."""
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise RuntimeError("no CUDA GPU is available on this machine (run with --device cpu)")
    return "cpu"


def fallback_plan(device: str, sw_batch_size: int, sliding: bool) -> list[Attempt]:
    """The attempts tried in order after CUDA out-of-memory errors."""
    if device == "cpu":
        return [Attempt("cpu", "cpu", sw_batch_size)]
    plan = [Attempt("cuda", "cuda", sw_batch_size)]
    if sliding and sw_batch_size > 1:
        plan.append(Attempt("cuda", "cuda", 1, "one window at a time"))
    if sliding:
        plan.append(Attempt("cpu", "cuda", 1, "windows on the GPU, stitching in CPU memory"))
    plan.append(Attempt("cpu", "cpu", sw_batch_size, "on the CPU"))
    return plan
