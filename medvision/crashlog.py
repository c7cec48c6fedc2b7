"""Unexpected errors: one clear sentence for the user, the details in a private log file.

``medvision`` never shows a Python traceback on the terminal or in the window: an error the code
did not expect ends as "what failed, on which path, the error in one line; details in LOG", and
the whole traceback goes to ``<user data>/logs/medvision.log`` (folder 0700, file 0600: paths and
headers in it can name patients), which is cut back to its last 2 MB when it grows past 4 MB.
"""

from __future__ import annotations

import datetime
import os
import traceback
from pathlib import Path

from .core.atomic import PRIVATE_FILE, private_dir
from .paths import data_dir

__all__ = ["log_path", "record", "one_line"]

_MAX = 4 << 20
_KEEP = 2 << 20


def log_path() -> Path:
    return private_dir(data_dir() / "logs") / "medvision.log"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def record(exc: BaseException, context: str) -> Path | None:
    """Append ``exc``'s traceback with ``context`` to the log; its path (None when it cannot be written)."""
    try:
        path = log_path()
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        text = f"\n=== {stamp} {context}\n" + "".join(traceback.format_exception(exc))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
        with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as fh:
            fh.write(text)
        os.chmod(path, PRIVATE_FILE)
        if path.stat().st_size > _MAX:
            data = path.read_bytes()[-_KEEP:]
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC, PRIVATE_FILE)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        return path
    except OSError:
        return None
