"""Pixel data -> stored values, frame by frame.

Native (uncompressed) pixel data is read straight from its byte offset in the file, with no
second parse. Compressed transfer syntaxes go through pydicom's decoders (pylibjpeg plugins:
JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000; RLE); those hold the GIL, so large series
are decoded in worker processes (see :mod:`.pool`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from pydicom.uid import UID

from ..errors import PixelDataError, UnsupportedDataError
from .files import FileRef, open_ref, read_dataset
from .frames import PixelInfo

log = logging.getLogger(__name__)


def stored_dtype(p: PixelInfo) -> np.dtype:
    """The numpy dtype of the values as stored."""
    if p.bits_allocated == 1:
        return np.dtype(np.uint8)
    if p.bits_allocated not in (8, 16, 32, 64):
        raise UnsupportedDataError(f"{p.bits_allocated} bits allocated per pixel is not supported")
    kind = "i" if p.pixel_representation == 1 else "u"
    return np.dtype(f"{'>' if p.big_endian else '<'}{kind}{p.bits_allocated // 8}")


def stored_range(p: PixelInfo) -> tuple[int, int]:
    bits = min(p.bits_stored, p.bits_allocated)
    if p.pixel_representation == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def check_decodable(p: PixelInfo, ref: FileRef) -> None:
    """Raise a clear error when no installed decoder handles this file's transfer syntax."""
    if p.samples_per_pixel not in (1, 3):
        raise UnsupportedDataError(f"{ref}: {p.samples_per_pixel} samples per pixel is not supported")
    if not p.compressed:
        return
    from pydicom.pixels import get_decoder

    uid = UID(p.transfer_syntax)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise UnsupportedDataError(
            f"{ref}: transfer syntax {uid.name or uid} ({uid}) cannot be decoded: no decoder exists for it "
            "in pydicom") from exc
    if not decoder.is_available:
        raise UnsupportedDataError(
            f"{ref}: transfer syntax {uid.name} ({uid}) needs a decoder that is not installed "
            f"({', '.join(decoder.missing_dependencies) or 'pylibjpeg plugins'})")


def _fix_bits(arr: np.ndarray, p: PixelInfo) -> np.ndarray:
    """Clear bits above BitsStored (old overlay bits) and sign-extend signed data, in place."""
    if p.bits_allocated in (8, 16, 32) and p.bits_stored < p.bits_allocated and arr.dtype.kind in "iu":
        unused = p.bits_allocated - p.bits_stored
        if p.pixel_representation == 1:
            np.left_shift(arr, unused, out=arr)
            np.right_shift(arr, unused, out=arr)  # arithmetic shift on signed types
        else:
            np.bitwise_and(arr, (1 << p.bits_stored) - 1, out=arr)
    return arr


def read_native_frame(ref: FileRef, p: PixelInfo, index: int, out: np.ndarray | None = None) -> np.ndarray:
    """One frame of native pixel data read from its offset; ``out`` (rows, cols) is filled in place."""
    dtype = stored_dtype(p)
    frame_bytes = p.rows * p.columns * dtype.itemsize
    if p.offset is None or p.length is None or p.bits_allocated == 1 or p.samples_per_pixel != 1:
        # bit-packed or colour data (planar configuration, YBR): pydicom's decoder handles them
        return _decode_with_pydicom(ref, [index])[0]
    if p.length < frame_bytes * (index + 1):
        raise PixelDataError(
            f"{ref}: pixel data is {p.length} bytes but {p.rows}x{p.columns} frame {index + 1} needs "
            f"{frame_bytes * (index + 1)} (truncated or empty pixel data)")
    native = out is not None and out.dtype == dtype.newbyteorder("=") and not p.big_endian \
        and out.flags.c_contiguous
    buf = out if native and out is not None else np.empty((p.rows, p.columns), dtype=dtype)  # (native: out given)
    # numpy's stubs give ndarray the buffer protocol (__buffer__) only for Python 3.12 and later
    view = memoryview(buf).cast("B")  # type: ignore[arg-type]
    if ref.member:
        with open_ref(ref) as fp:
            fp.seek(p.offset + index * frame_bytes)
            n = fp.readinto(view)
    else:
        fd = os.open(ref.path, os.O_RDONLY)
        try:
            n = os.preadv(fd, [view], p.offset + index * frame_bytes)
        finally:
            os.close(fd)
    if n != frame_bytes:
        raise PixelDataError(f"{ref}: the file ends inside its pixel data (truncated: {n} of {frame_bytes} bytes)")
    arr = buf if buf.dtype.isnative else buf.byteswap().view(buf.dtype.newbyteorder("="))
    arr = _fix_bits(arr, p)
    if out is not None and arr is not out:
        out[...] = arr
        return out
    return arr


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Colour (rows, cols, 3) -> luminance, same integer dtype (ITU-R BT.601 weights)."""
    gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    if rgb.dtype.kind in "iu":
        return np.rint(gray).astype(rgb.dtype.newbyteorder("="))
    return gray.astype(np.float32)


#: what each compressed transfer syntax's codestream starts with, by family
_JPEG_TS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_J2K_TS = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
           "1.2.840.10008.1.2.4.203"}
_RLE_TS = {"1.2.840.10008.1.2.5"}
#: the syntax decoded instead when the codestream is of another family than declared
_FAMILY_TS = {"JPEG 2000": "1.2.840.10008.1.2.4.90", "RLE": "1.2.840.10008.1.2.5"}


#: a JPEG codestream's start-of-frame marker -> the transfer syntax that decodes it (baseline, extended,
#: lossless, JPEG-LS); arithmetic-coded and hierarchical frames have none
_SOF_TS = {0xC0: "1.2.840.10008.1.2.4.50", 0xC1: "1.2.840.10008.1.2.4.51", 0xC3: "1.2.840.10008.1.2.4.70",
           0xF7: "1.2.840.10008.1.2.4.80"}


def family_syntax(family: str, head: bytes = b"") -> str | None:
    """The transfer syntax a codestream of ``family`` (first bytes ``head``) is decoded as when its file
    declares another family (None: a codestream of that family is not decoded in place of the declared
    one). A JPEG or JPEG-LS codestream is decoded by the syntax of its start-of-frame marker."""
    if family in ("JPEG", "JPEG-LS"):
        return _SOF_TS.get(jpeg_frame_marker(head) or 0)
    return _FAMILY_TS.get(family)


def jpeg_frame_marker(head: bytes) -> int | None:
    """The start-of-frame marker (0xC0 ... 0xCF but DHT, JPG, DAC; 0xF7 for JPEG-LS) of a JPEG codestream,
    read segment by segment from its start of image; None when ``head`` ends before one."""
    if head[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill bytes
            at += 1
            continue
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7):
            return marker
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            at += 2
            continue
        at += 2 + int.from_bytes(head[at + 2:at + 4], "big")
    return None


def codestream_family(head: bytes) -> str | None:
    """The compression a codestream's first bytes show: "JPEG", "JPEG-LS", "JPEG 2000", "RLE", or None."""
    if head[:4] == b"\xff\x4f\xff\x51" or head[4:8] == b"jP  ":
        return "JPEG 2000"
    if head[:2] == b"\xff\xd8":
        marker = jpeg_frame_marker(head)
        if marker is None:  # (the frame header lies past the bytes read)
            return "JPEG-LS" if b"\xff\xf7" in head[:64] else "JPEG"
        return "JPEG-LS" if marker == 0xF7 else "JPEG"
    if len(head) >= 8 and 1 <= int.from_bytes(head[:4], "little") <= 15 and int.from_bytes(head[4:8], "little") == 64:
        return "RLE"
    return None


def declared_family(transfer_syntax: str) -> str | None:
    if transfer_syntax in _J2K_TS:
        return "JPEG 2000"
    if transfer_syntax in _JPEG_TS:
        return "JPEG-LS" if transfer_syntax.endswith((".80", ".81")) else "JPEG"
    if transfer_syntax in _RLE_TS:
        return "RLE"
    return None


def first_fragment_head(ds, ref: FileRef, size: int = 64) -> bytes:
    """The first ``size`` bytes of the first fragment of encapsulated pixel data (b"" when not found)."""
    from pydicom.tag import Tag

    raw = ds._dict.get(Tag(0x7FE0, 0x0010))
    value = getattr(raw, "value", None)
    if isinstance(value, bytes | bytearray):
        data = bytes(value[: 8 + 8 + 65536 + size])
    else:
        tell = getattr(raw, "value_tell", None)
        if tell is None:
            return b""
        with open_ref(ref) as fh:
            fh.seek(tell)
            data = fh.read(8)
            if len(data) < 8:
                return b""
            bot = int.from_bytes(data[4:8], "little")
            if bot > 1 << 24:
                return b""
            fh.seek(tell + 8 + bot)
            return fh.read(8 + size)[8:]
    if len(data) < 16 or data[:4] != b"\xfe\xff\x00\xe0":
        return b""
    bot = int.from_bytes(data[4:8], "little")
    start = 8 + bot + 8
    return data[start:start + size]


def _decode_with_pydicom(ref: FileRef, indices: list[int], transfer_syntax: str | None = None) -> list[np.ndarray]:
    from pydicom.pixels import pixel_array

    ds = read_dataset(ref)
    if transfer_syntax and str(getattr(ds.file_meta, "TransferSyntaxUID", "")) != transfer_syntax:
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)  # the codestream's own family (see frames' notes)
    out = []
    try:
        n_frames = int(ds.get("NumberOfFrames") or 1)
        if len(indices) > 1 and len(indices) >= n_frames // 2:
            arr = pixel_array(ds)
            arr = arr if n_frames > 1 else arr[np.newaxis]
            out = [arr[i] for i in indices]
        else:
            out = [pixel_array(ds, index=i) if n_frames > 1 else pixel_array(ds) for i in indices]
    except (ValueError, RuntimeError, KeyError, AttributeError, TypeError, IndexError, EOFError) as exc:
        why = " ".join(line.strip() for line in str(exc).splitlines())[:300]
        raise PixelDataError(f"{ref}: pixel data could not be decoded ({why})") from exc
    result = []
    for a in out:
        if a.ndim == 3 and a.shape[-1] == 3:
            a = to_gray(a)
        result.append(np.ascontiguousarray(a))
    return result


@dataclass(frozen=True, slots=True)
class DecodeTask:
    """All frames wanted from one file."""

    ref: FileRef
    pixel: PixelInfo
    indices: tuple[int, ...]


def decode_task(task: DecodeTask) -> list[np.ndarray] | PixelDataError:
    """Stored values of the task's frames; a decoding failure is returned, not raised."""
    try:
        if not task.pixel.compressed and task.pixel.offset is not None:
            return [read_native_frame(task.ref, task.pixel, i) for i in task.indices]
        check_decodable(task.pixel, task.ref)
        return _decode_with_pydicom(task.ref, list(task.indices), task.pixel.transfer_syntax)
    except (PixelDataError, UnsupportedDataError) as exc:
        return PixelDataError(str(exc))
    except Exception as exc:  # noqa: BLE001 - a decoder's own exception must not stop the other files
        return PixelDataError(f"{task.ref}: pixel data could not be decoded ({type(exc).__name__}: {exc})")


def decode_tasks(tasks: list[DecodeTask]) -> list[list[np.ndarray] | PixelDataError]:
    """Worker entry point: decode a chunk of tasks."""
    return [decode_task(t) for t in tasks]
