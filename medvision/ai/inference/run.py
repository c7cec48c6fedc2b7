"""Stage 2: the network on the prepared input, whole or by sliding windows, with test-time
augmentation; on a helper thread that a cancel stops at the next layer; after a CUDA out-of-memory
error, the next attempt of :func:`~.devices.fallback_plan`."""

from __future__ import annotations

import logging
import threading
import time

import torch

from ...core.jobs import Cancelled, Progress
from .. import memory
from ..networks.layout import place
from .devices import Attempt, fallback_plan

__all__ = ["Watch", "run_attempt", "run_network", "watched"]

log = logging.getLogger(__name__)


class _Stop(Exception):
    pass


class Watch:
    """Counts the network's layers as they run (progress) and stops it when asked (cancel)."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.stop = threading.Event()
        self.calls = 0
        self._hooks = [m.register_forward_pre_hook(self._hook) for m in net.modules() if not list(m.children())]

    def _hook(self, _module, _inputs) -> None:
        if self.stop.is_set():
            raise _Stop()
        self.calls += 1

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def watched(net, compute):
    """Job steps: run ``compute()`` on a helper thread, yielding progress every 0.1 s; closing the
    job stops ``net`` at its next layer (:class:`Cancelled`)."""
    watch = Watch(net)
    box: dict = {}

    def work() -> None:
        try:
            box["result"] = compute()
        except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="inference", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
            yield Progress("inference", 0, 0, f"{watch.calls} layers run")
    except GeneratorExit:
        watch.stop.set()
        worker.join()
        raise
    finally:
        watch.remove()
    if isinstance(box.get("error"), _Stop):
        raise Cancelled("inference cancelled")
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_attempt(net, card: dict, x: torch.Tensor, attempt: Attempt, tta: bool) -> list[torch.Tensor]:
    """Probabilities (C, X, Y, Z) on the CPU, one per augmentation pass (the identity, then a flip
    along each axis when ``tta``)."""
    inference = card.get("inference") or {}
    sliding = inference.get("mode") == "sliding_window" and inference.get("sliding_window")
    output = card.get("output") or {}
    dev = torch.device(attempt.device if attempt.sw_device == "cpu" else attempt.sw_device)
    place(net, dev)
    amp = dev.type == "cuda"

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = net(batch.to(dev))
        out = out.float()
        act = output.get("activation")
        if not output.get("in_network"):
            out = torch.softmax(out, 1) if act == "softmax" else torch.sigmoid(out) if act == "sigmoid" else out
        return out

    flips = [()] + ([(2,), (3,), (4,)] if tta else [])
    results = []
    with torch.inference_mode():
        for axes in flips:
            inp = torch.flip(x, axes) if axes else x
            if sliding:
                from monai.inferers import sliding_window_inference

                sw = inference["sliding_window"]
                out = sliding_window_inference(
                    inp, tuple(sw["roi_size"]), attempt.sw_batch_size, predictor,
                    overlap=float(sw.get("overlap", 0.5)), mode=sw.get("blend", "gaussian"),
                    sw_device=torch.device(attempt.sw_device), device=torch.device(attempt.device))
            else:
                out = predictor(inp.to(dev))
            out = torch.flip(out, axes) if axes else out
            results.append(out[0].float().cpu())
    return results


def run_network(net, card: dict, x: torch.Tensor, device: str, sw_batch_size: int | None, tta: bool,
                notes: list[str], seconds: dict[str, float]):
    """Job steps: the network's passes on ``x``, trying the fallback plan's attempts in order after
    CUDA out-of-memory errors (each said in ``notes``); returns (passes, the attempt that ran)."""
    inference = card.get("inference") or {}
    sliding = bool(inference.get("mode") == "sliding_window" and inference.get("sliding_window"))
    sw_batch = sw_batch_size or int((inference.get("sliding_window") or {}).get("batch_size", 2))
    plan = fallback_plan(device, sw_batch, sliding)
    t0 = time.perf_counter()
    for k, attempt in enumerate(plan):
        if attempt.why:
            notes.append(f"out of GPU memory: retried {attempt.why}")
        try:
            passes = yield from watched(net, lambda a=attempt: run_attempt(net, card, x, a, tta))
        except Exception as exc:
            if not memory.is_out_of_memory(exc) or k == len(plan) - 1:
                raise
            log.warning("CUDA out of memory (%s); falling back", exc)
            net.to("cpu")
            memory.release_gpu_memory()
            continue
        seconds["inference"] = time.perf_counter() - t0
        if attempt.device == "cpu" and device == "cuda":
            notes.append("ran on the CPU after running out of GPU memory")
        return passes, attempt
    raise AssertionError("the fallback plan is never empty")
