"""Scanning DICOM headers into a patients -> studies -> series index, cached in SQLite.

Scanning reads headers only (never pixel data), in parallel processes for large folders. The
index lives in the user data dir; a rescan re-reads only files whose size or modification time
changed, so reopening an indexed folder of 10,000 files costs a directory walk and one query. What one
file's row holds, and how its header is read, is :mod:`.index_records`; here are the cache and the tree.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ...core.atomic import private_file
from ...core.jobs import Job, Progress, run_job
from ...paths import data_dir
from .files import FileRef, FoundFile, iter_source
from .index_records import COLUMNS, header_records
from .pool import map_chunks

log = logging.getLogger(__name__)

__all__ = [
    "DicomIndex", "PatientInfo", "ScanResult", "SeriesInfo", "StudyInfo", "SCHEMA_VERSION", "build_tree",
    "describe_series", "scan",
]

SCHEMA_VERSION = 2
_INT_COLUMNS = {"size", "mtime_ns", "series_number", "instance_number", "rows", "columns", "frames", "blank_uids"}


# ---- the tree a series browser shows ------------------------------------------------------
@dataclass
class SeriesInfo:
    key: str  # the Series Instance UID, or a stand-in when the files leave it empty
    uid: str
    number: int | None
    description: str
    modality: str
    body_part: str
    kind: str  # "image", "SEG", "RTSTRUCT", "SR", ...
    files: list[FileRef] = field(default_factory=list)
    frames: int = 0
    rows: int | None = None
    columns: int | None = None
    blank_uids: bool = False
    study: StudyInfo | None = field(default=None, repr=False)
    #: SOP Instance UIDs seen: a study indexed in two folders (a copy) counts its images once
    sop_uids: set[str] = field(default_factory=set, repr=False)
    unidentified: int = 0  # files without a SOP Instance UID (each counted)

    def add_file(self, ref: FileRef, sop_uid: str | None, frames: int | None) -> None:
        self.files.append(ref)
        if sop_uid and sop_uid in self.sop_uids:
            return  # another copy of an image already counted (the loader reads it once too)
        if sop_uid:
            self.sop_uids.add(sop_uid)
        else:
            self.unidentified += 1
        self.frames += frames or 0

    @property
    def instance_count(self) -> int:
        """Distinct images (objects) of the series; ``len(files)`` is more where copies were indexed."""
        return len(self.sop_uids) + self.unidentified

    def label(self) -> str:
        num = f"#{self.number} " if self.number is not None else ""
        desc = self.description or "(no description)"
        return f"{num}{desc} [{self.modality or '?'}{'' if self.kind == 'image' else ' ' + self.kind}]"

    def as_dict(self) -> dict:
        return {
            "series_uid": self.uid, "key": self.key, "number": self.number, "description": self.description,
            "modality": self.modality, "body_part": self.body_part, "kind": self.kind,
            "instances": self.instance_count, "frames": self.frames, "rows": self.rows,
            "columns": self.columns, "blank_uids": self.blank_uids,
        }


@dataclass
class StudyInfo:
    key: str
    uid: str
    date: str
    time: str
    description: str
    accession: str
    series: list[SeriesInfo] = field(default_factory=list)
    patient: PatientInfo | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "study_uid": self.uid, "date": self.date, "time": self.time, "description": self.description,
            "accession": self.accession, "series": [s.as_dict() for s in self.series],
        }


@dataclass
class PatientInfo:
    id: str
    name: str
    birth_date: str
    sex: str
    studies: list[StudyInfo] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"patient_id": self.id, "name": self.name, "birth_date": self.birth_date, "sex": self.sex,
                "studies": [s.as_dict() for s in self.studies]}


@dataclass
class ScanResult:
    """What a scan found: the patient tree and the files it could not use (with reasons)."""

    root: str
    patients: list[PatientInfo]
    problems: list[str]
    files_seen: int
    files_read: int  # headers actually parsed in this scan (0 on a fully cached rescan)

    def all_series(self, images_only: bool = False) -> list[SeriesInfo]:
        out = [s for p in self.patients for st in p.studies for s in st.series]
        return [s for s in out if s.kind == "image"] if images_only else out

    def find_series(self, selector: str | int) -> SeriesInfo:
        """A series by UID, UID prefix... or by series number (int or digits) or list position ``@N``."""
        series = self.all_series()
        sel = str(selector)
        if sel.startswith("@") and sel[1:].isdigit():
            i = int(sel[1:])
            if 0 <= i < len(series):
                return series[i]
        exact = [s for s in series if sel in (s.uid, s.key)]
        if not exact and sel.isdigit():
            exact = [s for s in series if s.number == int(sel) and s.kind == "image"]
        if not exact:
            exact = [s for s in series if s.uid.startswith(sel) or s.key.startswith(sel)]
        if len(exact) == 1:
            return exact[0]
        from ..errors import MultipleSeriesError, NoImagesError

        if not exact:
            raise NoImagesError(f"{self.root}: no series matches {sel!r}; it holds:\n" + describe_series(series))
        raise MultipleSeriesError(f"{self.root}: {sel!r} matches several series:\n" + describe_series(exact), exact)

    def as_dict(self) -> dict:
        return {"root": self.root, "files_seen": self.files_seen, "problems": self.problems,
                "patients": [p.as_dict() for p in self.patients]}


def describe_series(series: Iterable[SeriesInfo]) -> str:
    return "\n".join(
        f"  @{i}  {s.label()}  {s.instance_count} files  UID {s.uid or '(empty: ' + s.key + ')'}"
        for i, s in enumerate(series)
    )


def build_tree(root: str, rows: list[dict], problems: list[str], files_read: int) -> ScanResult:
    patients: dict[tuple, PatientInfo] = {}
    studies: dict[str, StudyInfo] = {}
    series: dict[tuple[str, bool | str], SeriesInfo] = {}  # (series key, True for images else the kind)
    blank_series = 0
    for r in sorted(rows, key=lambda r: (r["path"], r["member"])):
        if r["status"] != "ok":
            continue
        pkey = (r["patient_id"], r["patient_name"])
        patient = patients.get(pkey)
        if patient is None:
            patient = patients[pkey] = PatientInfo(r["patient_id"], r["patient_name"], r["birth_date"] or "",
                                                   r["sex"] or "")
        study = studies.get(r["study_key"])
        if study is None:
            study = studies[r["study_key"]] = StudyInfo(
                r["study_key"], r["study_uid"], r["study_date"] or "", r["study_time"] or "",
                r["study_description"] or "", r["accession"] or "", patient=patient)
            patient.studies.append(study)
        # objects of different kinds (an RTSTRUCT beside an RTPLAN) never share a browser entry
        skey = (r["series_key"], r["kind"] == "image" or r["kind"])
        s = series.get(skey)
        if s is None:
            s = series[skey] = SeriesInfo(
                r["series_key"], r["series_uid"], r["series_number"], r["series_description"] or "",
                r["modality"] or "", r["body_part"] or "", r["kind"], rows=r["rows"], columns=r["columns"],
                blank_uids=bool(r["blank_uids"]), study=study)
            study.series.append(s)
            blank_series += bool(r["blank_uids"])
        s.add_file(FileRef(r["path"], r["member"]), r["sop_uid"], r["frames"])
    for study in studies.values():
        study.series.sort(key=lambda s: (s.kind != "image", s.number if s.number is not None else 1 << 30,
                                         s.description))
    if blank_series:
        problems = [*problems, f"{blank_series} series have empty Study/Series Instance UIDs; they were "
                               "grouped by patient, study date/time, series number and description"]
    ordered = sorted(patients.values(), key=lambda p: (p.name, p.id))
    for p in ordered:
        p.studies.sort(key=lambda s: (s.date, s.time))
    return ScanResult(root, ordered, problems, len(rows), files_read)


# ---- the SQLite cache -----------------------------------------------------------------------
class DicomIndex:
    """Header index in SQLite. One instance may be shared between threads."""

    def __init__(self, db_path: str | os.PathLike | None = None) -> None:
        self.db_path = Path(db_path) if db_path else data_dir() / "dicom-index.sqlite"
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        private_file(self.db_path)  # patient names and ids: the owner's only (its WAL files follow)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self._db.execute("DROP TABLE IF EXISTS files")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        cols = ", ".join(f"{c} {'INTEGER' if c in _INT_COLUMNS else 'TEXT'}" for c in COLUMNS)
        self._db.execute(f"CREATE TABLE IF NOT EXISTS files ({cols}, PRIMARY KEY (path, member))")
        self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows_under(self, base: str) -> dict[tuple[str, str], dict]:
        """Every cached row whose path is ``base`` or lies below the folder ``base``."""
        base = base.rstrip(os.sep) or os.sep
        lo, hi = base + os.sep, base + chr(ord(os.sep) + 1)
        sql = f"SELECT {', '.join(COLUMNS)} FROM files WHERE path = ? OR (path >= ? AND path < ?)"
        with self._lock:
            cur = self._db.execute(sql, (base, lo, hi))
            return {(r[0], r[1]): dict(zip(COLUMNS, r, strict=True)) for r in cur}

    def _store(self, records: list[dict], removed: Iterable[tuple[str, str]]) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._lock, self._db:
            self._db.executemany("DELETE FROM files WHERE path = ? AND member = ?", list(removed))
            self._db.executemany(f"INSERT OR REPLACE INTO files VALUES ({placeholders})",
                                 [tuple(r[c] for c in COLUMNS) for r in records])

    def prune(self) -> int:
        """Drop the rows of files no longer on disk (their folder deleted or moved, the file removed,
        a drive unmounted); a later scan brings back any that return. One directory listing per
        folder, not one check per file. A folder that cannot be listed for another reason than
        being gone (no permission) keeps its rows. Returns the rows dropped."""
        with self._lock:
            paths = [r[0] for r in self._db.execute("SELECT DISTINCT path FROM files")]
        listings: dict[str, set[str] | None] = {}
        gone = []
        for path in paths:
            folder, name = os.path.split(path)
            if folder not in listings:
                try:
                    listings[folder] = set(os.listdir(folder))
                except (FileNotFoundError, NotADirectoryError):
                    listings[folder] = set()
                except OSError:  # present but unreadable: keep what the index knows
                    listings[folder] = None
            names = listings[folder]
            if names is not None and name not in names:
                gone.append((path,))
        if not gone:
            return 0
        with self._lock, self._db:
            cur = self._db.executemany("DELETE FROM files WHERE path = ?", gone)
        dropped = max(cur.rowcount, 0)
        log.info("dropped %d indexed files no longer on disk (%d paths)", dropped, len(gone))
        return dropped

    def contents(self, prune: bool = True) -> ScanResult:
        """Everything the index holds, as one patient -> study -> series tree (``root`` is "").

        Files no longer on disk are dropped first (:meth:`prune`; ``prune=False`` keeps them), so
        the tree lists only series that can be opened. Fast on large indexes: the series' details
        come from one row per series (the file that sorts first, as a scan would pick it) and only
        the file names are read for every row.
        """
        if prune:
            self.prune()
        meta = ", ".join(c for c in COLUMNS if c not in ("path", "member"))
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot for the reads below
            try:
                firsts = self._db.execute(
                    f"SELECT min(path), member, {meta} FROM files WHERE status = 'ok' GROUP BY series_key, kind"
                ).fetchall()
                files = self._db.execute(
                    "SELECT series_key, kind, path, member, frames, sop_uid FROM files WHERE status = 'ok' "
                    "ORDER BY path, member"
                ).fetchall()
                problems = [r[0] for r in self._db.execute("SELECT error FROM files WHERE status = 'error'")]
                total = self._db.execute("SELECT count(*) FROM files").fetchone()[0]
            finally:
                self._db.execute("COMMIT")
        result = build_tree("", [dict(zip(COLUMNS, r, strict=True)) for r in firsts], problems, 0)
        by_key = {(s.key, s.kind): s for s in result.all_series()}
        for s in by_key.values():
            s.files, s.frames, s.sop_uids, s.unidentified = [], 0, set(), 0
        for key, kind, path, member, frames, sop_uid in files:
            by_key[(key, kind)].add_file(FileRef(path, member), sop_uid, frames)
        result.files_seen = total
        return result

    def forget(self, *paths: str | os.PathLike | FileRef) -> int:
        """Drop the rows of files at or below each path (a zip member when given a FileRef with one).

        The files themselves are untouched; a later scan brings them back. Returns the rows dropped.
        """
        exact: list[tuple[str, str]] = []
        ranges: list[tuple[str, str, str]] = []
        for item in paths:
            if isinstance(item, FileRef) and item.member:
                exact.append((item.path, item.member))
                continue
            base = os.path.abspath(item.path if isinstance(item, FileRef) else os.fspath(item))
            base = base.rstrip(os.sep) or os.sep
            lo = base if base == os.sep else base + os.sep
            ranges.append((base, lo, lo[:-1] + chr(ord(os.sep) + 1)))
        with self._lock, self._db:
            cur = self._db.executemany("DELETE FROM files WHERE path = ? AND member = ?", exact)
            dropped = max(cur.rowcount, 0)
            cur = self._db.executemany("DELETE FROM files WHERE path = ? OR (path >= ? AND path < ?)", ranges)
            dropped += max(cur.rowcount, 0)
        log.info("forgot %d indexed files under %s", dropped, ", ".join(str(p) for p in paths[:3]))
        return dropped

    def scan(self, path: str | os.PathLike | Sequence[str | os.PathLike], *,
             workers: int | None = None) -> Job[ScanResult]:
        """Scan a folder tree, a zip, a DICOMDIR or one file, or a set of these (a list: files
        dropped together); yields progress, returns a ScanResult."""
        sources = ([os.path.abspath(os.fspath(p)) for p in path] if isinstance(path, (list, tuple))
                   else [os.path.abspath(os.fspath(cast("str | os.PathLike", path)))])
        if not sources:
            raise ValueError("nothing to scan")
        path = sources[0] if len(sources) == 1 else os.path.commonpath(sources)
        yield Progress("listing files", 0, 0, path)
        found: list[FoundFile] = []
        for source in sources:
            for f in iter_source(source):
                found.append(f)
                if len(found) % 2000 == 0:
                    yield Progress("listing files", len(found), 0, path)
        is_dicomdir = os.path.isfile(path) and os.path.basename(path).upper() == "DICOMDIR"
        base = os.path.dirname(path) if is_dicomdir else path
        cached = self._rows_under(base)
        found_keys = {(f.ref.path, f.ref.member) for f in found}
        todo = []
        rows = []
        for f in found:
            row = cached.get((f.ref.path, f.ref.member))
            if row is not None and row["size"] == f.size and row["mtime_ns"] == f.mtime_ns:
                rows.append(row)
            else:
                todo.append(f)
        # files gone from a scanned folder leave the index (only when one whole folder was scanned)
        removed = [k for k in cached if k not in found_keys and len(sources) == 1 and os.path.isdir(path)]
        new_records: list[dict] = []
        if todo:
            done = 0
            yield Progress("reading headers", 0, len(todo), f"{len(todo)} new or changed files")
            for chunk in map_chunks(header_records, todo, workers=workers, min_parallel=64):
                new_records.extend(chunk)
                done += len(chunk)
                yield Progress("reading headers", done, len(todo), "")
        if new_records or removed:
            self._store(new_records, removed)
        rows.extend(new_records)
        problems = [r["error"] for r in rows if r["status"] != "ok"]
        return build_tree(path, rows, problems, len(new_records))


def scan(path: str | os.PathLike, index: DicomIndex | None = None) -> ScanResult:
    """Scan and return the ScanResult (no progress reporting)."""
    own = index is None
    index = index or DicomIndex()
    try:
        return run_job(index.scan(path))
    finally:
        if own:
            index.close()
