"""A shared process pool for CPU-bound DICOM work (header parsing, JPEG 2000 decoding).

pydicom's parser and the pylibjpeg decoders hold the GIL, so threads do not run them in
parallel; worker processes do. The pool is started once (forkserver: safe in a threaded GUI
process) and reused, so only the first large job pays the start-up.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from ...core.cpus import cpu_threads

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def default_workers() -> int:
    env = os.environ.get("MEDVISION_WORKERS")
    if env and env.isdigit():
        return max(1, int(env))
    return cpu_threads()


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["medvision.io.dicom.decode", "medvision.io.dicom.index"])
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_watch_app,
                                        initargs=(os.getpid(),))
            _pool_size = workers
            _start_workers(_pool, workers)
        return _pool


def _noop() -> None:
    return None


def _app_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # killed but not yet reaped by its parent: a zombie is gone too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def _watch_app(pid: int, interval: float = 1.0) -> None:
    """Worker initializer: leave when the app is gone (killed, crashed, ended without shutting the
    pool down), instead of waiting for work forever."""

    def watch() -> None:
        import time

        while not _app_gone(pid):
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="watch-app", daemon=True).start()


def _start_workers(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start every worker now, without re-running the main script in them.

    multiprocessing re-imports the parent's ``__main__`` file in each new worker; for a script
    without an ``if __name__ == "__main__"`` guard, or code read from stdin, that fails or runs the
    script again. Worker functions all live in medvision modules, so the path is hidden while the
    workers start (they start inside ``submit``).
    """
    main = sys.modules.get("__main__")
    hidden = None
    if main is not None and getattr(main, "__spec__", None) is None and hasattr(main, "__file__"):
        hidden = main.__file__
        del main.__file__
    try:
        for _ in range(workers):
            pool.submit(_noop)
    finally:
        if hidden is not None and main is not None:  # (a hidden __file__ means there is a main)
            main.__file__ = hidden


def _reset_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


@atexit.register
def shutdown() -> None:
    _reset_pool()


def map_chunks(
    fn: Callable[[list[T]], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    min_parallel: int = 32,
    chunk_size: int | None = None,
) -> Iterator[R]:
    """Apply ``fn`` to consecutive chunks of ``items``; yield the results in order.

    Runs in worker processes when there are at least ``min_parallel`` items and more than one
    worker; otherwise in this process. Closing the iterator cancels chunks not yet started. A
    worker that dies (a crashing decoder) does not lose the job: the rest runs in this process.
    """
    workers = workers or default_workers()
    n = len(items)
    if chunk_size is None:
        chunk_size = max(1, min(256, n // (workers * 4) or 1))
    chunks = [list(items[i:i + chunk_size]) for i in range(0, n, chunk_size)]
    # (a daemonic process, such as the window's training process, may not start worker processes)
    if workers <= 1 or n < min_parallel or mp.current_process().daemon:
        for chunk in chunks:
            yield fn(chunk)
        return
    pool = _get_pool(workers)
    # A bounded window of chunks in flight: results are released as soon as they are consumed,
    # so memory holds the output plus a few chunks, not every decoded chunk.
    window = 2 * workers + 1
    pending: deque[Future] = deque()
    next_chunk = 0
    try:
        for i in range(len(chunks)):
            while next_chunk < len(chunks) and len(pending) < window:
                pending.append(pool.submit(fn, chunks[next_chunk]))
                next_chunk += 1
            fut = pending.popleft()
            try:
                result = fut.result()
            except BrokenProcessPool:
                log.warning("a worker process died; finishing the remaining work in this process")
                _reset_pool()
                for chunk in chunks[i:]:
                    yield fn(chunk)
                return
            del fut
            yield result
            del result
    finally:
        for fut in pending:
            fut.cancel()
