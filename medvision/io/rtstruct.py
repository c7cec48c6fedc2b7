"""DICOM RT Structure Sets (RTSTRUCT) -> LabelMap: contours rasterized onto the image they were drawn on.

An RTSTRUCT holds outlines, not voxels: each ROI (StructureSetROISequence) has closed planar
contours in patient coordinates (LPS mm, ROIContourSequence > ContourSequence > ContourData). Reading
one needs the image grid to fill them on: the series the structure set references (same Frame of
Reference). Each ROI becomes one label value (1..N in ROI order) named by ROIName and coloured by
ROIDisplayColor. The contours of an ROI on one slice are filled with the even-odd rule, so a contour
inside another is a hole, as planning systems mean it; a voxel is inside when its centre is. Where ROIs
overlap the later one wins and ``labels.metadata["overlaps"]`` says which.

pydicom and numpy only (highdicom does not read RTSTRUCT).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.jobs import Job, Progress, run_job
from ..core.labels import LabelMap, LabelTable
from ..core.volume import Volume
from .dicom.files import FileRef, read_dataset
from .errors import MedvisionIOError, UnsupportedDataError

__all__ = ["RTSTRUCT_SOP_CLASS", "is_rtstruct", "referenced_series_uids", "read_rtstruct", "read_rtstruct_job",
           "polygon_fill"]

log = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
#: contour types that enclose a region (CLOSEDPLANAR_XOR says explicitly what even-odd does anyway)
_FILLED = {"CLOSED_PLANAR", "CLOSEDPLANAR_XOR"}
#: a contour whose points spread over more slices than this is not in the plane of the slices
_PLANAR_TOLERANCE = 0.25
#: contours further than this (in slices) from a grid slice are reported as lying between slices
_BETWEEN_TOLERANCE = 0.1


def is_rtstruct(path: str | os.PathLike) -> bool:
    """True for a DICOM RT Structure Set (by SOP Class, or Modality RTSTRUCT), also without the
    Part 10 preamble, as some planning systems write them."""
    import pydicom

    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    preamble = len(head) == 132 and head[128:] == b"DICM"
    # a bare dataset starts with a group 0002 or 0008 tag (little endian); anything else is not DICOM
    if not preamble and head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not preamble,
                             specific_tags=["SOPClassUID", "Modality"])
        sop, modality = str(ds.get("SOPClassUID", "") or ""), str(ds.get("Modality", "") or "")
    except Exception:  # noqa: BLE001 - anything unreadable is not an RTSTRUCT
        return False
    return sop == RTSTRUCT_SOP_CLASS or modality.upper() == "RTSTRUCT"


def _read(path: Path):
    ds = read_dataset(FileRef(str(path)), headers_only=True)
    sop, modality = str(ds.get("SOPClassUID", "") or ""), str(ds.get("Modality", "") or "")
    if sop != RTSTRUCT_SOP_CLASS and modality.upper() != "RTSTRUCT":
        raise MedvisionIOError(f"{path}: not a DICOM RT Structure Set (Modality {modality or '-'}, "
                               f"SOP Class {sop or '-'})")
    return ds


def referenced_series_uids(path: str | os.PathLike) -> list[str]:
    """The Series Instance UIDs the structure set was drawn on (ReferencedFrameOfReferenceSequence >
    RTReferencedStudySequence > RTReferencedSeriesSequence), in file order."""
    return _series_uids(_read(Path(path)))


def _series_uids(ds) -> list[str]:
    out: list[str] = []
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for study in frame.get("RTReferencedStudySequence", []) or []:
            for series in study.get("RTReferencedSeriesSequence", []) or []:
                uid = str(series.get("SeriesInstanceUID", "") or "")
                if uid and uid not in out:
                    out.append(uid)
    return out


# ---- the polygon fill ---------------------------------------------------------------------------
def polygon_fill(xy: np.ndarray | Sequence, shape_yx: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
    """Pixels whose centres lie inside the closed polygon ``xy`` ((column, row) pairs in pixel units,
    centres at integers) by the even-odd rule, as a box within ``shape_yx`` and its boolean mask.

    A centre exactly on an edge is inside on the left and top edges and outside on the right and
    bottom ones (a polygon of area A covers about A pixels; the same rule as
    ``annotate.contours.polygon_mask``). One vectorised scanline pass, no loop over edges.
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    ny, nx = int(shape_yx[0]), int(shape_yx[1])
    empty = (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
    if len(pts) < 3:
        return empty
    x, y = pts[:, 0], pts[:, 1]
    y_lo, y_hi = max(0, int(np.ceil(y.min()))), min(ny - 1, int(np.floor(y.max())))
    x_lo, x_hi = max(0, int(np.ceil(x.min()))), min(nx - 1, int(np.floor(x.max())))
    if y_lo > y_hi or x_lo > x_hi:
        return empty
    x0, y0, x1, y1 = x, y, np.roll(x, -1), np.roll(y, -1)
    keep = y0 != y1  # horizontal edges cross no row
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    rows = np.arange(y_lo, y_hi + 1, dtype=np.float64)
    n_rows, width = len(rows), x_hi - x_lo + 1
    # an edge crosses row r when exactly one end is at or above it (half-open: a vertex counts once)
    r_i, e_i = np.nonzero((y0[None, :] <= rows[:, None]) != (y1[None, :] <= rows[:, None]))
    x_at = x0[e_i] + (rows[r_i] - y0[e_i]) * (x1[e_i] - x0[e_i]) / (y1[e_i] - y0[e_i])
    # pixel column c lies left of the crossing (c < x_at) exactly when c < ceil(x_at)
    k = np.clip(np.ceil(x_at) - x_lo, 0, width).astype(np.intp)
    counts = np.bincount(r_i * (width + 1) + k, minlength=n_rows * (width + 1)).reshape(n_rows, width + 1)
    right_of = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # right_of[:, j]: crossings with k >= j
    inside = (right_of[:, 1:] & 1).astype(bool)  # an odd number of crossings to the right of the centre
    return (slice(y_lo, y_hi + 1), slice(x_lo, x_hi + 1)), inside


# ---- the structure set --------------------------------------------------------------------------
@dataclass
class _Roi:
    number: int
    name: str
    color: tuple[int, int, int, int] | None
    frame_uid: str
    interpreted_type: str = ""
    contours: list[np.ndarray] = field(default_factory=list)  # closed contours, (n, 3) LPS mm
    other_types: dict[str, int] = field(default_factory=dict)  # POINT, OPEN_PLANAR... -> count
    bad: int = 0  # contours whose data could not be used


def _color(value: Any) -> tuple[int, int, int, int] | None:
    try:
        rgb = [int(round(float(c))) for c in value]
    except (TypeError, ValueError):
        return None
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        return None
    return (rgb[0], rgb[1], rgb[2], 255)


def _rois(ds) -> list[_Roi]:
    frames = [str(f.get("FrameOfReferenceUID", "") or "") for f in ds.get("ReferencedFrameOfReferenceSequence", [])]
    frames = [f for f in frames if f] or [str(ds.get("FrameOfReferenceUID", "") or "")]
    only_frame = frames[0] if len(set(frames)) == 1 else ""
    rois: dict[int, _Roi] = {}
    for item in ds.get("StructureSetROISequence", []) or []:
        number = int(item.get("ROINumber", len(rois) + 1))
        name = str(item.get("ROIName", "") or "").strip() or f"ROI {number}"
        frame_uid = str(item.get("ReferencedFrameOfReferenceUID", "") or "") or only_frame
        rois[number] = _Roi(number, name, None, frame_uid)
    for obs in ds.get("RTROIObservationsSequence", []) or []:
        roi = rois.get(int(obs.get("ReferencedROINumber", -1)))
        if roi is not None:
            roi.interpreted_type = str(obs.get("RTROIInterpretedType", "") or "")
    for item in ds.get("ROIContourSequence", []) or []:
        number = int(item.get("ReferencedROINumber", -1))
        roi = rois.get(number)
        if roi is None:  # contours of an ROI the set does not describe: keep them, unnamed
            roi = rois[number] = _Roi(number, f"ROI {number}", None, only_frame)
        roi.color = _color(item.get("ROIDisplayColor"))
        for contour in item.get("ContourSequence", []) or []:
            kind = str(contour.get("ContourGeometricType", "") or "").upper()
            if kind not in _FILLED:
                roi.other_types[kind or "untyped"] = roi.other_types.get(kind or "untyped", 0) + 1
                continue
            try:
                data = np.asarray([float(v) for v in contour.get("ContourData", []) or []], dtype=np.float64)
            except (TypeError, ValueError):
                data = np.zeros(0)
            if data.size < 9 or data.size % 3 or not np.all(np.isfinite(data)):
                roi.bad += 1
                continue
            roi.contours.append(data.reshape(-1, 3))
    return list(rois.values())


def _describe_reference(reference: Volume) -> str:
    meta = reference.metadata
    return f"the image ({meta.get('description') or meta.get('series_uid') or 'the reference volume'})"


def _check_frames(path: Path, rois: list[_Roi], reference: Volume, uids: list[str],
                  notes: list[str]) -> list[_Roi]:
    """The ROIs drawn in the reference's frame of reference (or in none named); an error when no ROI
    with contours is."""
    ref_frame = reference.frame_of_reference_uid
    if not ref_frame:
        return rois
    other = [r for r in rois if r.frame_uid and r.frame_uid != ref_frame]
    same = [r for r in rois if r not in other]
    if not any(r.contours for r in same):
        frames = ", ".join(sorted({r.frame_uid for r in other if r.contours}))
        series = f" (it was drawn on series {', '.join(uids)})" if uids else ""
        raise MedvisionIOError(
            f"{path}: the structure set's contours are in frame of reference {frames}, but "
            f"{_describe_reference(reference)} is in {ref_frame}: open it on the series it was drawn on{series}")
    if other:
        notes.append(f"ROIs in another frame of reference are not drawn: {', '.join(r.name for r in other)}")
    return same


def _slice_masks(path: Path, roi: _Roi, reference: Volume, notes: list[str]) -> dict[int, np.ndarray]:
    """The ROI's filled outline on each slice of the reference grid (even-odd within a slice)."""
    nz, ny, nx = reference.shape
    planes: dict[float, list[np.ndarray]] = defaultdict(list)
    outside = 0
    for pts in roi.contours:
        idx = np.round(reference.world_to_index(pts), 6)  # drop float noise: centres on edges stay stable
        z = idx[:, 2]
        spread = float(np.ptp(z))
        if spread > _PLANAR_TOLERANCE:
            raise UnsupportedDataError(
                f"{path}: ROI {roi.name!r} has a contour that is not in the plane of the slices of "
                f"{_describe_reference(reference)} (its points span {spread:.2f} slices; an oblique plane?): "
                "contours are filled on the slices of the image they were drawn on; open the series the "
                "structure set references")
        centre = float(z.mean())
        if not -0.5 <= centre < nz - 0.5:
            outside += 1
            continue
        planes[round(centre, 3)].append(idx[:, :2])
    # contours from several planes that round onto one slice (a set drawn on thinner slices): keep the nearest
    nearest: dict[int, float] = {}
    for centre in planes:
        s = int(np.floor(centre + 0.5))
        if s not in nearest or abs(centre - s) < abs(nearest[s] - s):
            nearest[s] = centre
    dropped = len(planes) - len(nearest)
    worst = max((abs(c - s) for s, c in nearest.items()), default=0.0)
    if outside:
        notes.append(f"ROI {roi.name!r}: {outside} contours lie outside the image's slices and were skipped")
    if dropped:
        notes.append(f"ROI {roi.name!r}: {dropped} contour planes lay between the image's slices and were "
                     "dropped (the structure set was drawn on thinner slices?); each slice took the nearest plane")
    elif worst > _BETWEEN_TOLERANCE:
        notes.append(f"ROI {roi.name!r}: contours lie up to {worst:.2f} slices off the image's slices; each "
                     "went to the nearest slice")
    if roi.bad:
        notes.append(f"ROI {roi.name!r}: {roi.bad} contours with unusable ContourData were skipped")
    masks: dict[int, np.ndarray] = {}
    for s, centre in sorted(nearest.items()):
        mask = np.zeros((ny, nx), bool)
        for xy in planes[centre]:
            box, inside = polygon_fill(xy, (ny, nx))
            mask[box] ^= inside  # even-odd across the contours too: one inside another is a hole
        masks[s] = mask
    return masks


def read_rtstruct_job(path: str | os.PathLike, reference: Volume) -> Job[LabelMap]:
    """Job form of :func:`read_rtstruct`: yields progress per ROI, returns the label map."""
    path = Path(path)
    yield Progress("reading structure set", 0, 0, str(path))
    ds = _read(path)
    rois = _rois(ds)
    uids = _series_uids(ds)
    if not rois:
        raise MedvisionIOError(f"{path}: the structure set describes no ROIs")
    fillable = [r for r in rois if r.contours]
    if not fillable:
        others = sorted({k for r in rois for k in r.other_types})
        if others:
            raise MedvisionIOError(
                f"{path}: its ROIs hold only {', '.join(others)} contours (markers, points or lines, such as "
                f"isocentres), no closed outlines to fill ({', '.join(r.name for r in rois[:10])})")
        raise MedvisionIOError(f"{path}: the structure set holds no contours for any of its ROIs "
                               f"({', '.join(r.name for r in rois[:10])})")
    notes: list[str] = []
    rois = _check_frames(path, rois, reference, uids, notes)
    skipped = [r.name for r in rois if not r.contours and r.other_types]
    if skipped:
        notes.append(f"ROIs with only point or open contours are not labels: {', '.join(skipped)}")
    kept = [r for r in rois if r.contours or not r.other_types]  # an ROI without contours yet stays a label
    table = LabelTable()
    array = np.zeros(reference.shape, np.uint8 if len(kept) <= 255 else np.uint16)
    overlaps: list[dict[str, Any]] = []
    for value, roi in enumerate(kept, start=1):
        yield Progress("filling contours", value - 1, len(kept), roi.name)
        table.add(roi.name, roi.color, value=value)
        hit = np.zeros(value, np.int64)
        for s, mask in _slice_masks(path, roi, reference, notes).items():
            plane = array[s]
            under = plane[mask]
            hit += np.bincount(under, minlength=value)[:value]
            plane[mask] = value
        for earlier in np.nonzero(hit[1:])[0] + 1:
            overlaps.append({"roi": roi.name, "over": table[int(earlier)].name, "voxels": int(hit[earlier])})
            notes.append(f"ROI {roi.name!r} overlaps {table[int(earlier)].name!r} in {int(hit[earlier])} voxels; "
                         "they went to the later ROI (a voxel holds one label)")
    yield Progress("filling contours", len(kept), len(kept))
    for note in notes:
        log.warning("%s: %s", path.name, note)
    lm = LabelMap(array, reference.affine.copy(), table, name=path.name)
    lm.placement = "rasterized"
    lm.metadata.update(
        source="RTSTRUCT", structure_set_label=str(ds.get("StructureSetLabel", "") or ""),
        referenced_series=uids, roi_numbers={v: r.number for v, r in enumerate(kept, start=1)},
        roi_types={v: r.interpreted_type for v, r in enumerate(kept, start=1) if r.interpreted_type},
        skipped_rois=skipped, overlaps=overlaps, warnings=notes)
    return lm


def read_rtstruct(path: str | os.PathLike, reference: Volume) -> LabelMap:
    """Read an RT Structure Set as a label map on ``reference``'s grid (the series it was drawn on).

    Raises :class:`MedvisionIOError` when the file is not an RTSTRUCT, holds nothing to fill, or lies
    in another frame of reference than ``reference``; :class:`UnsupportedDataError` for contours
    that are not in the plane of the reference's slices.
    """
    return run_job(read_rtstruct_job(path, reference))
