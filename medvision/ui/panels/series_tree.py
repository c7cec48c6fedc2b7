"""The series browser's tree model: a row for each patient, study and series of a DICOM index's
contents (patients by name, studies newest first, series by number), and the texts the rows show."""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QStandardItem, QStandardItemModel

from ...io.derived import is_synthetic_text
from ...io.dicom.files import FileRef
from ...io.dicom.index import PatientInfo, ScanResult, SeriesInfo, StudyInfo
from .series_thumbnails import glyph, thumbnail_name

__all__ = [
    "ROLE_NODE", "ROLE_INFO", "ROLE_SEARCH", "COLUMNS", "KIND_NAMES",
    "node_files", "node_folders", "node_label", "new_model", "TreeBuilder",
]

ROLE_NODE = Qt.ItemDataRole.UserRole + 1  # "patient:..", "study:..", "series:.." (stable across refreshes)
ROLE_INFO = Qt.ItemDataRole.UserRole + 2  # the PatientInfo / StudyInfo / SeriesInfo
ROLE_SEARCH = Qt.ItemDataRole.UserRole + 3  # lower-case text the filter matches

COLUMNS = ("Patient / study / series", "Details", "Modality", "Images", "Size")
SYNTHETIC_BRUSH = QBrush(QColor(200, 60, 200))  # a series a model made
KIND_NAMES = {
    "SEG": "segmentation", "RTSTRUCT": "RT structure set", "SR": "structured report", "KO": "key object selection",
    "PR": "presentation state", "DOC": "encapsulated document", "RAW": "raw data", "RTPLAN": "RT plan",
    "REG": "registration", "FID": "fiducials", "RTRECORD": "RT treatment record", "ECG": "waveform",
    "OTHER": "non-image object",
}


# ---- text helpers ------------------------------------------------------------------------------
def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _person(name: str) -> str:
    parts = [p.strip() for p in name.split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:] if p)
    return f"{family}, {given}" if family and given else (family or given or "(no name)")


def node_files(info: PatientInfo | StudyInfo | SeriesInfo) -> list[FileRef]:
    """Every file of a patient, study or series."""
    if isinstance(info, SeriesInfo):
        return list(info.files)
    studies = info.studies if isinstance(info, PatientInfo) else [info]
    return [f for st in studies for s in st.series for f in s.files]


def node_folders(info: PatientInfo | StudyInfo | SeriesInfo) -> list[str]:
    """The fewest folders (or zip files) that hold every file of the node."""
    places = sorted({f.path if f.member else os.path.dirname(f.path) for f in node_files(info)})
    out: list[str] = []
    for p in places:
        if not out or not (p + os.sep).startswith(out[-1].rstrip(os.sep) + os.sep):
            out.append(p)
    return out


def node_label(info: PatientInfo | StudyInfo | SeriesInfo) -> str:
    """The text of the node's first column."""
    if isinstance(info, PatientInfo):
        return f"{_person(info.name)} ({info.id or 'no ID'})"
    if isinstance(info, StudyInfo):
        return f"{_date(info.date) or 'no date'}  {info.description or '(no description)'}"
    num = f"#{info.number} " if info.number is not None else ""
    # a series a model made (medvision inpaint's Series Description) is never taken for an acquired one
    mark = "[SYNTHETIC] " if is_synthetic_text(info.description) else ""
    return f"{mark}{num}{info.description or '(no description)'}"


# ---- the model ---------------------------------------------------------------------------------
def new_model(parent: QObject) -> QStandardItemModel:
    """An empty model with the browser's columns."""
    model = QStandardItemModel(0, len(COLUMNS), parent)
    model.setHorizontalHeaderLabels(list(COLUMNS))
    return model


class TreeBuilder:
    """Builds the model of one refresh. ``items`` maps each node id to its column-0 item, ``thumb_nodes``
    each thumbnail name to the node ids of the rows showing it."""

    def __init__(self, icon_size: int, grey: QColor, thumbnail_icon: Callable[[str], QIcon]) -> None:
        self.icon_size = icon_size
        self.grey = grey
        self.thumbnail_icon = thumbnail_icon  # thumbnail name -> the icon an image series row starts with
        self.items: dict[str, QStandardItem] = {}
        self.thumb_nodes: dict[str, list[str]] = {}

    def build(self, contents: ScanResult, parent: QObject) -> QStandardItemModel:
        """The model of every patient in ``contents`` (sorted by name, then ID)."""
        model = new_model(parent)
        for patient in sorted(contents.patients, key=lambda p: (p.name.lower(), p.id)):
            model.appendRow(self._patient_row(patient))
        return model

    def _row(self, node: str, info, search: str, cells: list[str]) -> list[QStandardItem]:
        items = [QStandardItem(text) for text in cells]
        items[0].setData(node, ROLE_NODE)
        items[0].setData(info, ROLE_INFO)
        items[0].setData(search.lower(), ROLE_SEARCH)
        self.items[node] = items[0]
        return items

    def _patient_row(self, p: PatientInfo) -> list[QStandardItem]:
        search = f"{p.name.replace('^', ' ')} {p.id}"
        details = ", ".join(x for x in (p.sex, f"born {_date(p.birth_date)}" if p.birth_date else "") if x)
        row = self._row(f"patient:{p.id}\x1f{p.name}", p, search,
                        [node_label(p), details, "", f"{len(p.studies)} studies" if len(p.studies) != 1 else "1 study",
                         ""])
        font = row[0].font()
        font.setBold(True)
        row[0].setFont(font)
        for study in sorted(p.studies, key=lambda s: (s.date, s.time), reverse=True):
            row[0].appendRow(self._study_row(study, search))
        return row

    def _study_row(self, st: StudyInfo, search: str) -> list[QStandardItem]:
        search = f"{search} {st.description}"
        modalities = ", ".join(sorted({s.modality for s in st.series if s.modality}))
        n = len(st.series)
        row = self._row(f"study:{st.key}", st, search,
                        [node_label(st), f"Acc. {st.accession}" if st.accession else "", modalities,
                         f"{n} series", ""])
        for series in sorted(st.series, key=lambda s: (s.number is None, s.number or 0, s.description)):
            row[0].appendRow(self._series_row(series, search))
        return row

    def _series_row(self, s: SeriesInfo, search: str) -> list[QStandardItem]:
        image = s.kind == "image"
        n = s.instance_count
        if not image:
            count = f"{n} object{'s' if n != 1 else ''}"
        elif s.frames and s.frames != n:
            count = f"{n} file{'s' if n != 1 else ''}, {s.frames} frames"
        else:
            count = f"{n} image{'s' if n != 1 else ''}"
        if len(s.files) > n:  # the same images indexed in more than one folder (a copy)
            count += f" ({len(s.files)} files)"
        details = s.body_part if image else f"{s.kind}: {KIND_NAMES.get(s.kind, 'non-image object')}"
        size = f"{s.rows} x {s.columns}" if image and s.rows and s.columns else ""
        node = f"series:{s.key}\x1f{s.kind}"
        row = self._row(node, s, f"{search} {s.description} {s.modality} {s.kind}",
                        [node_label(s), details, s.modality, count, size])
        first = s.files[0] if s.files else None
        row[0].setToolTip(f"{s.label()}\nSeries UID {s.uid or '(empty)'}\n{n} files"
                          + (f" in {os.path.dirname(first.path) if not first.member else first.path}" if first else ""))
        if node_label(s).startswith("[SYNTHETIC]"):
            row[0].setForeground(SYNTHETIC_BRUSH)
        if image:
            name = thumbnail_name(s)
            self.thumb_nodes.setdefault(name, []).append(node)
            row[0].setIcon(self.thumbnail_icon(name))
        else:
            row[0].setIcon(glyph(s.kind, self.icon_size, self.grey))
            for item in row:
                item.setForeground(self.grey)
        return row
