"""Options of a model run (no torch here: the window builds them before torch is loaded)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InferenceOptions"]


@dataclass
class InferenceOptions:
    device: str = "auto"  # "auto" (CUDA when present), "cuda" or "cpu"
    tta: bool = False  # test-time augmentation: identity + a flip along each axis
    uncertainty: bool = False  # a voxel-wise uncertainty map (TTA variance, or entropy without TTA)
    box: tuple[slice, slice, slice] | None = None  # (z, y, x) region of the volume to run on
    sw_batch_size: int | None = None  # windows per forward pass (default: the card's, else 2)
    threads: int | None = None  # CPU threads (default: all cores)
    frame: int = 0  # the frame of a 4D series
