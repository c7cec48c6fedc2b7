"""DICOM objects -> one :class:`Frame` record per 2D image, whatever the encoding.

Classic single-frame files, enhanced multi-frame objects (per-frame functional groups) and
Siemens mosaics all become the same kind of record (position, orientation, spacing, rescale,
echo, temporal order, where its pixels are), so sorting and stacking is written once.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from .diffusion import (
    SIEMENS_MR,
    classic_order_key,
    derived_kind,
    diffusion,
    dimension_keys,
    manufacturer,
    philips_scale,
    private_value,
)
from .files import FileRef

log = logging.getLogger(__name__)

PIXEL_DATA = Tag(0x7FE0, 0x0010)
_FLOAT_PIXEL_DATA = (Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009))


@dataclass(frozen=True, slots=True)
class PixelInfo:
    """How one file stores its pixels (shared by all frames of the file)."""

    transfer_syntax: str
    rows: int
    columns: int
    n_frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    planar_configuration: int
    compressed: bool
    big_endian: bool
    offset: int | None  # byte offset of native pixel data in the file (None: not located)
    length: int | None  # its length in bytes


@dataclass(slots=True)
class Frame:
    ref: FileRef
    index: int  # frame number in the file, 0-based
    pixel: PixelInfo
    rows: int
    cols: int
    ipp: np.ndarray | None  # ImagePositionPatient of the first pixel (LPS mm)
    iop: np.ndarray | None  # ImageOrientationPatient (row cosines, column cosines)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    slope: float = 1.0
    intercept: float = 0.0
    echo: float | None = None
    acquisition: int | None = None
    instance: int | None = None
    temporal_index: float | None = None
    trigger_time: float | None = None
    acquisition_time: float | None = None
    b_value: float | None = None
    stack_id: str = ""
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    tile: int = -1  # mosaic tile, -1 when the frame is a whole image
    tiles_per_row: int = 0
    spacing_source: str = "PixelSpacing"
    notes: list[str] = field(default_factory=list)
    # acquisition order among the frames at one position, as dcm2niix orders volumes (diffusion.py)
    order_key: tuple = ()
    derived: str = ""  # why the frame is not an acquired volume (a derived trace/ADC image), or ""
    gradient: np.ndarray | None = None  # diffusion gradient direction, patient LPS
    philips_scale: float | None = None  # Philips private scale slope (2005,100E)
    slice_time: float | None = None  # acquisition time of the slice within its volume, ms

    def temporal_key(self) -> tuple:
        def k(v):
            return (0, float(v)) if v is not None else (1, 0.0)

        return (k(self.temporal_index), k(self.trigger_time), k(self.b_value), k(self.acquisition),
                k(self.acquisition_time), k(self.instance), self.ref, self.index, self.tile)

    def volume_key(self) -> tuple:
        """Sort key of the frames at one position: acquisition order (volume 0 first)."""
        if not self.order_key:
            return self.temporal_key()
        return (*self.order_key, self.index, self.tile, self.ref)


# ---- helpers ---------------------------------------------------------------------------------
def _floats(value, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _time_seconds(value) -> float | None:
    """DICOM TM (HHMMSS.FFFFFF) as seconds since midnight."""
    text = str(value or "").strip().replace(":", "")
    if not text:
        return None
    try:
        hh = int(text[0:2])
        mm = int(text[2:4]) if len(text) >= 4 else 0
        ss = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def _seq_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    if seq:
        try:
            return seq[0]
        except (IndexError, TypeError):
            return None
    return None


def pixel_info(ds: Dataset) -> PixelInfo:
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    ts_uid = str(ts) if ts else "1.2.840.10008.1.2"  # implicit VR little endian, DICOM's default
    compressed = bool(getattr(ts, "is_compressed", False)) if ts else False
    big_endian = ts_uid == "1.2.840.10008.1.2.2"
    offset = length = None
    raw = ds._dict.get(PIXEL_DATA)  # the raw element: deferred values are not read here
    if raw is not None and not compressed:
        value_tell = getattr(raw, "value_tell", None)
        raw_len = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if value_tell is not None and raw_len not in (None, 0xFFFFFFFF):
            # a small value was read with the header: what was really there counts, not the
            # length the header promised
            offset, length = int(value_tell), int(raw_len) if value is None else len(value)
    rows, cols = _int(ds.get("Rows")) or 0, _int(ds.get("Columns")) or 0
    bits_allocated = _int(ds.get("BitsAllocated")) or 16
    return PixelInfo(
        transfer_syntax=ts_uid, rows=rows, columns=cols,
        n_frames=max(1, _int(ds.get("NumberOfFrames")) or 1),
        bits_allocated=bits_allocated, bits_stored=_int(ds.get("BitsStored")) or bits_allocated,
        pixel_representation=_int(ds.get("PixelRepresentation")) or 0,
        samples_per_pixel=_int(ds.get("SamplesPerPixel")) or 1,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper(),
        planar_configuration=_int(ds.get("PlanarConfiguration")) or 0,
        compressed=compressed, big_endian=big_endian, offset=offset, length=length,
    )


def has_pixel_data(ds: Dataset) -> bool:
    return PIXEL_DATA in ds._dict or any(t in ds._dict for t in _FLOAT_PIXEL_DATA)


# ---- Siemens CSA header and mosaics ----------------------------------------------------------
def parse_csa(data: bytes) -> dict[str, list[str]]:
    """Siemens CSA2 ('SV10') header: element name -> list of string values. Empty if unreadable."""
    out: dict[str, list[str]] = {}
    if not data or data[:4] != b"SV10":
        return out
    try:
        n_tags = struct.unpack_from("<I", data, 8)[0]
        pos = 16
        for _ in range(min(n_tags, 1000)):
            name = data[pos:pos + 64].split(b"\0", 1)[0].decode("latin-1")
            vm, _vr, _syngodt, n_items, _xx = struct.unpack_from("<i4siii", data, pos + 64)
            pos += 84
            values = []
            for _i in range(n_items):
                item_len = struct.unpack_from("<4i", data, pos)[1]
                pos += 16
                values.append(data[pos:pos + item_len].split(b"\0", 1)[0].decode("latin-1").strip())
                pos += (item_len + 3) // 4 * 4
            out[name] = [v for v in values[: vm if vm > 0 else len(values)] if v]
    except (struct.error, UnicodeDecodeError):
        pass
    return out


def mosaic_tiles(ds: Dataset) -> int:
    """Number of slices packed in a Siemens mosaic image, 0 when it is not one."""
    return mosaic_count(ds)[0]


def mosaic_count(ds: Dataset) -> tuple[int, str]:
    """(number of slices in a Siemens mosaic, a note when the header's counts disagree); (0, "") for no mosaic.

    The count is that of (0019,100A), else the CSA header's. Either must fit the mosaic: the tiles are
    laid out on a ceil(sqrt(n)) square grid whose tile is the AcquisitionMatrix's size, so a count that
    cannot be (36 or 1000 tiles in a 3 x 3 mosaic of 72 x 72 tiles) is refused, the other one taken if
    it fits, and the file left out (:class:`MedvisionIOError`) when neither does."""
    from ..errors import MedvisionIOError

    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "MOSAIC" not in image_type:
        return 0, ""
    tag = Tag(0x0019, 0x100A)
    stated = [("(0019,100A) NumberOfImagesInMosaic", _int(ds[tag].value) if tag in ds else None),
              ("the CSA header's NumberOfImagesInMosaic",
               _int((csa_image(ds).get("NumberOfImagesInMosaic") or (None,))[0]))]
    candidates = [(w, n) for w, n in stated if n]
    if not candidates:
        return 0, ""
    rows, cols = _int(ds.get("Rows")) or 0, _int(ds.get("Columns")) or 0
    matrix = [m for m in (_int(v) for v in (ds.get("AcquisitionMatrix") or [])) if m]

    def fits(n: int) -> bool:
        grid = math.ceil(math.sqrt(n))
        if n < 1 or grid < 1 or rows < grid or cols < grid:
            return False
        if matrix:  # a tile of the acquisition matrix's size: rows = grid x tile (one side may be padded)
            return any(rows // grid == m or cols // grid == m for m in matrix)
        return True

    good = [(w, n) for w, n in candidates if fits(n)]
    if not good:
        said = "; ".join(f"{w} {n}" for w, n in candidates)
        raise MedvisionIOError(f"a Siemens mosaic of {rows}x{cols} whose slice count cannot be right ({said}; "
                               f"acquisition matrix {matrix or 'not given'}): its tiles cannot be cut")
    bad = [(w, n) for w, n in candidates if (w, n) not in good and n != good[0][1]]
    note = (f"mosaic: {bad[0][0]} says {bad[0][1]}, which does not fit a {rows}x{cols} mosaic; "
            f"{good[0][0]} ({good[0][1]}) was used") if bad else ""
    return good[0][1], note


def csa_image(ds: Dataset) -> dict[str, list[str]]:
    for tag in (Tag(0x0029, 0x1010), Tag(0x0029, 0x1110), Tag(0x0029, 0x1210)):
        if tag in ds:
            value = ds[tag].value
            if isinstance(value, bytes | bytearray):
                parsed = parse_csa(bytes(value))
                if parsed:
                    return parsed
    return {}


# ---- per-kind frame builders -----------------------------------------------------------------
def _common(ds: Dataset) -> dict:
    return dict(
        echo=_float(ds.get("EchoTime")) if ds.get("EchoNumbers") is None else _float(ds.get("EchoNumbers")),
        acquisition=_int(ds.get("AcquisitionNumber")),
        instance=_int(ds.get("InstanceNumber")),
        temporal_index=_float(ds.get("TemporalPositionIdentifier")),
        trigger_time=_float(ds.get("TriggerTime")),
        acquisition_time=_time_seconds(ds.get("AcquisitionTime")),
        b_value=_float(ds.get("DiffusionBValue")),
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between_slices=_float(ds.get("SpacingBetweenSlices")),
    )


def _spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        sp = _floats(ds.get(keyword) or [], 2)
        if sp is not None and np.all(sp > 0):
            return (float(sp[0]), float(sp[1])), keyword
    return None, ""


def frames_from_dataset(ds: Dataset, ref: FileRef) -> list[Frame]:
    """All 2D frames of one DICOM image object."""
    info = pixel_info(ds)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, ref, info)
    spacing, spacing_source = _spacing(ds)
    common = _common(ds)
    slope = _float(ds.get("RescaleSlope"))
    intercept = _float(ds.get("RescaleIntercept"))
    base = dict(
        ipp=_floats(ds.get("ImagePositionPatient") or [], 3),
        iop=_floats(ds.get("ImageOrientationPatient") or [], 6),
        pixel_spacing=spacing, spacing_source=spacing_source,
        slope=slope if slope not in (None, 0.0) else 1.0,
        intercept=intercept if intercept is not None else 0.0,
        **common,
    )
    b, grad, directionality = diffusion(ds, None, csa_image(ds) if manufacturer(ds) == "siemens" else None)
    base.update(b_value=b, gradient=grad, derived=derived_kind(ds, b, grad, directionality),
                philips_scale=philips_scale(ds) if manufacturer(ds) == "philips" else None,
                order_key=classic_order_key(ds, base["instance"], b, grad))
    n_tiles, note = mosaic_count(ds)
    if n_tiles > 1:
        frames = _mosaic_frames(ds, ref, info, n_tiles, base)
        if note:
            for f in frames:
                f.notes.append(note)
        return frames
    if info.n_frames > 1:
        # Legacy multi-frame (no functional groups): frames share the header's position; they are
        # stacked along the slice normal by SpacingBetweenSlices (or marked as having no positions).
        first = (base["instance"] or 0) * 100000
        return [Frame(ref, i, info, info.rows, info.columns, **{**base, "instance": first + i})
                for i in range(info.n_frames)]
    return [Frame(ref, 0, info, info.rows, info.columns, **base)]


def _mosaic_frames(ds: Dataset, ref: FileRef, info: PixelInfo, n_tiles: int, base: dict) -> list[Frame]:
    grid = math.ceil(math.sqrt(n_tiles))
    tile_rows, tile_cols = info.rows // grid, info.columns // grid
    iop, ipp, spacing = base["iop"], base["ipp"], base["pixel_spacing"]
    frames = []
    csa = csa_image(ds)
    if iop is None or ipp is None or spacing is None:
        positions = [None] * n_tiles
    else:
        row_cos, col_cos = iop[:3], iop[3:]
        # The header's position is that of a (Rows x Columns) image centred like the tile.
        corner = (ipp + row_cos * spacing[1] * (info.columns - tile_cols) / 2.0
                  + col_cos * spacing[0] * (info.rows - tile_rows) / 2.0)
        normal = _floats(csa.get("SliceNormalVector") or [], 3)
        if normal is None:
            normal = np.cross(row_cos, col_cos)
        normal = normal / np.linalg.norm(normal)
        dz = base["spacing_between_slices"] or base["slice_thickness"] or 1.0
        positions = [corner + k * dz * normal for k in range(n_tiles)]
    # each tile's acquisition time within the volume (ms): slice timing for the JSON sidecar
    times = [_float(v) for v in (csa.get("MosaicRefAcqTimes") or [])]
    if len(times) < n_tiles:
        raw = private_value(ds, 0x0019, SIEMENS_MR, 0x29)
        times = [] if raw is None or isinstance(raw, str | bytes) else [_float(v) for v in raw]
    if len(times) < n_tiles:
        times = [None] * n_tiles
    for k in range(n_tiles):
        f = Frame(ref, 0, info, tile_rows, tile_cols, **{**base, "ipp": positions[k], "slice_time": times[k]})
        f.tile, f.tiles_per_row = k, grid
        frames.append(f)
    return frames


def _fg(per_frame: Dataset | None, shared: Dataset | None, seq: str) -> Dataset | None:
    for group in (per_frame, shared):
        if group is not None:
            item = _seq_item(group, seq)
            if item is not None:
                return item
    return None


def _enhanced_frames(ds: Dataset, ref: FileRef, info: PixelInfo) -> list[Frame]:
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    common = _common(ds)
    frames = []
    dim_keys = dimension_keys(ds, per_frame_seq, info.n_frames)
    vendor = manufacturer(ds)
    file_key = (common["instance"] or 0,)
    for i in range(info.n_frames):
        pf = per_frame_seq[i] if i < len(per_frame_seq) else None
        pos = _fg(pf, shared, "PlanePositionSequence")
        ori = _fg(pf, shared, "PlaneOrientationSequence")
        meas = _fg(pf, shared, "PixelMeasuresSequence")
        pvt = _fg(pf, shared, "PixelValueTransformationSequence")
        content = _fg(pf, shared, "FrameContentSequence")
        echo = _fg(pf, shared, "MREchoSequence")
        diff = _fg(pf, shared, "MRDiffusionSequence")
        cardiac = _fg(pf, shared, "CardiacSynchronizationSequence")
        spacing = None
        thickness = common["slice_thickness"]
        between = common["spacing_between_slices"]
        if meas is not None:
            sp = _floats(meas.get("PixelSpacing") or [], 2)
            spacing = (float(sp[0]), float(sp[1])) if sp is not None else None
            thickness = _float(meas.get("SliceThickness")) or thickness
            between = _float(meas.get("SpacingBetweenSlices")) or between
        if spacing is None:
            spacing, _src = _spacing(ds)
        slope = _float(pvt.get("RescaleSlope")) if pvt is not None else _float(ds.get("RescaleSlope"))
        intercept = _float(pvt.get("RescaleIntercept")) if pvt is not None else _float(ds.get("RescaleIntercept"))
        ipp = _floats(pos.get("ImagePositionPatient") or [], 3) if pos is not None else None
        iop = _floats(ori.get("ImageOrientationPatient") or [], 6) if ori is not None else None
        temporal = _float(content.get("TemporalPositionIndex")) if content is not None else None
        b, grad, directionality = diffusion(ds, diff)
        mr_type = _fg(pf, shared, "MRImageFrameTypeSequence")
        frame_type = mr_type.get("FrameType") if mr_type is not None else None
        frame = Frame(
            ref, i, info, info.rows, info.columns, ipp=ipp, iop=iop, pixel_spacing=spacing,
            slope=slope if slope not in (None, 0.0) else 1.0,
            intercept=intercept if intercept is not None else 0.0,
            echo=_float(echo.get("EffectiveEchoTime")) if echo is not None else common["echo"],
            acquisition=common["acquisition"], instance=i,
            temporal_index=temporal,
            trigger_time=_float(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac is not None else None,
            b_value=b, gradient=grad, derived=derived_kind(ds, b, grad, directionality, frame_type),
            philips_scale=philips_scale(ds, pf) if vendor == "philips" else None,
            order_key=file_key + (dim_keys[i] if dim_keys else (i,)),
            stack_id=str(content.get("StackID", "")) if content is not None else "",
            slice_thickness=thickness, spacing_between_slices=between,
        )
        frames.append(frame)
    return frames
