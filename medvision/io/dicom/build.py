"""A planned stack -> Volume: decode its frames into one array, apply the modality LUT, correct gantry tilt,
resample uneven slices, and describe the making in the volume's metadata.

Reading the files' headers and planning the stacks happen before (:mod:`.series`, :mod:`.assemble`); this module
owns what is done with the pixel data of one :class:`~.assemble.StackPlan`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...core.jobs import Job, Progress
from ...core.volume import Volume
from ..errors import MedvisionIOError, PixelDataError
from .assemble import StackPlan
from .decode import DecodeTask, decode_tasks, read_native_frame, stored_dtype, stored_range
from .files import FileRef
from .frames import Frame, PixelInfo
from .pool import default_workers, map_chunks

log = logging.getLogger(__name__)

__all__ = ["build_volume", "output_dtype", "cut_tile", "slice_timing", "shift_image", "resample_slices"]


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
