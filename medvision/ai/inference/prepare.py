"""Stage 1: the networks on their device, the region of the image the model sees, and its input."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.cpus import cpu_threads
from ...core.jobs import Progress
from ...core.volume import Volume
from .. import memory
from ..options import InferenceOptions
from ..package import ModelPackage
from ..preprocess import Prepared, prepare
from .devices import pick_device

__all__ = ["Loaded", "load_networks", "prepare_input", "source_of", "sub_volume"]


@dataclass
class Loaded:
    """The package's networks, the device chosen, and the time it took."""

    net: torch.nn.Module
    localizer: torch.nn.Module | None
    device: str
    seconds: dict[str, float] = field(default_factory=dict)


def load_networks(package: ModelPackage, options: InferenceOptions):
    """Job steps: pick the device (CPU threads, cuDNN autotuning) and build the networks."""
    t0 = time.perf_counter()
    yield Progress("loading the model", 0, 0, package.name)
    device = pick_device(options.device)
    if device == "cpu":
        torch.set_num_threads(options.threads or cpu_threads())
    else:
        torch.backends.cudnn.benchmark = True
    net = package.network()
    localizer = package.network("localizer") if "localizer" in package.card else None
    return Loaded(net, localizer, device, {"load": time.perf_counter() - t0})


def sub_volume(volume: Volume, box) -> Volume:
    """The (z, y, x) ``box`` of ``volume`` as a volume of its own (same orientation and spacing)."""
    z, y, x = box
    origin = volume.index_to_world([x.start, y.start, z.start])
    affine = volume.affine.copy()
    affine[:3, 3] = origin
    return Volume(np.ascontiguousarray(volume.array[box]), affine, volume.frame_of_reference_uid,
                  dict(volume.metadata))


def source_of(volume: Volume, options: InferenceOptions) -> tuple[Volume, Volume]:
    """The frame shown (a 3D volume) and the part of it the model runs on (the box, or all of it)."""
    frame = volume.frame(options.frame) if volume.is_4d else volume
    return frame, (sub_volume(frame, options.box) if options.box is not None else frame)


def prepare_input(card: dict, source: Volume, loaded: Loaded, notes: list[str]):
    """Job steps: the model's input by the card (with its localizer on the model's device; on the
    CPU after a GPU out-of-memory error, which ``notes`` then says)."""
    t1 = time.perf_counter()
    yield Progress("preparing the image", 0, 0)
    localizer = loaded.localizer
    device = loaded.device if localizer is not None else "cpu"
    try:
        if localizer is not None:
            localizer.to(device)
        prep: Prepared = prepare(card, source, localizer, device)
    except torch.cuda.OutOfMemoryError:
        memory.release_gpu_memory()
        notes.append("out of GPU memory while preparing: prepared on the CPU")
        prep = prepare(card, source, localizer.to("cpu") if localizer is not None else None, "cpu")
    loaded.seconds["prepare"] = time.perf_counter() - t1
    return prep
