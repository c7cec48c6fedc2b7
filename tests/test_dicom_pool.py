"""The DICOM decode pool where no worker process may be started: inside a daemonic process (the window's
training process reads its cases there) a series is read in that process instead of failing."""

from __future__ import annotations

import multiprocessing as mp


def _read_in_daemon(path: str, out) -> None:
    try:
        from medvision.io import load

        out.put(("ok", load(path).shape))
    except BaseException as exc:  # noqa: BLE001 - the parent asserts on what happened
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_a_daemonic_process_reads_a_dicom_series_without_worker_processes(monkeypatch):
    from .conftest import SAMPLE_CT

    monkeypatch.setenv("MEDVISION_WORKERS", "2")  # (the child would start two decode workers)

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_read_in_daemon, args=(str(SAMPLE_CT), out), daemon=True)
    child.start()
    kind, value = out.get(timeout=120)
    child.join(30)
    assert kind == "ok", value
    assert tuple(value) == (20, 512, 512)
