"""NIfTI, NRRD, MetaImage and other ITK formats <-> Volume, through SimpleITK.

ITK works in LPS like medvision; NIfTI's RAS is converted by ITK's NIfTI reader and writer at the
file edge, so a Volume is always LPS. Writes are atomic (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import SimpleITK as sitk

from ..core.atomic import write_via
from ..core.volume import Volume
from ..core.windowing import looks_like_ct
from .errors import MedvisionIOError, UnsupportedDataError

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gipl", ".gipl.gz", ".hdr",
                   ".vtk", ".img.gz")
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def suffix_of(path: str | os.PathLike) -> str:
    name = os.path.basename(os.fspath(path)).lower()
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return os.path.splitext(name)[1]


def is_volume_file(path: str | os.PathLike) -> bool:
    return suffix_of(path) in VOLUME_SUFFIXES


def sidecar_base(path: str | os.PathLike) -> Path:
    """``out.nii.gz`` -> ``out`` (the stem the sidecars share)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_suffix("")


def json_sidecar(path: str | os.PathLike) -> Path:
    """``out.nii.gz`` -> ``out.json``: the JSON sidecar of an image file (BIDS fields, a derived image's record)."""
    base = sidecar_base(path)
    return base.with_name(base.name + ".json")


def _synthetic_sidecar(path: str) -> str:
    """The DerivationDescription of a JSON sidecar beside ``path`` that says the image is synthetic
    (what ``medvision inpaint`` writes), else ""."""
    import json

    try:
        with open(json_sidecar(path), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return ""
    if isinstance(data, dict) and data.get("Synthetic") is True:
        return str(data.get("DerivationDescription") or "synthetic image")
    return ""


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI/NRRD/MHA/MHD/GIPL file into an LPS Volume."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        image = sitk.ReadImage(path)
    except RuntimeError as exc:
        first = next((ln for ln in str(exc).splitlines() if "ERROR" in ln or "rror" in ln), str(exc))
        raise MedvisionIOError(f"{path}: cannot read this image file ({first.strip()[:300]})") from exc
    try:
        volume = Volume.from_sitk(image, {"source": path, "format": suffix_of(path).lstrip(".")})
    except ValueError as exc:
        raise UnsupportedDataError(f"{path}: {exc}") from exc
    volume.metadata.setdefault("warnings", [])
    derived = _synthetic_sidecar(path)
    if derived:
        volume.metadata.update(derivation=derived, synthetic=True)
    if not volume.metadata.get("modality") and looks_like_ct(volume.array):
        # the file says nothing about the modality, but its values are Hounsfield units: treat it
        # as CT (CT window presets, HU readout, CT 3D presets) and say why
        volume.metadata.update(modality="CT", modality_guessed=True, rescale_applied=True)
        log.info("%s: treated as CT (its values look like Hounsfield units)", os.path.basename(path))
    return volume


def write_volume(volume: Volume, path: str | os.PathLike, *, compress: bool = True, level: int = -1,
                 private: bool = False) -> Path:
    """Write a Volume (3D or 4D) atomically; the format follows the file name. ``level``: the
    compression level (1 fastest .. 9 smallest; -1 the writer's default); ``private``: owner-only."""
    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in WRITE_SUFFIXES:
        raise UnsupportedDataError(
            f"{path}: cannot write '{suffix}' files; use one of {', '.join(WRITE_SUFFIXES)}")
    try:
        image = volume.to_sitk()
    except ValueError as exc:
        raise MedvisionIOError(f"{path}: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    use_compression = compress and suffix not in (".nii",)
    try:  # (a header/data pair: the data file is moved first, the header last)
        write_via(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=use_compression,
                                                    compressionLevel=level), private=private,
                  check=lambda tmp: _check_written(tmp, image, suffix))
    except RuntimeError as exc:
        why = str(exc).strip().splitlines()[-1][:300]
        raise MedvisionIOError(f"{path}: writing failed ({why}){_space(path, volume)}; nothing was overwritten"
                               ) from exc
    except OSError as exc:
        raise MedvisionIOError(f"{path}: writing failed ({exc.strerror or exc}){_space(path, volume)}; nothing was "
                               "overwritten") from exc
    return path


def _space(path: Path, volume: Volume) -> str:
    """", the disk is full: N MB needed, M MB free" when the folder lacks room for the uncompressed data."""
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    need = volume.array.nbytes + 352
    if free >= need:
        return ""
    return (f"; the disk holding {path.parent} is full: about {need / 2**20:.1f} MB were needed (less if compressed), "
            f"{free / 2**20:.1f} MB are free")


def _check_written(tmp: Path, image, suffix: str) -> None:
    """The file just written read back before it replaces anything: a writer that ran out of disk space
    may return as if it had succeeded (SimpleITK prints "wrote only N of M bytes" and goes on)."""
    import gzip
    import zlib

    nbytes = image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()
    if suffix in (".nii", ".nii.gz"):
        opener = gzip.open if suffix == ".nii.gz" else open
        total = 0
        head = b""
        try:
            with opener(tmp, "rb") as fh:  # gzip checks the CRC and length at the end of the stream
                while block := fh.read(1 << 22):
                    if not head:
                        head = block[:352]
                    total += len(block)
        except (OSError, EOFError, zlib.error) as exc:
            raise OSError(f"{tmp.name}: the file written cannot be read back ({exc})") from exc
        if len(head) < 348:
            raise OSError(f"{tmp.name}: the file written has no complete NIfTI header")
        little = int.from_bytes(head[:4], "little") == 348
        offset = int(struct.unpack("<f" if little else ">f", head[108:112])[0])
        if total != offset + nbytes:
            raise OSError(f"{tmp.name}: {total} bytes written of {offset + nbytes}")
        return
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(tmp))
    try:
        back = reader.Execute()
    except RuntimeError as exc:
        raise OSError(f"{tmp.name}: the file written cannot be read back") from exc
    if back.GetSize() != image.GetSize():
        raise OSError(f"{tmp.name}: read back as {back.GetSize()}, not {image.GetSize()}")
