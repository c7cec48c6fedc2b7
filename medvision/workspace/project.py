"""An annotation project: a folder of cases, each an image reference, its labels, a status and a
history, with one label table shared by every case.

Layout of a project folder::

    project.json            the project: name, shared label table, cases (written atomically)
    labels/<case id>.nii.gz  each case's labels (+ <case id>.labels.json), written atomically

Images stay where they are (paths relative to the project folder when they lie inside it, so a
project folder can be moved with its data). Fine-tuning trains on the cases marked done (or
reviewed); :meth:`Project.datalist` writes them as a MONAI-style datalist.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.atomic import write_text
from ..core.labels import LabelMap, LabelTable
from ..io.labels import load_labels, save_labels

__all__ = ["STATUSES", "Case", "Project", "ProjectError"]

STATUSES = ("todo", "in progress", "done", "reviewed")
PROJECT_FILE = "project.json"


class ProjectError(Exception):
    """A project folder that cannot be used as asked (message for the user)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


@dataclass
class Case:
    id: str
    image: str  # path, relative to the project folder when inside it
    series: str | None = None  # Series Instance UID when the image path holds several series
    status: str = "todo"
    annotator: str = ""
    created: str = field(default_factory=_now)
    modified: str = ""
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        status = d.get("status", "todo")
        if status not in STATUSES:
            raise ProjectError(f"case {d.get('id')!r}: unknown status {status!r}")
        return cls(id=str(d["id"]), image=str(d["image"]), series=d.get("series"), status=status,
                   annotator=str(d.get("annotator", "")), created=str(d.get("created", "")),
                   modified=str(d.get("modified", "")), history=list(d.get("history", [])))


class Project:
    def __init__(self, folder: Path, name: str, table: LabelTable, cases: list[Case]) -> None:
        self.folder = Path(folder)
        self.name = name
        self.table = table
        self.cases = cases

    # ---- files ------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike, name: str | None = None, table: LabelTable | None = None) -> Project:
        folder = Path(folder)
        if (folder / PROJECT_FILE).exists():
            raise ProjectError(f"{folder} already holds a project")
        folder.mkdir(parents=True, exist_ok=True)
        project = cls(folder, name or folder.name, table or LabelTable(), [])
        project.save()
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Project:
        folder = Path(folder)
        path = folder / PROJECT_FILE if folder.is_dir() else folder
        if not path.exists():
            raise ProjectError(f"{folder}: not a medvision project (no {PROJECT_FILE})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            table = LabelTable.from_json(json.dumps(data.get("labels", [])))
            cases = [Case.from_dict(c) for c in data.get("cases", [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProjectError(f"{path}: damaged project file ({exc})") from exc
        ids = [c.id for c in cases]
        if len(set(ids)) != len(ids):
            raise ProjectError(f"{path}: case ids appear twice")
        return cls(path.parent, str(data.get("name", path.parent.name)), table, cases)

    def save(self) -> None:
        data = {"format": "medvision-project", "version": 1, "name": self.name,
                "labels": [la.as_dict() for la in self.table], "cases": [c.as_dict() for c in self.cases]}
        write_text(self.folder / PROJECT_FILE, json.dumps(data, indent=1))

    # ---- cases ------------------------------------------------------------------------------
    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise ProjectError(f"no case {case_id!r} in project {self.name!r}")

    def _stored_path(self, image: str | os.PathLike) -> str:
        image = Path(image).expanduser().resolve()
        try:
            return image.relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(image)

    def image_path(self, case: Case) -> Path:
        p = Path(case.image)
        return p if p.is_absolute() else self.folder / p

    def labels_path(self, case: Case) -> Path:
        return self.folder / "labels" / f"{case.id}.nii.gz"

    def add_case(self, image: str | os.PathLike, case_id: str | None = None, series: str | None = None) -> Case:
        if not Path(image).exists():
            raise ProjectError(f"{image}: no such file or folder")
        base = case_id or re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(image).name.split(".")[0]) or "case"
        cid, n = base, 2
        taken = {c.id for c in self.cases}
        while cid in taken:
            cid, n = f"{base}_{n}", n + 1
        case = Case(cid, self._stored_path(image), series)
        case.history.append({"time": case.created, "user": _user(), "event": "added"})
        self.cases.append(case)
        self.save()
        return case

    def set_status(self, case_id: str, status: str, user: str | None = None) -> Case:
        if status not in STATUSES:
            raise ProjectError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
        case = self.case(case_id)
        if case.status != status:
            user = user or _user()
            case.status, case.modified = status, _now()
            if status in ("in progress", "done") and not case.annotator:
                case.annotator = user
            case.history.append({"time": case.modified, "user": user, "event": f"status {status}"})
            self.save()
        return case

    def with_status(self, *statuses: str) -> list[Case]:
        return [c for c in self.cases if c.status in statuses]

    def next_case(self, after: str | None = None, statuses=("todo", "in progress")) -> Case | None:
        """The next case (after ``after`` in list order, wrapping) whose status is in ``statuses``."""
        if not self.cases:
            return None
        start = 0
        if after is not None:
            start = next((i + 1 for i, c in enumerate(self.cases) if c.id == after), 0)
        for k in range(len(self.cases)):
            c = self.cases[(start + k) % len(self.cases)]
            if c.status in statuses and c.id != after:
                return c
        return None

    # ---- labels -----------------------------------------------------------------------------
    def load_labels(self, case: Case, image) -> LabelMap:
        """The case's labels on ``image``'s grid (an empty map with the project's table when none)."""
        path = self.labels_path(case)
        if path.exists():
            lm = load_labels(path, reference=image)
            for la in self.table:  # labels added to the project since: rows for them too
                if la.value not in lm.table:
                    lm.table.labels[la.value] = la
            return lm
        return LabelMap.empty_like(image, table=self.table.copy(), name=case.id)

    def save_labels(self, case: Case, labels: LabelMap, user: str | None = None) -> Path:
        path = save_labels(labels, self.labels_path(case))
        case.modified = _now()
        if case.status == "todo":
            case.status = "in progress"
            case.annotator = case.annotator or (user or _user())
        case.history.append({"time": case.modified, "user": user or _user(), "event": "labels saved"})
        for la in labels.table:  # the shared table learns new labels
            if la.value not in self.table:
                self.table.labels[la.value] = la
        self.save()
        return path

    def datalist(self, statuses=("done", "reviewed")) -> dict:
        """MONAI-style ``{"labels": {...}, "training": [{"image", "label"}]}`` of the finished cases
        that have labels (absolute paths)."""
        training = []
        for c in self.with_status(*statuses):
            if self.labels_path(c).exists():
                item = {"image": str(self.image_path(c).resolve()), "label": str(self.labels_path(c).resolve()),
                        "case": c.id}
                if c.series:
                    item["series"] = c.series
                training.append(item)
        labels = {"background": 0} | {la.name: la.value for la in self.table}
        return {"name": self.name, "labels": labels, "training": training}
