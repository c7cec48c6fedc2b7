"""DICOM files of one series -> Volume(s): read headers, plan stacks, decode, apply the modality LUT."""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ...core.jobs import Job, Progress
from ...core.volume import Volume
from ..errors import MedvisionIOError, NoImagesError, NotDicomError, PixelDataError
from .acquisition import acquisition_fields
from .assemble import StackPlan, plan_stacks
from .decode import DecodeTask, check_decodable, decode_tasks, read_native_frame, stored_dtype, stored_range
from .diffusion import manufacturer
from .files import FileRef, read_dataset
from .frames import Frame, PixelInfo, csa_image, frames_from_dataset, has_pixel_data, pixel_info
from .index import classify, incomplete_reason
from .pool import default_workers, map_chunks
from .scaling import apply_philips_scaling

log = logging.getLogger(__name__)

_META_KEYWORDS = {
    "modality": "Modality", "series_uid": "SeriesInstanceUID", "description": "SeriesDescription",
    "series_number": "SeriesNumber", "study_uid": "StudyInstanceUID", "study_description": "StudyDescription",
    "study_date": "StudyDate", "patient_id": "PatientID", "patient_name": "PatientName",
    "manufacturer": "Manufacturer", "model": "ManufacturerModelName", "body_part": "BodyPartExamined",
    "frame_of_reference_uid": "FrameOfReferenceUID", "sop_class_uid": "SOPClassUID",
    "window_center": "WindowCenter", "window_width": "WindowWidth", "units": "RescaleType",
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
    have = codestream_family(first_fragment_head(ds, ref))
    if have is None or have == want:
        return frames
    syntax = family_syntax(have)
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


# ---- output dtype and the modality LUT --------------------------------------------------------
def output_dtype(frames: list[Frame]) -> tuple[np.dtype, bool]:
    """The dtype that holds every rescaled value exactly, and whether a rescale is needed at all."""
    p = frames[0].pixel
    sdt = stored_dtype(p).newbyteorder("=")
    pairs = {(f.slope, f.intercept) for f in frames}
    if pairs == {(1.0, 0.0)}:
        return sdt, False
    if sdt.kind == "f" or not all(float(s).is_integer() and float(i).is_integer() for s, i in pairs):
        return np.dtype(np.float32), True
    lo, hi = stored_range(p)
    vals = [v for s, i in pairs for v in (lo * s + i, hi * s + i)]
    vmin, vmax = min(vals), max(vals)
    for cand in (np.uint8, np.int8, np.int16, np.uint16, np.int32):
        info = np.iinfo(cand)
        if info.min <= vmin and vmax <= info.max:
            return np.dtype(cand), True
    return np.dtype(np.float64), True


def _fits(range_: tuple[int, int], dtype: np.dtype) -> bool:
    info = np.iinfo(dtype)
    return info.min <= range_[0] and range_[1] <= info.max


def _apply_lut(stored: np.ndarray, frame: Frame, out: np.ndarray) -> None:
    """out = stored * slope + intercept, exactly, without temporaries wider than needed.

    Floating-point output uses the slope and intercept rounded to single precision (NIfTI's
    scl_slope/scl_inter are float32) and rounds once, so values equal those of dcm2niix's files."""
    if frame.slope == 1.0 and frame.intercept == 0.0:
        out[...] = stored
    elif out.dtype.kind in "iu" and frame.slope == 1.0 and _fits(stored_range(frame.pixel), out.dtype):
        # stored values and results both fit the output type (e.g. 12-bit CT -> int16 HU)
        same_width = stored.dtype.itemsize == out.dtype.itemsize and stored.dtype.isnative
        as_out = stored.view(out.dtype) if same_width else stored.astype(out.dtype)
        np.add(as_out, out.dtype.type(frame.intercept), out=out)
    elif out.dtype.kind in "iu":
        tmp = stored.astype(np.int64)
        if frame.slope != 1.0:
            tmp *= int(frame.slope)
        tmp += int(frame.intercept)
        out[...] = tmp
    else:
        value = stored.astype(np.float64) * float(np.float32(frame.slope))
        value += float(np.float32(frame.intercept))
        out[...] = value


def cut_tile(image: np.ndarray, f: Frame) -> np.ndarray:
    """Frame ``f``'s tile of a decoded (tiled, whole-slide) image; the image itself when ``f`` is not a tile."""
    if f.tile < 0:
        return image
    r, c = divmod(f.tile, f.tiles_per_row)
    return image[r * f.rows:(r + 1) * f.rows, c * f.cols:(c + 1) * f.cols]


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


def build_volume(plan: StackPlan, meta: dict, *, workers: int | None = None) -> Job[Volume]:
    """Decode a planned stack into a Volume (4D when the stack has several frames per position)."""
    all_frames = [f for vol in plan.frames for f in vol]
    dtype, needs_lut = output_dtype(all_frames)
    n_t, n_z = len(plan.frames), len(plan.frames[0])
    # zeros (calloc: free until touched) so that a viewer can show the volume while it fills
    out = np.zeros((n_t, n_z, plan.rows, plan.cols), dtype=dtype)
    warnings = list(plan.warnings)
    # Where each decoded frame goes; a file may supply several frames (multi-frame, mosaic tiles).
    dest: dict[tuple[FileRef, int], list[tuple[int, int, Frame]]] = defaultdict(list)
    for t, vol in enumerate(plan.frames):
        for z, f in enumerate(vol):
            dest[(f.ref, f.index)].append((t, z, f))
    preview = None
    if plan.resample_to is None:
        preview = Volume(out if n_t > 1 else out[0], plan.affine, meta.get("frame_of_reference_uid"),
                         {k: v for k, v in meta.items() if k != "frame_of_reference_uid"} | {"partial": True})
    yield Progress("decoding", 0, n_t * n_z)
    pending = [preview]  # the partial volume goes with the first record after slices were decoded
    p0 = all_frames[0].pixel
    simple_native = (not p0.compressed and p0.offset is not None and p0.samples_per_pixel == 1
                     and all(f.tile < 0 for f in all_frames)
                     and all(not f.pixel.compressed and f.pixel.offset is not None for f in all_frames))
    if simple_native:
        failed = yield from _read_native(out, dest, dtype, needs_lut, pending)
    else:
        failed = yield from _decode_files(out, dest, plan, pending, workers)
    if failed:
        if len(failed) == len(dest):
            raise PixelDataError("no image in the series could be decoded:\n  " + "\n  ".join(failed[:10]))
        warnings.append(f"{len(failed)} images could not be decoded and are shown blank (0): "
                        + "; ".join(failed[:5]) + (" ..." if len(failed) > 5 else ""))
    if p0.samples_per_pixel == 3:
        warnings.append(f"colour image ({p0.photometric}) shown as grey luminance")
    if plan.slice_shifts is not None:
        yield Progress("correcting gantry tilt", 0, n_z)
        for z in range(n_z):
            dy, dx = plan.slice_shifts[z]
            for t in range(n_t):
                out[t, z] = shift_image(out[t, z], dy, dx)
    if plan.resample_to is not None:
        yield Progress("resampling slices", 0, 1)
        assert plan.resample_from is not None  # set with resample_to
        out = resample_slices(out, plan.resample_from, plan.resample_to)
    metadata = dict(meta)
    frame_of_reference = metadata.pop("frame_of_reference_uid", None)
    metadata.update(rescale_applied=True, source_dtype=str(stored_dtype(p0).newbyteorder("=")),
                    photometric=p0.photometric, warnings=warnings)
    _describe(metadata, plan, all_frames, needs_lut, meta)
    for w in warnings:
        log.warning("%s: %s", meta.get("description") or meta.get("series_uid", "series"), w)
    return Volume(out if n_t > 1 else out[0], plan.affine, frame_of_reference, metadata)


def _from_middle(z: int, n_z: int) -> float:
    """Decode the middle slices first: a viewer opens there."""
    return abs(z - (n_z - 1) / 2)


def _read_native(out: np.ndarray, dest: dict, dtype: np.dtype, needs_lut: bool, pending: list) -> Job[list[str]]:
    """Uncompressed frames read from their offsets straight into ``out`` (threads: I/O bound); the files
    that failed, one line each."""
    n_z, total = out.shape[1], out.shape[0] * out.shape[1]
    items = sorted(dest.items(), key=lambda item: _from_middle(item[1][0][1], n_z))

    def read_one(item):
        (ref, index), places = item
        t, z, f = places[0]
        target = out[t, z]
        sdt = stored_dtype(f.pixel).newbyteorder("=")
        try:
            if sdt == dtype and not needs_lut:
                read_native_frame(ref, f.pixel, index, out=target)
            elif (sdt.itemsize == dtype.itemsize and dtype.kind in "iu" and f.slope == 1.0
                  and _fits(stored_range(f.pixel), dtype)):
                # read into the output's own memory, then add the intercept in place
                read_native_frame(ref, f.pixel, index, out=target.view(sdt))
                if f.intercept:
                    target += dtype.type(f.intercept)
            else:
                _apply_lut(read_native_frame(ref, f.pixel, index), f, target)
        except MedvisionIOError as exc:
            return str(exc), places
        for t2, z2, _f in places[1:]:
            out[t2, z2] = target
        return None, places

    failed: list[str] = []
    done = 0
    # reads from the page cache are memory copies: one thread per core is enough, and leaves a
    # GUI's event loop its share of a small machine
    with ThreadPoolExecutor(max_workers=min(8, max(2, default_workers()))) as ex:
        for i, (err, places) in enumerate(ex.map(read_one, items, chunksize=16)):
            done += len(places)
            if err:
                failed.append(err)
                for t, z, _f in places:
                    out[t, z] = 0
            if i % 32 == 0:
                yield Progress("decoding", done, total, preview=pending.pop() if pending else None)
    return failed


def _decode_files(out: np.ndarray, dest: dict, plan: StackPlan, pending: list, workers: int | None
                  ) -> Job[list[str]]:
    """Compressed (or otherwise not directly readable) frames decoded file by file in worker processes, cut
    into tiles and rescaled into ``out``; the files that failed, one line each."""
    n_z, total = out.shape[1], out.shape[0] * out.shape[1]
    by_file: dict[FileRef, list[int]] = defaultdict(list)
    pixel_of: dict[FileRef, PixelInfo] = {}
    for ref, index in dest:
        by_file[ref].append(index)
        pixel_of[ref] = dest[(ref, index)][0][2].pixel
    tasks = [DecodeTask(ref, pixel_of[ref], tuple(sorted(idx))) for ref, idx in by_file.items()]
    tasks.sort(key=lambda task: min(_from_middle(z, n_z) for _t, z, _f in dest[(task.ref, task.indices[0])]))
    compressed = any(t.pixel.compressed for t in tasks)
    n_frames_total = sum(len(t.indices) for t in tasks)
    chunk = max(1, min(8, len(tasks) // (4 * (workers or default_workers())) or 1))
    results = map_chunks(decode_tasks, tasks, workers=workers,
                         min_parallel=8 if compressed and n_frames_total >= 8 else 1 << 30, chunk_size=chunk)
    failed: list[str] = []
    done = 0
    task_iter = iter(tasks)
    for chunk_result in results:
        for res in chunk_result:
            task = next(task_iter)
            if isinstance(res, PixelDataError):
                failed.append(str(res))
                for index in task.indices:
                    for t, z, _f in dest[(task.ref, index)]:
                        out[t, z] = 0
                        done += 1
                continue
            for index, image in zip(task.indices, res, strict=True):
                for t, z, f in dest[(task.ref, index)]:
                    tile = cut_tile(image, f)
                    if tile.shape != (plan.rows, plan.cols):
                        failed.append(f"{task.ref}: decoded frame is {tile.shape}, expected {(plan.rows, plan.cols)}")
                        out[t, z] = 0
                    else:
                        _apply_lut(tile, f, out[t, z])
                    done += 1
        yield Progress("decoding", done, total, preview=pending.pop() if pending else None)
    return failed


def _describe(metadata: dict, plan: StackPlan, all_frames: list[Frame], needs_lut: bool, meta: dict) -> None:
    """What the volume's metadata says of its making: rescale, tilt, stack, geometry known, the slices' files,
    slice timing, diffusion, the frame axis."""
    n_t = len(plan.frames)
    if needs_lut:
        pairs = {(f.slope, f.intercept) for f in all_frames}
        if len(pairs) == 1:
            metadata["rescale_slope"], metadata["rescale_intercept"] = pairs.pop()
    if plan.tilt_deg:
        metadata["gantry_tilt_deg"] = plan.tilt_deg
        metadata["tilt_corrected"] = plan.slice_shifts is not None
    if plan.label:
        metadata["stack"] = plan.label
    if not plan.orientation_known:
        metadata["orientation_known"] = False
    if not plan.spacing_known:
        metadata["spacing_known"] = False
    if plan.resample_to is None:
        # the file, frame in it and instance number of every slice (of frame 0; of each frame in
        # frame_slice_sources for 4D): a header viewer shows the slice's own header
        per_frame = [[(f.ref, f.index, f.instance) for f in frames] for frames in plan.frames]
        metadata["slice_sources"] = per_frame[0]
        if n_t > 1:
            metadata["frame_slice_sources"] = per_frame
        timing = slice_timing(plan.frames, (meta.get("acquisition") or {}).get("RepetitionTime"))
        if timing is not None:
            metadata["slice_timing"] = timing
    if any(vol[0].b_value or (vol[0].gradient is not None and np.any(vol[0].gradient)) for vol in plan.frames):
        # per volume: b-value (s/mm²) and gradient direction in patient LPS (None: none given)
        metadata["diffusion"] = [
            {"b": float(vol[0].b_value or 0.0),
             "gradient": None if vol[0].gradient is None else [float(v) for v in vol[0].gradient]}
            for vol in plan.frames]
    if n_t > 1:
        metadata["frame_axis"] = plan.frame_axis
        if plan.frame_values is not None:
            metadata["frame_values"] = plan.frame_values
            steps = np.diff(plan.frame_values)
            if plan.frame_axis != "diffusion" and len(steps) and np.allclose(steps, steps[0], rtol=0.01):
                metadata["frame_interval"] = float(steps[0])


def slice_timing(volumes: list[list[Frame]], tr_s: float | None) -> list[float] | None:
    """Slice acquisition times (s, per slice z) as dcm2niix reports them: the first volume's,
    unless they are implausible (all equal, or beyond the TR: a known sequence bug), then the
    second volume's, made to start at 0."""
    def times(vol):
        return [f.slice_time for f in vol] if all(f.slice_time is not None for f in vol) else None

    first = times(volumes[0])
    if first is None:
        return None
    tr_ms = (tr_s or 0.0) * 1000.0
    chosen = first
    if (min(first) == max(first) or (tr_ms and max(first) > tr_ms)) and len(volumes) > 1:
        second = times(volumes[1])
        if second and min(second) < max(second) and (not tr_ms or max(second) - min(second) <= tr_ms):
            chosen = [t - min(second) for t in second]
    return [round(t / 1000.0, 6) for t in chosen]


def shift_image(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate a 2D image by (dy, dx) pixels with linear interpolation; outside is the image minimum."""
    fill = image.min()
    src: np.ndarray = image.astype(np.float32)
    for axis, shift in ((0, dy), (1, dx)):
        if abs(shift) < 1e-6:
            continue
        whole = int(np.floor(shift))
        frac = shift - whole
        a = _shift_int(src, whole, axis, fill)
        b = _shift_int(src, whole + 1, axis, fill)
        src = a * (1 - frac) + b * frac
    if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(src), info.min, info.max).astype(image.dtype)
    return src.astype(image.dtype)


def _shift_int(a: np.ndarray, k: int, axis: int, fill) -> np.ndarray:
    out = np.full_like(a, fill)
    n = a.shape[axis]
    if abs(k) >= n:
        return out
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    if k >= 0:
        src[axis], dst[axis] = slice(0, n - k), slice(k, n)
    else:
        src[axis], dst[axis] = slice(-k, n), slice(0, n + k)
    out[tuple(dst)] = a[tuple(src)]
    return out


def resample_slices(out: np.ndarray, positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linear interpolation along the slice axis of a (t, z, y, x) array onto ``targets`` (mm)."""
    result = np.empty((out.shape[0], len(targets), *out.shape[2:]), dtype=out.dtype)
    for k, z in enumerate(targets):
        j = int(np.clip(np.searchsorted(positions, z, side="right") - 1, 0, len(positions) - 2))
        w = (z - positions[j]) / (positions[j + 1] - positions[j])
        w = float(np.clip(w, 0.0, 1.0))
        blend = out[:, j].astype(np.float32) * (1 - w) + out[:, j + 1].astype(np.float32) * w
        if out.dtype.kind in "iu":
            blend = np.rint(blend)
        result[:, k] = blend.astype(out.dtype)
    return result


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
