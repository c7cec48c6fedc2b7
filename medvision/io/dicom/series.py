"""DICOM files of one series -> Volume(s): read each file's header into frames (refusing files whose header does
not describe their pixel data), gather the series' metadata and warnings, plan the stacks and have each built
(:func:`.build.build_volume`: decoding, modality LUT, tilt, resampling)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ...core.jobs import Job, Progress
from ...core.volume import Volume
from ..errors import MedvisionIOError, NoImagesError, NotDicomError, PixelDataError
from .acquisition import acquisition_fields
from .assemble import plan_stacks
from .build import build_volume
from .decode import check_decodable, stored_dtype
from .diffusion import manufacturer
from .files import FileRef, read_dataset
from .frames import Frame, csa_image, frames_from_dataset, has_pixel_data, pixel_info
from .index_records import classify, incomplete_reason
from .pool import map_chunks
from .scaling import apply_philips_scaling

log = logging.getLogger(__name__)

__all__ = ["BLANK_UIDS_WARNING", "FileFrames", "read_file_frames", "read_series_frames", "load_series_job"]

_META_KEYWORDS = {
    "modality": "Modality", "series_uid": "SeriesInstanceUID", "description": "SeriesDescription",
    "series_number": "SeriesNumber", "study_uid": "StudyInstanceUID", "study_description": "StudyDescription",
    "study_date": "StudyDate", "patient_id": "PatientID", "patient_name": "PatientName",
    "manufacturer": "Manufacturer", "model": "ManufacturerModelName", "body_part": "BodyPartExamined",
    "frame_of_reference_uid": "FrameOfReferenceUID", "sop_class_uid": "SOPClassUID",
    "window_center": "WindowCenter", "window_width": "WindowWidth", "units": "RescaleType",
    "derivation": "DerivationDescription",
}


#: said of a series whose Study or Series Instance UID is empty (an anonymiser's quirk)
BLANK_UIDS_WARNING = ("the series' Study/Series Instance UIDs are empty (as some anonymisers leave them): it is "
                      "told apart by its other attributes, and a DICOM SEG made on it gets UIDs medvision generates")


@dataclass
class FileFrames:
    ref: FileRef
    frames: list[Frame] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    error: str | None = None
    error_type: type[MedvisionIOError] = MedvisionIOError
    not_image: str | None = None  # a well-formed object that is not an image (what it is), not an error


def _series_meta(ds) -> dict:
    meta = {}
    for key, keyword in _META_KEYWORDS.items():
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if key.startswith("window_"):
            try:
                value = float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)
            except (TypeError, ValueError, IndexError):
                continue
        elif key == "series_number":
            try:
                value = int(value)
            except (TypeError, ValueError):
                continue
        else:
            value = str(value).strip()
        meta[key] = value
    try:
        meta["acquisition"] = acquisition_fields(ds, csa_image(ds) if manufacturer(ds) == "siemens" else None)
    except Exception as exc:  # noqa: BLE001 - odd private data must not stop loading; the sidecar just has less
        log.debug("acquisition fields not read: %s", exc)
    return meta


def read_file_frames(ref: FileRef, *, with_meta: bool = True) -> FileFrames:
    """The frames of one file, or why it cannot contribute any (message names the file)."""
    out = FileFrames(ref)
    try:
        ds = read_dataset(ref)
        problem = incomplete_reason(ds, str(ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None),
                                                                         "MediaStorageSOPClassUID", "")))
        if problem:
            raise NotDicomError(f"{ref}: {problem}")
        kind = classify(ds)
        if kind != "image":
            out.not_image = f"{ref}: a {kind} object, not an image"
            return out
        if not has_pixel_data(ds):
            if not _is_image_sop_class(ds):
                # e.g. Philips' private series data (XX_*) beside the images: not an image, as dcm2niix skips it
                out.not_image = f"{ref}: a {_sop_name(ds)} object without pixel data, not an image"
                return out
            raise PixelDataError(f"{ref}: the file has no pixel data")
        size_note = _check_sizes(pixel_info(ds), ref, ds)  # before any frame is made: NumberOfFrames may claim billions
        frames = frames_from_dataset(ds, ref)
        if size_note:
            for f in frames:
                f.notes.append(size_note)
        frames = _match_codestream(ds, ref, frames)
        check_decodable(frames[0].pixel, ref)
        _check_orientations(frames, ref)
        _note_rescale(ds, frames)
        out.frames = frames
        if with_meta:
            out.meta = _series_meta(ds)
    except MedvisionIOError as exc:
        out.error = str(exc)
        out.error_type = type(exc)
    except Exception as exc:  # noqa: BLE001 - never let one odd file stop a series
        out.error = f"{ref}: cannot be read ({type(exc).__name__}: {exc})"
    return out


def _fragment_count(ds, ref: FileRef) -> int | None:
    """The fragments of encapsulated pixel data, counted from their item headers (none is read)."""
    from pydicom.tag import Tag

    from .files import open_ref
    from .header import encapsulated_fragments

    raw = ds._dict.get(Tag(0x7FE0, 0x0010))
    tell = getattr(raw, "value_tell", None)
    if tell is None or getattr(raw, "length", None) != 0xFFFFFFFF or getattr(raw, "value", None) is not None:
        return None
    try:
        with open_ref(ref) as fp:
            fp.seek(tell)
            return encapsulated_fragments(fp, getattr(raw, "is_little_endian", True))[1]
    except (OSError, ValueError):
        return None


def _check_sizes(p, ref: FileRef, ds=None) -> str:
    """The sizes the header declares (Rows, Columns, BitsAllocated, samples, NumberOfFrames) against the bytes
    present: a header that does not describe its pixel data is refused before anything is allocated."""
    if p.rows <= 0 or p.columns <= 0:
        raise PixelDataError(f"{ref}: Rows/Columns are missing or zero")
    size = _file_size(ref)
    if p.compressed:  # every frame is at least one fragment: an item header of 8 bytes
        if size is not None and p.n_frames * 8 > size:
            raise PixelDataError(f"{ref}: declares {p.n_frames} frames (NumberOfFrames), but the file holds only "
                                 f"{size} bytes: the header is damaged")
        fragments = _fragment_count(ds, ref)
        if fragments is not None and p.n_frames > fragments:
            raise PixelDataError(f"{ref}: declares {p.n_frames} frames (NumberOfFrames), but its compressed pixel "
                                 f"data holds {fragments} fragment(s), and every frame needs one: the header is "
                                 "damaged")
        return ""
    samples = 2 if p.photometric == "YBR_FULL_422" else p.samples_per_pixel  # chroma subsampled
    frame_bytes = p.rows * p.columns * samples * stored_dtype(p).itemsize
    need = frame_bytes * p.n_frames
    if p.offset is None:  # not measurable here (a zip member read whole): at least bounded by the file
        if size is not None and need > size:
            raise PixelDataError(f"{ref}: declares {p.n_frames} frame(s) of {p.rows}x{p.columns} ({need} bytes), but "
                                 f"the file holds only {size} bytes")
        return ""
    if p.length == 0:
        raise PixelDataError(f"{ref}: the pixel data element is empty")
    declared = (f"{p.n_frames} frame(s) of {p.rows}x{p.columns}x{samples} at {p.bits_allocated} bits "
                f"(Rows, Columns, SamplesPerPixel, BitsAllocated, NumberOfFrames) need {need} bytes")
    if p.length < need:
        whole = p.length // frame_bytes if frame_bytes else 0
        more = f"; the bytes hold {whole} whole frame(s)" if p.n_frames > 1 and p.length % frame_bytes == 0 else ""
        raise PixelDataError(f"{ref}: pixel data holds {p.length} bytes, {declared}{more} (truncated, or the "
                             "header is wrong)")
    if size is not None and p.offset + need > size:
        raise PixelDataError(f"{ref}: the file ends inside its pixel data (truncated)")
    excess = p.length - need
    if excess >= need:  # twice the bytes or more: another image than the header says (BitsAllocated 8 on 16-bit)
        raise PixelDataError(f"{ref}: pixel data holds {p.length} bytes but {declared}: the header does not "
                             "describe its pixel data")
    if excess > 1:  # one byte of padding to an even length is DICOM's rule; more is padding or a wrong header
        return (f"pixel data holds {excess} bytes more than Rows x Columns x BitsAllocated need: ignored as "
                "padding, but if Rows or Columns is too small the image is cut")
    return ""


def _match_codestream(ds, ref: FileRef, frames: list) -> list:
    """A compressed file whose codestream is of another family than its transfer syntax says (JPEG Baseline
    declared, JPEG 2000 stored) is decoded as what it holds, and a note says so; a codestream that is
    none of them is refused."""
    import dataclasses

    from .decode import codestream_family, declared_family, family_syntax, first_fragment_head

    p = frames[0].pixel
    want = declared_family(p.transfer_syntax) if p.compressed else None
    if want is None:
        return frames
    head = first_fragment_head(ds, ref, 4096)
    have = codestream_family(head)
    if have is None or have == want:
        return frames
    syntax = family_syntax(have, head)
    if syntax is None:
        raise PixelDataError(f"{ref}: the transfer syntax says {want}, but the pixel data is a {have} codestream; "
                             "it cannot be decoded reliably")
    fixed = dataclasses.replace(p, transfer_syntax=syntax)
    note = (f"the transfer syntax says {want}, but the pixel data is a {have} codestream: decoded as {have}")
    for f in frames:
        f.pixel = fixed
        f.notes.append(note)
    return frames


def _check_orientations(frames, ref: FileRef) -> None:
    """ImageOrientationPatient must be two perpendicular unit vectors (rounding to 4 decimals tolerated)."""
    seen: set[bytes] = set()
    for f in frames:
        if f.iop is None or f.iop.tobytes() in seen:
            continue
        seen.add(f.iop.tobytes())
        row, col = f.iop[:3], f.iop[3:]
        if (abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01
                or abs(float(row @ col)) > 0.01):
            values = ", ".join(f"{v:g}" for v in f.iop)
            raise MedvisionIOError(f"{ref}: ImageOrientationPatient [{values}] is not two perpendicular unit "
                                   "vectors: the image cannot be placed in space")


def _note_rescale(ds, frames) -> None:
    """A RescaleSlope of 0, NaN or infinity, or an intercept that is not finite, is noted on the frames (then
    replaced by the value the series' other files agree on, or said in a warning: :func:`_rescale_warnings`)."""
    bad = []
    for keyword, zero_bad in (("RescaleSlope", True), ("RescaleIntercept", False)):
        elem = ds.get(keyword)
        if elem is None or elem == "":
            continue
        try:
            value = float(elem)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value) or (zero_bad and value == 0):
            bad.append(f"{keyword} {str(elem).strip()!r}")
    if bad:
        for f in frames:
            f.notes.append("rescale:" + " and ".join(bad))


def _rescale_warnings(frames: list) -> list[str]:
    """The frames' notes as warnings, each with its count of files. Frames whose rescale values were
    unusable take the (slope, intercept) every other file agrees on; else their stored values stay
    unscaled. Either way the user is told."""
    other: dict[str, set] = {}
    for f in frames:
        for n in f.notes:
            if not n.startswith("rescale:"):
                other.setdefault(n, set()).add(f.ref)
    notes = [f"{n} ({len(refs)} file(s))" for n, refs in other.items()]
    hurt = [f for f in frames if any(n.startswith("rescale:") for n in f.notes)]
    if not hurt:
        return notes
    files = {f.ref for f in hurt}
    what = sorted({n[len("rescale:"):] for f in hurt for n in f.notes if n.startswith("rescale:")})
    good = {(f.slope, f.intercept) for f in frames if not any(n.startswith("rescale:") for n in f.notes)}
    if len(good) == 1:
        slope, intercept = good.pop()
        for f in hurt:
            f.slope, f.intercept = slope, intercept
        return [*notes, f"{len(files)} file(s) have an unusable {', '.join(what)}; the slope {slope:g} and "
                f"intercept {intercept:g} every other file of the series gives were used for them"]
    return [*notes, f"{len(files)} file(s) have an unusable {', '.join(what)}: their values are the stored ones, not "
            "rescaled (for a CT they may be off by the usual intercept, e.g. -1024 HU); check the scanner's export"]


def _sop_class(ds) -> str:
    return str(ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")


def _sop_name(ds) -> str:
    from pydicom.uid import UID

    uid = _sop_class(ds)
    name = UID(uid).name if uid else ""
    return name if name and name != uid else f"SOP class {uid or 'unknown'}"


def _is_image_sop_class(ds) -> bool:
    """Whether the object's SOP class is a standard image storage class (whose missing pixel data
    is damage), rather than a private or non-image class."""
    from pydicom.uid import UID

    uid = _sop_class(ds)
    return bool(uid) and "Image Storage" in (UID(uid).name or "")


def _file_size(ref: FileRef) -> int | None:
    if ref.member:
        return None
    import os

    try:
        return os.path.getsize(ref.path)
    except OSError:
        return None


def _read_chunk(refs: list[FileRef]) -> list[FileFrames]:
    """Frames of each file; the series metadata only from the chunk's first readable file."""
    out = []
    have_meta = False
    for ref in refs:
        ff = read_file_frames(ref, with_meta=not have_meta)
        have_meta = have_meta or bool(ff.meta)
        out.append(ff)
    return out


# ---- the job ------------------------------------------------------------------------------------
def read_series_frames(refs: list[FileRef], *, workers: int | None = None) -> Job[tuple[list[Frame], dict, list[str]]]:
    """Headers of a series' files -> frames, series metadata, and problems (one line per bad file)."""
    yield Progress("reading headers", 0, len(refs))
    frames: list[Frame] = []
    problems: list[str] = []
    skipped: list[str] = []
    kinds: set[type] = set()
    meta: dict = {}
    done = 0
    for chunk in map_chunks(_read_chunk, refs, workers=workers, min_parallel=400):
        for ff in chunk:
            if ff.not_image:
                skipped.append(ff.not_image)
                log.debug("skipped: %s", ff.not_image)
            elif ff.error:
                problems.append(ff.error)
                kinds.add(ff.error_type)
            else:
                frames.extend(ff.frames)
                if not meta:
                    meta = ff.meta
        done += len(chunk)
        yield Progress("reading headers", done, len(refs))
    if not frames and problems:
        # nothing loads: raise what went wrong, as its own kind of error when all files agree
        kind = kinds.pop() if len(kinds) == 1 else NoImagesError
        detail = "\n  ".join(problems[:10]) + (" ..." if len(problems) > 10 else "")
        if len(refs) == 1:
            raise kind(problems[0])
        raise kind(f"no loadable image among {len(refs)} files:\n  {detail}")
    if not frames and skipped:
        if len(refs) == 1:
            raise NoImagesError(skipped[0])
        detail = "\n  ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        raise NoImagesError(f"no image among {len(refs)} files:\n  {detail}")
    return frames, meta, problems


def load_series_job(
    refs: list[FileRef],
    *,
    regularize: bool = False,
    correct_tilt: bool = True,
    stack: int | None = 0,
    workers: int | None = None,
    philips_scaling: str = "precise",
) -> Job[list[Volume]]:
    """Load the files of one series. Returns the volume of stack ``stack`` (0: the largest) in a
    list, or every stack when ``stack`` is None. Problems with single files become warnings.
    ``philips_scaling``: "precise" (Philips' floating-point values, dcm2niix's default) or
    "display" (the console's values) for Philips images with a private scale slope."""
    frames, meta, problems = yield from read_series_frames(refs, workers=workers)
    if not frames:
        raise NoImagesError(f"no loadable image among {len(refs)} files")
    rescale_notes = _rescale_warnings(frames)
    scaling = apply_philips_scaling(frames, philips_scaling)
    if scaling:
        meta = dict(meta, philips_scaling=scaling)
    plans = plan_stacks(frames, regularize=regularize, correct_tilt=correct_tilt)
    if stack is not None:
        if not 0 <= stack < len(plans):
            raise MedvisionIOError(f"the series has {len(plans)} stacks; there is no stack {stack}")
        plans = [plans[stack]]
    volumes = []
    for plan in plans:
        if not meta.get("study_uid") or not meta.get("series_uid"):
            plan.warnings.insert(0, BLANK_UIDS_WARNING)
        plan.warnings[:0] = rescale_notes
        if problems:
            plan.warnings.insert(0, f"{len(problems)} files were left out: " + "; ".join(problems[:5])
                                 + (" ..." if len(problems) > 5 else ""))
        volumes.append((yield from build_volume(plan, meta, workers=workers)))
    return volumes
