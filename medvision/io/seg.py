"""DICOM Segmentation objects (SEG) <-> LabelMap, through highdicom.

Writing: one binary segment per label present, referencing the source series' instances frame by
frame (the label map must lie on the grid of a series loaded from DICOM), with the label's name,
colour (as CIELab) and terminology codes (its own, the bundled SNOMED CT entry matching its name,
or Tissue). The label value is kept in the segment's Tracking ID ("medvision label N") so a
medvision SEG reads back with the same values; SEG files from other tools get values 1..N by
segment number.

Reading: the segments are combined into one label map on the SEG's own grid and, given the
referenced image, placed onto its grid (exactly when the planes coincide, else nearest neighbour).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import cast

import numpy as np

from ..core.atomic import write_via
from ..core.labels import Code, Label, LabelMap, LabelTable
from ..core.terminology import codes_for
from ..core.volume import Volume
from .errors import MedvisionIOError, UnsupportedDataError, os_error_text
from .placement import onto_grid

__all__ = ["write_seg", "read_seg", "is_seg"]

log = logging.getLogger(__name__)

_TRACKING = re.compile(r"^medvision label (\d+)$")
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def is_seg(path: str | os.PathLike) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - anything unreadable is not a SEG
        return False
    return str(getattr(ds, "SOPClassUID", "")) == SEG_SOP_CLASS


def _coded(code: Code):
    import highdicom as hd

    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def write_seg(labels: LabelMap, image: Volume, path: str | os.PathLike, *, series_description: str = "Labels",
              algorithm: str = "MANUAL", content_creator: str | None = None) -> Path:
    """Write ``labels`` (on the grid of ``image``, a volume loaded from a DICOM series) as a DICOM
    SEG referencing that series. ``algorithm``: MANUAL, SEMIAUTOMATIC or AUTOMATIC."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .. import __version__
    from .dicom.files import read_dataset

    sources = image.metadata.get("slice_sources")
    if not sources:
        raise UnsupportedDataError(
            "a DICOM SEG references the DICOM images its labels lie on: open the labels on a series loaded "
            "from DICOM (not NIfTI, and not resampled), or give the series with --reference")
    if image.is_4d:
        raise UnsupportedDataError("writing a DICOM SEG of a 4D series is not supported")
    if not labels.on_grid_of(image):
        raise UnsupportedDataError("the labels do not lie on the grid of the image they are to reference")
    refs = [s[0] for s in sources]
    frames = [s[1] for s in sources]
    if len(set(refs)) != len(refs) or any(f != 0 for f in frames):
        raise UnsupportedDataError("writing a DICOM SEG for multi-frame source images is not supported yet")
    datasets = [read_dataset(ref, headers_only=True) for ref in refs]
    generated = fill_blank_uids(datasets, refs)
    values = labels.present_values()
    if not values:
        raise MedvisionIOError("the label map is empty: there is nothing to write")
    empty = [la.name for la in labels.table if la.value not in values]
    if empty:
        log.info("labels without voxels are not written to the SEG: %s", ", ".join(empty[:10]))
    lut = np.zeros(int(labels.array.max()) + 1, np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    numbers = lut[labels.array]
    numbers = numbers.astype(np.uint8) if len(values) < 256 else numbers
    descriptions = []
    for number, value in enumerate(values, start=1):
        label = labels.table.labels.get(value) or Label(value, f"Label {value}")
        name = label.name
        category, type_ = codes_for(label)
        color = label.color[:3]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64], segmented_property_category=_coded(category),
            segmented_property_type=_coded(type_), algorithm_type=algorithm,
            algorithm_identification=None if algorithm == "MANUAL" else hd.AlgorithmIdentificationSequence(
                name="medvision", version=__version__, family=codes.cid7162.ArtificialIntelligence),
            tracking_uid=hd.UID(), tracking_id=f"medvision label {value}",
            display_color=hd.color.CIELabColor.from_rgb(*color)))
    first = datasets[0]
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=numbers, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(),
        series_number=int(getattr(first, "SeriesNumber", 0) or 0) + 1000, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="medvision", manufacturer_model_name="medvision",
        software_versions=__version__, device_serial_number="0", series_description=series_description[:64],
        content_creator_name=content_creator, content_label="LABELS", omit_empty_frames=True,
        content_description=BLANK_UIDS_NOTE if generated else None)
    if generated:
        log.warning("%s: the images' %s were empty; the SEG references them with UIDs medvision made: %s",
                    Path(path).name, " and ".join(generated), "; ".join(f"{k} {v}" for k, v in generated.items()))
    try:
        return write_via(Path(path), lambda tmp: seg.save_as(tmp, enforce_file_format=True))
    except OSError as exc:  # pydicom wraps the system's error with a traceback in its text: the cause, in words
        raise MedvisionIOError(f"{path}: the DICOM SEG could not be written: {os_error_text(exc)[0]}; nothing was "
                               "overwritten") from exc


#: the SEG's Content Description when the images' UIDs were empty (a value of at most 64 characters)
BLANK_UIDS_NOTE = "the images' empty Study/Series UIDs were generated by medvision"

#: the UIDs a SEG copies from its images, and where a blank one comes from: the file meta, or generated
_FROM_FILE_META = {"SOPClassUID": "MediaStorageSOPClassUID", "SOPInstanceUID": "MediaStorageSOPInstanceUID"}
_GENERATED = {
    "StudyInstanceUID": ("PatientID", "PatientName", "StudyDate", "StudyTime", "StudyID"),
    "SeriesInstanceUID": ("PatientID", "PatientName", "StudyDate", "StudyTime", "StudyID", "Modality",
                          "SeriesNumber", "SeriesDescription", "FrameOfReferenceUID"),
    "FrameOfReferenceUID": ("PatientID", "PatientName", "StudyDate", "StudyTime", "StudyID", "Modality",
                            "SeriesNumber", "SeriesDescription"),
}


def _text(ds, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def fill_blank_uids(datasets: list, refs: list) -> dict[str, str]:
    """Give headers whose UIDs an anonymiser left empty the UIDs a SEG must reference (in place).

    SOP Class/Instance UIDs come from each file's meta information (how the files are identified
    on disk); empty Study, Series and Frame of Reference UIDs are generated from the series' own
    attributes, so the same series gets the same ones on every export. Returns the generated
    ones by keyword (empty when nothing was generated). Raises :class:`UnsupportedDataError` when
    an image has no SOP Instance UID anywhere (nothing a SEG could point at)."""
    from pydicom.uid import generate_uid

    for ds, ref in zip(datasets, refs, strict=True):
        meta = getattr(ds, "file_meta", None)
        for keyword, meta_keyword in _FROM_FILE_META.items():
            if not _text(ds, keyword):
                value = str(getattr(meta, meta_keyword, "") or "").strip() if meta is not None else ""
                if not value:
                    raise UnsupportedDataError(
                        f"{ref}: the image has no {keyword} (empty in the dataset and its file meta), so a DICOM "
                        "SEG cannot reference it; save the labels as NIfTI instead")
                setattr(ds, keyword, value)
    generated: dict[str, str] = {}
    first = datasets[0]
    for keyword, sources in _GENERATED.items():
        if all(_text(ds, keyword) for ds in datasets):
            continue
        uid = generate_uid(entropy_srcs=["medvision blank " + keyword, *(_text(first, k) for k in sources)])
        generated[keyword] = str(uid)
        for ds in datasets:
            if not _text(ds, keyword):
                setattr(ds, keyword, uid)
    return generated


def _rgb_of(desc) -> tuple[int, int, int, int]:
    import highdicom as hd

    value = getattr(desc, "RecommendedDisplayCIELabValue", None)
    if value is None:
        return (255, 0, 0, 255)
    rgb = hd.color.CIELabColor.from_dicom_value(list(value)).to_rgb()
    return cast("tuple[int, int, int, int]", (*(int(round(c)) for c in rgb), 255))  # (to_rgb: three values)


def _code_of(seq) -> Code | None:
    if not seq:
        return None
    item = seq[0]
    return Code(str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.CodeMeaning))


def read_seg(path: str | os.PathLike, reference: Volume | None = None) -> LabelMap:
    """Read a DICOM SEG as a label map: on ``reference``'s grid when given, else on its own."""
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise MedvisionIOError(f"{path}: not a readable DICOM SEG ({str(exc).splitlines()[0][:200]})") from exc
    table = LabelTable()
    value_of: dict[int, int] = {}
    for desc in seg.SegmentSequence:
        number = int(desc.SegmentNumber)
        m = _TRACKING.match(str(getattr(desc, "TrackingID", "") or ""))
        value = int(m.group(1)) if m else number
        if value in table:
            value = table.next_value()
        value_of[number] = value
        table.add(str(getattr(desc, "SegmentLabel", "") or f"Segment {number}"), _rgb_of(desc), value=value,
                  category=_code_of(getattr(desc, "SegmentedPropertyCategoryCodeSequence", None)),
                  type=_code_of(getattr(desc, "SegmentedPropertyTypeCodeSequence", None)))
    try:
        vol = seg.get_volume(combine_segments=True, skip_overlap_checks=True, dtype=np.uint16)
    except Exception as exc:
        first = str(exc).splitlines()[0][:200]
        raise UnsupportedDataError(f"{path}: its frames do not form one volume ({first})") from exc
    numbers = np.asarray(vol.array)
    if numbers.ndim == 4:
        numbers = numbers[..., 0]
    lut = np.zeros(max(value_of) + 1, np.uint16)
    for number, value in value_of.items():
        lut[number] = value
    array = lut[numbers]
    hd_affine = np.asarray(vol.affine, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = hd_affine[:3, 2], hd_affine[:3, 1], hd_affine[:3, 0]
    affine[:3, 3] = hd_affine[:3, 3]
    array = array.astype(np.uint8) if array.max(initial=0) <= 255 else array
    placement = "as stored"
    if reference is not None:
        array, placement = onto_grid(array, affine, reference)
        affine = reference.affine
    lm = LabelMap(np.ascontiguousarray(array), affine, table, name=path.name)
    lm.placement = placement
    return lm
