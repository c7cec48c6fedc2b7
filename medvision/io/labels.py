"""Label maps in files: NIfTI/NRRD plus a JSON label table, ITK-SNAP label descriptions, and
placing labels made on another grid onto an image's grid (:func:`.placement.onto_grid`, kept here by name).

``save_labels(lm, "case.nii.gz")`` writes ``case.nii.gz`` and ``case.labels.json`` (names, colours,
lock and visibility, terminology codes), each atomically. ``load_labels`` reads the JSON beside the
file when there is one, else an ITK-SNAP ``.label`` file of the same name, else names the values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..core.atomic import write_text
from ..core.labels import LabelMap, LabelTable
from ..core.volume import Volume
from .errors import MedvisionIOError, UnsupportedDataError
from .placement import onto_grid
from .volumes import read_volume, suffix_of, write_volume

__all__ = ["save_labels", "load_labels", "table_path_for", "read_itksnap_labels", "onto_grid"]

log = logging.getLogger(__name__)


def table_path_for(path: str | os.PathLike) -> Path:
    """``case.nii.gz`` -> ``case.labels.json`` (beside it)."""
    path = Path(path)
    stem = path.name[: -len(suffix_of(path))] if suffix_of(path) else path.stem
    return path.with_name(stem + ".labels.json")


def save_labels(labels: LabelMap, path: str | os.PathLike, *, compress: bool = True, fast: bool = False,
                private: bool = False) -> Path:
    """Write the label array (NIfTI/NRRD/MHA by suffix) and its JSON table beside it, each
    atomically. ``fast``: the quickest compression (autosave); ``private``: owner-only files (the
    recovery area)."""
    path = Path(path)
    volume = Volume(labels.array, labels.affine, None, {})
    write_volume(volume, path, compress=compress, level=1 if fast else -1, private=private)
    # the table names the voxels it was written with: a table left from another version of the file
    # (a crash between the two writes, a file replaced by hand) is said when it is read
    write_text(table_path_for(path), labels.table.to_json(labels_sha256=voxels_sha256(labels.array)),
               private=private)
    return path


def voxels_sha256(array: np.ndarray) -> str:
    """The digest of a label array's voxels ((z, y, x), as uint8 when its values allow, else uint16):
    the same for the array saved and the array read back from any of the label formats."""
    canonical = np.ascontiguousarray(array, dtype=np.uint8 if array.max(initial=0) <= 255 else np.uint16)
    return hashlib.sha256(canonical.data).hexdigest()


_ITKSNAP_LINE = re.compile(r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d)\s+(\d)\s+"(.*)"\s*$')


def read_itksnap_labels(path: str | os.PathLike) -> LabelTable:
    """An ITK-SNAP label description file (``IDX R G B A VIS MSH "LABEL"`` lines)."""
    table = LabelTable()
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        m = _ITKSNAP_LINE.match(line)
        if not m:
            raise MedvisionIOError(f"{path}: not an ITK-SNAP label description line: {line.strip()[:80]!r}")
        value = int(m.group(1))
        if value == 0:
            continue
        alpha = int(round(float(m.group(5)) * 255))
        table.add(m.group(8), (int(m.group(2)), int(m.group(3)), int(m.group(4)), alpha), value=value,
                  visible=m.group(6) == "1")
    return table


def _find_table(path: Path, array: np.ndarray, warnings: list[str]) -> LabelTable | None:
    json_path = table_path_for(path)
    if json_path.exists():
        try:
            text = json_path.read_text(encoding="utf-8")
            table = LabelTable.from_json(text)
            data = json.loads(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise MedvisionIOError(f"{json_path}: not a label table ({exc})") from exc
        digest = data.get("labels_sha256") if isinstance(data, dict) else None
        if isinstance(digest, str) and digest != voxels_sha256(array):
            warnings.append(f"{json_path.name} was saved with another version of {path.name} (the file was "
                            "changed after its label table, or the save was cut short): check the label names "
                            "and colours")
        return table
    stem = json_path.name[: -len(".labels.json")]
    for candidate in (path.with_name(stem + ".label"), path.with_name(stem + ".txt")):
        if candidate.exists():
            try:
                return read_itksnap_labels(candidate)
            except MedvisionIOError:
                continue
    return None


def load_labels(path: str | os.PathLike, reference: Volume | None = None,
                table: LabelTable | None = None) -> LabelMap:
    """Read a label file; with ``reference``, the labels come back on its grid (see
    :func:`onto_grid`; a resampling is logged and recorded in ``lm.placement``).

    DICOM SEG and RTSTRUCT files are read too (an RTSTRUCT needs ``reference``: the series its
    contours were drawn on)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() not in (".gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        from .rtstruct import is_rtstruct, read_rtstruct
        from .seg import is_seg, read_seg

        if is_seg(path):
            return read_seg(path, reference)
        if is_rtstruct(path):
            if reference is None:
                raise UnsupportedDataError(f"{path}: an RT structure set is read onto the image series it was "
                                           "drawn on: open that series first")
            return read_rtstruct(path, reference)
    volume = read_volume(path)
    if volume.is_4d:
        raise UnsupportedDataError(f"{path}: a 4D image is not a label map")
    array = volume.array
    if array.dtype.kind == "f":
        if not np.array_equal(array, np.round(array)):
            raise UnsupportedDataError(f"{path}: holds non-integer values; a label map holds whole numbers "
                                       "(is this a probability map or an image?)")
        array = array.astype(np.int64)
    if array.dtype.kind not in "iub":
        raise UnsupportedDataError(f"{path}: {array.dtype} data is not a label map")
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise UnsupportedDataError(f"{path}: values {array.min()}..{array.max()} are outside 0..65535")
    array = array.astype(np.uint8 if array.max(initial=0) <= 255 else np.uint16)
    warnings: list[str] = []
    found = None if table is not None else _find_table(path, array, warnings)
    affine = volume.affine
    placement = "as stored"
    if reference is not None:
        array, placement = onto_grid(array, affine, reference)
        affine = reference.affine
        if placement == "resampled":
            log.warning("%s: labels were on another grid and were resampled (nearest neighbour) onto the image", path)
    table = table or found or LabelTable.default_for(np.unique(array))
    for v in np.unique(array):  # values present but missing from the table still get a row
        if v and int(v) not in table:
            table.add(value=int(v))
    lm = LabelMap(array, affine, table, name=path.name)
    lm.placement = placement
    for w in warnings:
        log.warning("%s", w)
    lm.metadata["warnings"] = warnings
    return lm
