"""A small grey preview of a series: its middle image, windowed, at its physical aspect ratio.

No Qt here: the result is a ``uint8`` array that a browser turns into an icon.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import MedvisionIOError, NoImagesError, PixelDataError
from .build import cut_tile
from .decode import DecodeTask, decode_task
from .files import FileRef
from .frames import Frame
from .index import SeriesInfo
from .series import read_file_frames

log = logging.getLogger(__name__)

__all__ = ["series_thumbnail", "window_to_uint8", "fit_size", "resize_area"]

#: how many files around the middle are tried before giving up on a series
_ATTEMPTS = 3


def series_thumbnail(series: SeriesInfo, size: int = 96) -> np.ndarray:
    """The middle image of an image series as ``uint8`` (h, w), fitting ``size`` x ``size``.

    The modality LUT is applied, then the file's window (WindowCenter/Width) or, without one,
    the 1st..99th percentile; MONOCHROME1 is inverted. Raises a :class:`MedvisionIOError`
    naming the series and the file when no image can be read.
    """
    if series.kind != "image":
        raise NoImagesError(f"{series.label()}: a {series.kind} object has no image to preview")
    if not series.files:
        raise NoImagesError(f"{series.label()}: the series lists no files")
    errors: list[MedvisionIOError] = []
    for ref in _middle_out(series.files)[:_ATTEMPTS]:
        try:
            return file_thumbnail(ref, size)
        except MedvisionIOError as exc:
            log.debug("thumbnail of %s: %s", ref, exc)
            errors.append(exc)
    raise type(errors[0])(f"{series.label()}: no preview ({errors[0]})") from errors[0]


def file_thumbnail(ref: FileRef, size: int = 96) -> np.ndarray:
    """The preview of one file (its middle frame for a multi-frame object)."""
    if not ref.member and not os.path.exists(ref.path):
        raise NoImagesError(f"{ref}: the file is gone (moved or deleted since it was indexed)")
    ff = read_file_frames(ref)
    if ff.error:
        raise ff.error_type(ff.error)
    if not ff.frames:
        raise NoImagesError(ff.not_image or f"{ref}: no image frames")
    frame = ff.frames[len(ff.frames) // 2]
    decoded = decode_task(DecodeTask(ref, frame.pixel, (frame.index,)))
    if isinstance(decoded, PixelDataError):
        raise decoded
    image = cut_tile(decoded[0], frame).astype(np.float32)
    if frame.slope != 1.0 or frame.intercept != 0.0:
        image = image * np.float32(frame.slope) + np.float32(frame.intercept)
    out = window_to_uint8(image, ff.meta.get("window_center"), ff.meta.get("window_width"))
    if frame.pixel.photometric == "MONOCHROME1":
        np.subtract(255, out, out=out)
    return resize_area(out, fit_size(out.shape, _spacing(frame), size))


def _middle_out(files: list[FileRef]) -> list[FileRef]:
    """Files ordered from the middle outwards (the middle one first)."""
    mid = (len(files) - 1) // 2
    return [files[i] for i in sorted(range(len(files)), key=lambda i: (abs(i - mid), i))]


def _spacing(frame: Frame) -> tuple[float, float]:
    return frame.pixel_spacing if frame.pixel_spacing else (1.0, 1.0)


def window_to_uint8(image: np.ndarray, center: float | None = None, width: float | None = None) -> np.ndarray:
    """Map values to 0..255: a linear window when given (width > 0), else the 1st..99th percentile."""
    finite = np.isfinite(image)
    if not finite.all():  # NaN/inf in float pixel data: shown as the lowest real value
        image = np.where(finite, image, image[finite].min() if finite.any() else 0)
    if center is not None and width is not None and width > 0:
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        lo, hi = (float(v) for v in np.percentile(image, (1, 99)))
        if hi <= lo:
            lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = (image.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(scaled, 0, 255, out=scaled).round().astype(np.uint8)


def fit_size(shape: tuple[int, int], spacing: tuple[float, float], size: int) -> tuple[int, int]:
    """(h, w) that fits ``size`` x ``size`` with the physical aspect ratio (spacing: between rows, columns)."""
    height, width = shape[0] * spacing[0], shape[1] * spacing[1]
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_area(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample a 2D array to ``shape``: area averaging when shrinking, nearest neighbour when growing."""
    out = image.astype(np.float32)
    for axis, n_out in enumerate(shape):
        n_in = out.shape[axis]
        if n_out == n_in:
            continue
        starts = (np.arange(n_out) * n_in) // n_out
        counts = np.diff(np.append(starts, n_in)).clip(min=1)
        out = np.add.reduceat(out, starts, axis=axis)
        out /= counts.reshape((-1, 1) if axis == 0 else (1, -1))
    return out.round().astype(image.dtype) if image.dtype.kind in "iu" else out.astype(image.dtype)
