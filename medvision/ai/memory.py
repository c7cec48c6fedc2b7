"""Telling an out-of-memory error (GPU or host) from other failures, wherever it was raised.

Torch is not imported here: the window asks before torch is loaded, and no torch error can exist
before it is.
"""

from __future__ import annotations

import sys

__all__ = ["is_out_of_memory", "release_gpu_memory"]


def is_out_of_memory(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised from (``raise ... from``, or while handling), is
    running out of memory: torch's ``OutOfMemoryError`` (CUDA), Python's ``MemoryError``, or an
    error whose text says "out of memory" (cuDNN, cuBLAS and allocator errors come as plain
    ``RuntimeError``)."""
    torch = sys.modules.get("torch")
    oom_types: tuple[type[BaseException], ...] = (MemoryError,)
    if torch is not None:
        oom_types += tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                       getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None))
                           if isinstance(t, type))
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, oom_types) or "out of memory" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def release_gpu_memory() -> None:
    """Drop unreachable tensors and hand the CUDA cache back, so that a retry starts with room."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
