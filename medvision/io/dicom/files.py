"""Finding and opening DICOM files: plain files, zip members, DICOMDIR references.

A :class:`FileRef` names one DICOM object: a path, and a member name when the path is a zip.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import NotDicomError

log = logging.getLogger(__name__)

# Files that are never DICOM; skipping them by name saves opening thousands of them.
_SKIP_SUFFIXES = {
    ".txt", ".json", ".nii", ".gz", ".nrrd", ".mha", ".mhd", ".raw", ".jpg", ".jpeg", ".png",
    ".bmp", ".gif", ".pdf", ".xml", ".html", ".htm", ".csv", ".md", ".py", ".exe", ".dll",
    ".inf", ".ini", ".log", ".sqlite", ".db", ".zip",
}
_SKIP_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db", "LOCKFILE", "VERSION"}


@dataclass(frozen=True, slots=True, order=True)
class FileRef:
    """One DICOM object on disk: ``path``, and ``member`` inside it when ``path`` is a zip."""

    path: str
    member: str = ""

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path

    @property
    def name(self) -> str:
        return os.path.basename(self.member or self.path)


_zip_lock = threading.Lock()
_zip_cache: dict[str, zipfile.ZipFile] = {}


def _zip(path: str) -> zipfile.ZipFile:
    with _zip_lock:
        zf = _zip_cache.get(path)
        if zf is None:
            zf = zipfile.ZipFile(path)
            _zip_cache[path] = zf
        return zf


def open_ref(ref: FileRef):
    """A binary file object for the reference (the caller closes it)."""
    if not ref.member:
        return open(ref.path, "rb")
    archive = _zip(ref.path)
    with _zip_lock:
        return io.BytesIO(archive.read(ref.member))


def read_dataset(ref: FileRef, *, headers_only: bool = False, force: bool = False) -> Dataset:
    """Read one DICOM object.

    ``headers_only`` stops before the pixel data. Otherwise large values (pixel data) are
    deferred: the file is parsed once and the pixel bytes are read only when asked for.
    Raises :class:`NotDicomError` with the file named when it cannot be parsed.
    """
    try:
        return _dcmread(ref, headers_only, force)
    except InvalidDicomError as exc:
        if not force:
            # Some tools write datasets without the Part 10 preamble and file meta ("DICM").
            # Accept such a file only when what it parses to looks like a real DICOM object.
            try:
                ds = _dcmread(ref, headers_only, True)
                if ds.get("SOPClassUID") and (ds.get("SOPInstanceUID") or ds.get("StudyInstanceUID")):
                    return ds
            except Exception:  # noqa: BLE001 - anything: it is not DICOM
                pass
        raise NotDicomError(f"{ref}: not a DICOM file ({_short(exc)})") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            NotImplementedError, OverflowError) as exc:
        raise NotDicomError(f"{ref}: damaged or truncated DICOM file ({_short(exc)})") from exc


class _Capped:
    """A file object whose reads never ask for more than the file still holds: an element whose damaged
    length says 4 GB makes pydicom read what is there (and fail on it), not allocate 4 GB first."""

    def __init__(self, fp, size: int | str | None = None) -> None:
        if isinstance(fp, str | os.PathLike):  # pydicom reopens a deferred value's file as type(fp)(name, "rb")
            fp = open(fp, "rb")  # noqa: SIM115 - closed by __exit__, as pydicom closes its files
        if not isinstance(size, int):
            size = fp.seek(0, io.SEEK_END)
            fp.seek(0)
        self._fp, self._size = fp, size
        self.name = getattr(fp, "name", None)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self._fp.read()
        return self._fp.read(max(0, min(n, self._size - self._fp.tell())))

    def __getattr__(self, name: str):
        return getattr(self._fp, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fp.close()


def _capped(ref: FileRef) -> _Capped:
    return _Capped(open_ref(ref))


def _dcmread(ref: FileRef, headers_only: bool, force: bool) -> Dataset:
    if ref.member or headers_only:
        with _capped(ref) as fp:
            return pydicom.dcmread(fp, stop_before_pixels=headers_only, force=force)
    # pixel data (and other large values) deferred: read from the file by offset when needed
    with _capped(ref) as fp:
        return pydicom.dcmread(fp, defer_size=4096, force=force)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # pydicom's advice to the programmer ("Use force=True ...") means nothing to a user
    first = (text[0] if text else type(exc).__name__).replace(" Use force=True to force reading.", "")
    return first[:200]


def has_dicom_preamble(path: str | os.PathLike) -> bool:
    """True when the file starts with the DICOM Part 10 preamble ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def looks_like_dicom_name(name: str) -> bool:
    if name in _SKIP_NAMES or name.startswith("."):
        return False
    return os.path.splitext(name)[1].lower() not in _SKIP_SUFFIXES


@dataclass(frozen=True, slots=True)
class FoundFile:
    ref: FileRef
    size: int
    mtime_ns: int


def iter_folder(root: str | os.PathLike) -> Iterator[FoundFile]:
    """Every candidate file below ``root`` with its size and modification time (no file is opened)."""
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                elif entry.is_file() and looks_like_dicom_name(entry.name):
                    st = entry.stat()
                    yield FoundFile(FileRef(entry.path), st.st_size, st.st_mtime_ns)
            except OSError as exc:
                log.warning("cannot stat %s: %s", entry.path, exc)
        stack.extend(reversed(subdirs))


def iter_zip(path: str | os.PathLike) -> Iterator[FoundFile]:
    """Every candidate member of a zip archive (sizes and times from the archive's directory)."""
    path = os.fspath(path)
    mtime = os.stat(path).st_mtime_ns
    for info in _zip(path).infolist():
        if info.is_dir() or not looks_like_dicom_name(os.path.basename(info.filename)):
            continue
        yield FoundFile(FileRef(path, info.filename), info.file_size, mtime ^ info.CRC)


def iter_dicomdir(path: str | os.PathLike) -> Iterator[FoundFile]:
    """The files a DICOMDIR references (paths resolved against the DICOMDIR's folder)."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise NotDicomError(f"{path}: not a readable DICOMDIR ({_short(exc)})") from exc
    base = path.parent
    seen = set()
    for record in ds.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        candidate = _resolve_case(base, parts)
        if candidate is None:
            log.warning("%s references %s, which is missing", path, "/".join(parts))
            continue
        key = os.fspath(candidate)
        if key in seen:
            continue
        seen.add(key)
        st = candidate.stat()
        yield FoundFile(FileRef(key), st.st_size, st.st_mtime_ns)


def _resolve_case(base: Path, parts: list[str]) -> Path | None:
    """Resolve DICOMDIR file IDs, which are upper case on the medium but not always on disk."""
    current = base
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        try:
            match = next((p for p in current.iterdir() if p.name.upper() == part.upper()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current if current.is_file() else None


def iter_source(path: str | os.PathLike) -> Iterator[FoundFile]:
    """Candidate DICOM files of a folder tree, a zip archive, a DICOMDIR, or one file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        yield from iter_folder(path)
    elif zipfile.is_zipfile(path):
        yield from iter_zip(path)
    elif os.path.basename(path).upper() == "DICOMDIR":
        yield from iter_dicomdir(path)
    elif os.path.isfile(path):
        st = os.stat(path)
        yield FoundFile(FileRef(os.path.abspath(path)), st.st_size, st.st_mtime_ns)
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
