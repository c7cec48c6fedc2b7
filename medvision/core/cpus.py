"""How many CPU threads medvision's own work may use."""

from __future__ import annotations

import os

__all__ = ["cpu_threads"]


def cpu_threads() -> int:
    """``MEDVISION_THREADS`` when set to a positive number (a shared workstation, tests run side by side),
    else the CPUs this process may run on."""
    env = os.environ.get("MEDVISION_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
