"""Training in its own process, so that a crash or an out-of-memory error there cannot take the
window (and unsaved labels) down.

:class:`TrainingProcess` starts a fresh interpreter (``spawn``) that loads the training data and
runs :func:`medvision.ai.training.job.train_job`; everything it reports comes back as plain
messages through a queue, read with :meth:`TrainingProcess.poll` (never blocking):

* ``("progress", {"stage", "done", "total", "message", "epoch": {...} or None})``
* ``("done", {"package", "best_val_dice", "per_label", "epochs_run", "split", "cross_validation"})``
* ``("cancelled", {"epochs_run"})``
* ``("error", {"message", "traceback", "out_of_memory"})``
* ``("crashed", {"exitcode"})``: the process ended without saying why (killed, segfault)

Pause and cancel are events the child checks between progress records; the checkpoint of the
last finished epoch stays in the work folder, so a new run with the same settings resumes.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import queue as queue_module
import time
import traceback
from typing import Any

__all__ = ["TrainingProcess"]

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """Something the queue can carry to a process that may not import the same classes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _child(config: dict, data_spec: dict, out, cancel, pause) -> None:
    logging.basicConfig(level=logging.WARNING)
    try:
        if config.get("task") == "inpainting":  # (images alone: medvision.ai.inpainting.finetune)
            from .inpainting.finetune import child_job, done_message

            _drive(child_job(config, data_spec), lambda result, _epochs: done_message(result), "inpaint", out,
                   cancel, pause)
            return
        from .training.config import TrainConfig
        from .training.data import TrainingData
        from .training.job import train_job

        cfg = TrainConfig(**config)
        if "project" in data_spec:
            data = TrainingData.from_project(data_spec["project"])
        else:
            data = TrainingData.from_datalist(data_spec["datalist"])
        _drive(train_job(cfg, data), _segmentation_done, "epoch", out, cancel, pause)
    except BaseException as exc:  # noqa: BLE001 - reported to the window, which keeps working
        from .memory import is_out_of_memory

        oom = is_out_of_memory(exc)
        kind = "" if type(exc) is RuntimeError else f"{type(exc).__name__}: "  # (ours say what happened)
        out.put(("error", {"message": f"{kind}{exc}", "traceback": traceback.format_exc(),
                           "out_of_memory": oom}))


def _segmentation_done(result, epochs: int) -> dict:
    return {
        "package": str(getattr(result, "package_folder", "")),
        "best_val_dice": getattr(result, "best_val_dice", None),
        "per_label": getattr(result, "per_label", {}),
        "epochs_run": getattr(result, "epochs_run", epochs),
        "split": getattr(result, "split_description", ""),
        "cross_validation": getattr(result, "cross_validation", None),
    }


def _drive(job, done, preview_key: str, out, cancel, pause) -> None:
    """Run ``job`` to its end, between progress records waiting while paused and stopping when cancelled;
    each record's dict preview goes out under ``preview_key`` ("epoch": a segmentation run's epoch,
    "inpaint": an inpainting run's measurement), the result as ``done(result, epochs run)``."""
    epochs = 0
    while True:
        while pause.is_set() and not cancel.is_set():
            time.sleep(0.2)
        if cancel.is_set():
            job.close()
            out.put(("cancelled", {"epochs_run": epochs}))
            return
        try:
            record = next(job)
        except StopIteration as stop:
            out.put(("done", _plain(done(stop.value, epochs))))
            return
        preview = record.preview if isinstance(record.preview, dict) else None
        if preview is not None and preview_key == "epoch":
            epochs = int(preview.get("epoch", epochs))
        payload = {"stage": record.stage, "done": record.done, "total": record.total, "message": record.message,
                   "epoch": None, "run": getattr(record, "run", ""), "fold": getattr(record, "fold", None)}
        payload[preview_key] = preview
        out.put(("progress", _plain(payload)))


class TrainingProcess:
    """One training run in a child process (see the module docstring)."""

    def __init__(self, config: dict, data_spec: dict) -> None:
        self.config = dict(config)
        self.data_spec = dict(data_spec)
        self._ctx = mp.get_context("spawn")
        self._queue = self._ctx.Queue()
        self._cancel = self._ctx.Event()
        self._pause = self._ctx.Event()
        self.process: mp.process.BaseProcess | None = None
        self.finished = False  # a final message (done, cancelled, error, crashed) was delivered
        self.started_at = 0.0

    def start(self) -> TrainingProcess:
        self.process = self._ctx.Process(target=_child, name="medvision-training",
                                         args=(self.config, self.data_spec, self._queue, self._cancel, self._pause),
                                         daemon=True)
        self.process.start()
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.is_alive() and not self.finished

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    def cancel(self) -> None:
        """Stop after the current step (the last finished epoch's checkpoint is kept)."""
        self._cancel.set()
        self._pause.clear()

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    def poll(self) -> list[tuple[str, dict]]:
        """Messages that arrived since the last call; ``("crashed", ...)`` once when the process
        ended without a final message."""
        out = []
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue_module.Empty:
                break
            except (EOFError, OSError):
                break
            out.append((kind, payload))
            if kind in ("done", "cancelled", "error"):
                self.finished = True
        if not self.finished and self.process is not None and not self.process.is_alive():
            # give the queue's feeder a moment: a final message may still be in the pipe
            time.sleep(0.05)
            try:
                while True:
                    kind, payload = self._queue.get_nowait()
                    out.append((kind, payload))
                    if kind in ("done", "cancelled", "error"):
                        self.finished = True
            except (queue_module.Empty, EOFError, OSError):
                pass
            if not self.finished:
                self.finished = True
                out.append(("crashed", {"exitcode": self.process.exitcode}))
        return out

    def wait(self, timeout: float | None = None) -> None:
        if self.process is not None:
            self.process.join(timeout)
