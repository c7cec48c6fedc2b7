"""Atomic file writes: the one helper every writer of medvision goes through.

Each write goes to a temporary file in the destination's folder, is flushed, fsynced and its size
checked, gets the mode the file would have had (``0666`` less the umask, or the mode of the file it
replaces), and is moved into place with ``os.replace``; on any failure the temporary file is
removed and the previous file is left whole. ``private=True`` is for caches that hold patient data
(the DICOM index, thumbnails, the recovery area): such files are ``0600`` and folders ``0700``.

- :func:`write_text`, :func:`write_bytes`: the content in memory.
- :func:`write_via`: a writer that wants a path (SimpleITK, highdicom, safetensors, Qt, ...). It is
  called with a path of the destination's own name inside a temporary folder beside it, so writers
  that choose the format by suffix or name a data file after their header keep working; files it
  adds beside that path (an ``.nhdr``'s data file) are moved too, before it.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_text", "write_bytes", "write_via", "sweep", "TMP_PREFIX", "file_mode", "private_dir",
           "private_file", "PRIVATE_FILE", "PRIVATE_DIR"]

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # (not thread-safe for that instant: only where /proc says nothing)
    os.umask(mask)
    return mask


def file_mode(path: str | os.PathLike, *, private: bool = False) -> int:
    """The mode a file written at ``path`` gets: 0600 when private, else that of the file it
    replaces, else ``0666`` less the umask."""
    if private:
        return PRIVATE_FILE
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def private_dir(path: str | os.PathLike) -> Path:
    """Make ``path`` (and missing parents) and restrict it to its owner (0700)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


#: how medvision's temporary files and folders are named (``.medvision-<name>.<random>.tmp``): a write killed
#: half-way leaves one, which the next write to that folder removes once it is :data:`STALE_SECONDS` old
TMP_PREFIX = ".medvision-"
STALE_SECONDS = 3600


def sweep(folder: str | os.PathLike[str], *, older_than: float = STALE_SECONDS) -> int:
    """Remove medvision's own temporary files and folders left in ``folder`` by a killed write (recognised
    by name, and only when older than ``older_than`` seconds: a write in progress elsewhere keeps its own);
    how many were removed. Never raises."""
    import time

    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(TMP_PREFIX) and entry.name.endswith(".tmp")):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if now - st.st_mtime < older_than or stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
            log.info("removed %s, left by an interrupted write", entry.path)
        except OSError:
            continue
    return removed


def _sync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a crash (best effort: not every system can)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _finish(tmp: Path, mode: int, expected_size: int | None) -> None:
    """fsync ``tmp``, check its size and set its mode."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if expected_size is not None and size != expected_size:
        raise OSError(f"{tmp.name}: {size} bytes written of {expected_size}")
    if expected_size is None and size == 0:
        raise OSError(f"{tmp.name}: the writer left an empty file")
    os.chmod(tmp, mode)


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview, *,
                private: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see the module's docstring)."""
    path = Path(path)
    mode = file_mode(path, private=private)
    sweep(path.parent)
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
        _finish(tmp, mode, memoryview(data).nbytes)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)
    return path


def write_text(path: str | os.PathLike, text: str, *, private: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see the module's docstring)."""
    return write_bytes(path, text.encode(encoding), private=private)


def write_via(path: str | os.PathLike, writer: Callable[[Path], object], *, private: bool = False,
              check: Callable[[Path], object] | None = None) -> Path:
    """Write ``path`` atomically through ``writer(temporary_path)``.

    ``temporary_path`` has ``path``'s name, in a temporary folder beside it. A writer that returns
    ``False`` (Qt's ``QImage.save``) or leaves no file or an empty one has failed (``OSError``).
    ``check(temporary_path)``, when given, runs before anything is moved (read the header back, say).
    Files the writer adds beside ``temporary_path`` are moved into ``path``'s folder first."""
    path = Path(path)
    folder = path.parent
    sweep(folder)
    tmpdir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}.", suffix=".tmp", dir=folder))
    try:
        tmp = tmpdir / path.name
        if writer(tmp) is False:
            raise OSError(f"{path}: the writer reported a failure")
        if not tmp.is_file():
            raise OSError(f"{path}: the writer wrote no file")
        if check is not None:
            check(tmp)
        # the main file last: a header is only put in place once its data file is
        parts = sorted(tmpdir.iterdir(), key=lambda p: p == tmp)
        for part in parts:
            if not part.is_file() or part.is_symlink():
                raise OSError(f"{path}: the writer left something that is not a file ({part.name})")
            _finish(part, file_mode(folder / part.name, private=private), None)
        for part in parts:
            os.replace(part, folder / part.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    _sync_dir(folder)
    return path


def private_file(path: str | os.PathLike) -> Path:
    """Create ``path`` (empty) when missing and restrict it to its owner (0600): a database that
    another library writes in place (SQLite, whose journal files take the database's mode). A file
    the process may not change the mode of (another user's) is left as it is, with a warning."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE)
    except FileExistsError:
        try:
            if stat.S_IMODE(path.stat().st_mode) != PRIVATE_FILE:
                os.chmod(path, PRIVATE_FILE)
        except OSError as exc:
            log.warning("%s: could not make it readable by its owner only (%s)", path, exc.strerror or exc)
    else:
        os.close(fd)
    return path
