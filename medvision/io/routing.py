"""Where paths go when a user opens them: one decision for the window, the CLI and the tests.

What was dropped or chosen together is opened as one thing. An image file (NIfTI, NRRD, MHA ...)
among them is loaded directly (the first; one image at a time). A single file that is not a DICOM
Part 10 file is read alone, which explains what it is if it cannot be read. A single DICOM file opens
its series: the files beside it that share its Series Instance UID. Anything else (folders, zips,
DICOMDIR, several DICOM files) is scanned as one set, and its image series is chosen: the one asked
for, the only one, or, where a person can choose another afterwards, the largest.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field

from .dicom.files import has_dicom_preamble
from .dicom.index import ScanResult, SeriesInfo, describe_series
from .errors import MultipleSeriesError, NoImagesError
from .volumes import is_volume_file

__all__ = ["MAX_SIBLINGS", "OpenPlan", "choose_series", "is_dicom_collection", "pick_series", "plan_open"]

#: a folder with more files than this beside a single DICOM file is not a series folder: that file
#: is scanned alone (reading a huge folder's headers would take minutes)
MAX_SIBLINGS = 20000


def is_dicom_collection(path: str | os.PathLike) -> bool:
    """A folder, a zip or a DICOMDIR: something scanned for DICOM series, not read as one file."""
    return os.path.isdir(path) or zipfile.is_zipfile(path) or os.path.basename(path).upper() == "DICOMDIR"


@dataclass(frozen=True)
class OpenPlan:
    """What opening some paths does (see the module docstring).

    ``action`` is ``"load"`` (read the file ``target`` directly), ``"scan"`` (scan ``scan`` for DICOM
    series; with ``member``, open that file's series) or ``"nothing"`` (no path exists). ``paths``
    are the existing paths (absolute), ``missing`` those that do not exist; ``note`` says what was
    left out, for the log."""

    action: str
    paths: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    target: str | None = None
    scan: list[str] | str | None = None
    member: str | None = None
    note: str = ""

    @property
    def label(self) -> str:
        """Short text for progress: the file or folder name, or how many items."""
        if self.action == "load" and self.target is not None:
            return os.path.basename(self.target)
        if self.member is not None:
            return os.path.basename(os.path.dirname(self.member))
        return os.path.basename(self.paths[0]) if len(self.paths) == 1 else f"{len(self.paths)} items"

    @property
    def missing_text(self) -> str:
        """The user-facing sentence about missing paths ("" when none is missing)."""
        if not self.missing:
            return ""
        more = f" (and {len(self.missing) - 1} more missing)" if len(self.missing) > 1 else ""
        return f"{self.missing[0]}: no such file or folder{more}"


def _siblings(member: str) -> list[str]:
    folder = os.path.dirname(member)
    with os.scandir(folder) as entries:
        files = sorted(e.path for e in entries if e.is_file() and not e.name.startswith("."))
    return files if len(files) <= MAX_SIBLINGS else [member]


def plan_open(paths: list[str | os.PathLike]) -> OpenPlan:
    """Decide what opening ``paths`` together does; reads no more than file signatures and, for a
    single DICOM file, the names in its folder."""
    every = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
    missing = [p for p in every if not os.path.exists(p)]
    found = [p for p in every if os.path.exists(p)]
    if not found:
        return OpenPlan("nothing", missing=missing)
    volume_files = [p for p in found if os.path.isfile(p) and is_volume_file(p)]
    if volume_files:
        note = (f"{len(found)} items opened together; showing {volume_files[0]} (one image at a time)"
                if len(found) > 1 else "")
        return OpenPlan("load", found, missing, target=volume_files[0], note=note)
    first = found[0]
    if len(found) == 1 and os.path.isfile(first) and not is_dicom_collection(first):
        if not has_dicom_preamble(first):
            return OpenPlan("load", found, missing, target=first)
        return OpenPlan("scan", found, missing, scan=_siblings(first), member=first)
    return OpenPlan("scan", found, missing, scan=found if len(found) > 1 else first)


def choose_series(result: ScanResult, series: str | int | None) -> SeriesInfo:
    """The series to load from a scan: the one asked for, or the only image series."""
    if series is not None:
        chosen = result.find_series(series)
        if chosen.kind != "image":
            raise NoImagesError(f"{result.root}: series {chosen.label()} is a {chosen.kind} object, not an image")
        return chosen
    images = result.all_series(images_only=True)
    if not images:
        found = result.all_series()
        what = ("; it holds only non-image objects:\n" + describe_series(found)) if found else ""
        bad = f" ({len(result.problems)} unreadable: {result.problems[0]} ...)" if result.problems else ""
        raise NoImagesError(f"{result.root}: no DICOM image series found among {result.files_seen} files"
                            f"{bad}{what}")
    if len(images) > 1:
        raise MultipleSeriesError(
            f"{result.root} holds {len(images)} image series; choose one (by UID, series number or @N):\n"
            + describe_series(result.all_series()), images)
    return images[0]


def pick_series(result: ScanResult, series: str | int | None = None,
                member: str | None = None) -> tuple[SeriesInfo, str]:
    """The series to open after a scan, and a note when it was a choice among several.

    With ``member`` (a single DICOM file opened), that file's series (a non-image object raises
    :class:`NoImagesError`). Otherwise :func:`choose_series`, except that of several image series
    the largest is taken and the note says so (the user can open another from the series list)."""
    if member is not None:
        owner = [s for s in result.all_series() if any(f.path == member for f in s.files)]
        if owner and owner[0].kind == "image":
            return owner[0], ""
        if owner:
            raise NoImagesError(f"{member}: a {owner[0].kind} object, not an image")
    try:
        return choose_series(result, series), ""
    except MultipleSeriesError as exc:
        chosen = max(exc.series, key=lambda s: (s.frames or s.instance_count))
        return chosen, (f"{result.root}: {len(exc.series)} image series; opened the largest "
                        f"({chosen.label()}). Double-click another in the series list.")
