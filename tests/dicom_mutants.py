"""A corpus of damaged DICOM series, made from real files with a fixed seed.

Each :class:`Mutant` is a folder (a copy of a few files of a real series with one planted defect) and
what medvision must do with it: load a volume equal to the undamaged one (``"correct"``), load with a
warning the user sees (``"warning"``, matching ``expect``), or refuse with one clear sentence
(``"error"``). The random header mutations (``fuzz-*``) only have to end cleanly: no traceback, no
hang, bounded memory, whatever they load.

Sources: ``../shared/data/dicom`` (a Siemens JPEG 2000 CT, a GE EPI time series, a Siemens mosaic
EPI) when present, else pydicom's bundled files only. ``python tests/dicom_mutants.py OUT`` writes the
corpus and prints what the loader made of each, with the counts.
"""

from __future__ import annotations

import random
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "dicom"
SEED = 20261205
FUZZ = 200  # random header mutations, beside the planted defects


@dataclass
class Mutant:
    name: str
    folder: Path
    outcome: str  # "correct" | "warning" | "error" | "clean" (fuzz: anything but a crash)
    expect: str = ""  # a fragment of the warning or error text
    original: Path | None = None  # the undamaged folder to compare a "correct" (or warned) volume with
    equal: bool = False  # the volume must equal the original's


#: pydicom's bundled files (always there): one file each, fuzzed and given planted size defects
PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "rtdose.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm")


def _pydicom_sources(out: Path) -> dict[str, tuple[Path, int]]:
    from pydicom.data import get_testdata_file

    found = {}
    for name in PYDICOM_FILES:
        path = get_testdata_file(name)
        if path:
            folder = out / f"pydicom-{Path(name).stem}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / name)
            found[f"pd-{Path(name).stem}"] = (folder, 1)
    return found


def _sources() -> dict[str, tuple[Path, int]]:
    """name -> (folder, files to take)."""
    out = {}
    if SHARED.is_dir():
        out["ct"] = (SHARED / "ct_abdomen_siemens_j2k", 6)
        out["ge"] = (SHARED / "mr_epi_ge_siemens" / "In" / "20180918GE" / "mr_0005", 30)
        out["mosaic"] = (SHARED / "mr_epi_ge_siemens" / "In" / "20180918Si" / "mr_0003", 2)
    return out


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith((".txt", ".md", ".json")))


def _copy(src: Path, n: int, dest: Path) -> list[Path]:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in _dicom_files(src)[:n]:
        shutil.copyfile(f, dest / f.name)
    return _dicom_files(dest)


def _edit(path: Path, change: Callable) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def _set(**values) -> Callable:
    def change(ds):
        for k, v in values.items():
            setattr(ds, k, v)
    return change


def _patch_element(path: Path, group: int, elem: int, at: int, new: bytes) -> None:
    """Overwrite bytes of an explicit-VR element's header (``at``: 4 = the VR, 6 = a short length)."""
    data = bytearray(path.read_bytes())
    i = data.find(struct.pack("<HH", group, elem), 132)
    if i < 0:
        raise ValueError(f"{path}: no ({group:04X},{elem:04X})")
    data[i + at:i + at + len(new)] = new
    path.write_bytes(bytes(data))


def _shift(ds, mm: float) -> None:
    p = [float(x) for x in ds.ImagePositionPatient]
    p[0] += mm
    ds.ImagePositionPatient = p


def _planted(out: Path, sources: dict) -> list[Mutant]:  # noqa: C901 - one block per defect met, in a list
    """The defects a user met, each on the series it concerns (one or several variants)."""
    mutants: list[Mutant] = []
    originals = {}
    for key, (src, n) in sources.items():
        originals[key] = out / f"original-{key}"
        _copy(src, n, originals[key])

    def make(name: str, key: str, fn: Callable[[list[Path]], None], outcome: str, expect: str = "",
             equal: bool = False) -> None:
        folder = out / name
        files = _copy(sources[key][0], sources[key][1], folder)
        fn(files)
        mutants.append(Mutant(name, folder, outcome, expect, originals[key], equal))

    if "ct" in sources:
        for i in (0, 3, 5):  # one damaged file in three places: reported, the rest loads
            make(f"unknown-vr-{i}", "ct", lambda fs, i=i: _patch_element(fs[i], 0x0008, 0x0060, 4, b"ZZ"),
                 "warning", "left out")
            make(f"us-length-ffff-{i}", "ct",
                 lambda fs, i=i: _patch_element(fs[i], 0x0028, 0x0010, 6, b"\xff\xff"), "warning", "left out")
            make(f"us-length-3-{i}", "ct", lambda fs, i=i: _patch_element(fs[i], 0x0028, 0x0011, 6, b"\x03\x00"),
                 "warning", "left out")
            make(f"iop-singular-{i}", "ct",
                 lambda fs, i=i: _edit(fs[i], _set(ImageOrientationPatient=[1, 0, 0, 1, 0, 0])), "warning", "left out")
            make(f"iop-zero-{i}", "ct", lambda fs, i=i: _edit(fs[i], _set(ImageOrientationPatient=[0, 0, 0, 0, 0, 0])),
                 "warning", "left out")
            make(f"truncated-{i}", "ct",
                 lambda fs, i=i: fs[i].write_bytes(fs[i].read_bytes()[:fs[i].stat().st_size // 3]), "warning",
                 "left out")
            make(f"intercept-nan-one-{i}", "ct", lambda fs, i=i: _edit(fs[i], _set(RescaleIntercept="nan")),
                 "warning", "RescaleIntercept", equal=True)
            make(f"slope-zero-one-{i}", "ct", lambda fs, i=i: _edit(fs[i], _set(RescaleSlope="0")),
                 "warning", "RescaleSlope", equal=True)
        for frames in (1000, 1_000_000, 2**31 - 1):
            make(f"frames-{frames}", "ct", lambda fs, f=frames: _edit(fs[1], _set(NumberOfFrames=f)),
                 "warning", "NumberOfFrames")
            folder = out / f"frames-{frames}-alone"
            files = _copy(sources["ct"][0], 1, folder)
            _edit(files[0], _set(NumberOfFrames=frames))
            mutants.append(Mutant(folder.name, folder, "error", "NumberOfFrames"))
        make("same-position", "ct", lambda fs: [_edit(f, _set(ImagePositionPatient=pydicom.dcmread(fs[0])
                                                                .ImagePositionPatient)) for f in fs],
             "warning", "share one position")
        for value in ("nan", "inf", "-inf"):
            make(f"intercept-{value}-all", "ct", lambda fs, v=value: [_edit(f, _set(RescaleIntercept=v)) for f in fs],
                 "warning", "RescaleIntercept")
        for value in ("0", "nan"):
            make(f"slope-{value}-all", "ct", lambda fs, v=value: [_edit(f, _set(RescaleSlope=v)) for f in fs],
                 "warning", "RescaleSlope")
        for ts, family in (("1.2.840.10008.1.2.4.50", "baseline"), ("1.2.840.10008.1.2.4.70", "lossless"),
                           ("1.2.840.10008.1.2.5", "rle")):
            make(f"syntax-says-{family}", "ct",
                 lambda fs, ts=ts: [_edit(f, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", ts)) for f in fs],
                 "warning", "codestream", equal=True)
        for i, mm in ((2, 50.0), (4, -30.0)):
            make(f"shifted-slice-{i}", "ct", lambda fs, i=i, mm=mm: _edit(fs[i], lambda ds: _shift(ds, mm)),
                 "warning", "off the line")
    # a JPEG-LS codestream declared as JPEG lossless, a 12-bit extended JPEG declared as JPEG-LS: decoded as
    # what they hold (their start-of-frame marker), equal to the undamaged file
    for key, ts, name in (("pd-MR_small_jpeg_ls_lossless", "1.2.840.10008.1.2.4.70", "syntax-jls-says-jpeg"),
                          ("pd-JPGExtended", "1.2.840.10008.1.2.4.80", "syntax-jpeg-says-jls")):
        if key in sources:
            make(name, key, lambda fs, ts=ts: [_edit(f, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", ts))
                                               for f in fs], "warning", "codestream", equal=True)
    if "ge" in sources:
        make("bits-allocated-8", "ge",
             lambda fs: [_edit(f, _set(BitsAllocated=8, BitsStored=8, HighBit=7)) for f in fs], "error",
             "does not describe its pixel data")
        make("rows-63", "ge", lambda fs: [_edit(f, _set(Rows=63)) for f in fs], "warning", "more than Rows")
        make("columns-63", "ge", lambda fs: [_edit(f, _set(Columns=63)) for f in fs], "warning", "more than Rows")
        make("rows-65", "ge", lambda fs: [_edit(f, _set(Rows=65)) for f in fs], "error", "need")
        make("temporal-position-added", "ge",
             lambda fs: _edit(fs[7], _set(TemporalPositionIdentifier=4)), "warning", "TemporalPositionIdentifier")

        def numbered_then_one_changed(fs, which=7):  # each file its volume's number (15 slices a volume), then one
            for f in fs:
                _edit(f, lambda ds: setattr(ds, "TemporalPositionIdentifier", 1 + (int(ds.InstanceNumber) - 1) // 15))
            if which is not None:
                _edit(fs[which], lambda ds: setattr(ds, "TemporalPositionIdentifier",
                                                    3 - int(ds.TemporalPositionIdentifier)))

        make("temporal-position-changed", "ge", numbered_then_one_changed, "warning", "TemporalPositionIdentifier")
        make("temporal-position-numbered", "ge", lambda fs: numbered_then_one_changed(fs, which=None), "correct",
             equal=True)
    for key in [k for k in sources if k.startswith("pd-")]:  # single files: sizes that cannot be
        make(f"{key}-frames-huge", key, lambda fs: _edit(fs[0], _set(NumberOfFrames=2**31 - 1)), "error",
             "NumberOfFrames")
        make(f"{key}-rows-double", key, lambda fs: _edit(fs[0], _set(Rows=pydicom.dcmread(fs[0]).Rows * 2)),
             "error", "")
    if "mosaic" in sources:
        for n in (36, 1000, 0):
            make(f"mosaic-count-{n}", "mosaic",
                 lambda fs, n=n: [_edit(f, lambda ds: ds.__setitem__(0x0019100A, DataElement(0x0019100A, "US", n)))
                                  for f in fs],
                 "warning" if n else "correct", "mosaic:" if n else "", equal=True)
        make("mosaic-first-truncated", "mosaic",
             lambda fs: fs[0].write_bytes(fs[0].read_bytes()[:fs[0].stat().st_size // 2]), "warning", "left out")
    return mutants


# ---- random header mutations ---------------------------------------------------------------------
_KEYWORDS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
             "NumberOfFrames", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
             "SpacingBetweenSlices", "RescaleSlope", "RescaleIntercept", "PhotometricInterpretation",
             "InstanceNumber", "SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "Modality",
             "AcquisitionTime", "EchoTime", "TemporalPositionIdentifier", "ImageType", "WindowCenter")
_VALUES = (0, -1, 1, 3, 7, 65535, 2**31 - 1, "nan", "inf", "", "abc", "1\\2\\3", "0\\0\\0\\0\\0\\0", "1e308",
           "-1e308", "9" * 60, [1, 2, 3, 4, 5, 6, 7], "MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL_422")


def _set_any(ds, keyword: str, value) -> None:
    """``value`` written into ``keyword`` in the form its VR can store (text VRs get its text, binary ones a number)."""
    from pydicom.datadict import dictionary_VR

    vr = dictionary_VR(keyword)
    if vr in ("US", "SS", "UL", "SL"):
        number = value if isinstance(value, int) else (value[0] if isinstance(value, list) else 0)
        bits = {"US": (0, 2**16), "SS": (-2**15, 2**15), "UL": (0, 2**32), "SL": (-2**31, 2**31)}[vr]
        value = min(max(number, bits[0]), bits[1] - 1)
    elif isinstance(value, list):
        value = "\\".join(str(v) for v in value)
    else:
        value = str(value)
    try:
        setattr(ds, keyword, value)
    except (ValueError, TypeError, OverflowError):  # text pydicom will not store in that VR ("abc" as IS)
        setattr(ds, keyword, "")


def _fuzzed(out: Path, sources: dict, count: int, seed: int = SEED) -> list[Mutant]:
    rng = random.Random(seed)
    keys = [k for k in sources if k in ("ct", "ge") or k.startswith("pd-")]
    mutants = []
    for n in range(count):
        key = keys[n % len(keys)]
        src, take = sources[key]
        folder = out / f"fuzz-{n:03d}-{key}"
        files = _copy(src, min(take, 6), folder)
        kind = rng.random()
        victims = rng.sample(files, rng.randint(1, len(files)))
        if kind < 0.6:
            keyword, value = rng.choice(_KEYWORDS), rng.choice(_VALUES)
            for f in victims:
                _edit(f, lambda ds, k=keyword, v=value: _set_any(ds, k, v))
            what = f"{keyword}={value!r}"
        elif kind < 0.8:
            for f in victims:
                data = f.read_bytes()
                f.write_bytes(data[:rng.randint(0, len(data))])
            what = "truncated"
        else:
            for f in victims:
                data = bytearray(f.read_bytes())
                for _ in range(rng.randint(1, 8)):
                    i = rng.randint(132, min(len(data) - 1, 2048))
                    data[i] = rng.randint(0, 255)
                f.write_bytes(bytes(data))
            what = "header bytes flipped"
        mutants.append(Mutant(f"{folder.name} ({what}, {len(victims)} of {len(files)} files)", folder, "clean"))
    return mutants


def build(out: Path, *, fuzz: int = FUZZ) -> list[Mutant]:
    """Write the corpus under ``out``; empty when the real series are absent."""
    out.mkdir(parents=True, exist_ok=True)
    sources = {**_sources(), **_pydicom_sources(out / "sources")}
    return _planted(out, sources) + _fuzzed(out, sources, fuzz)


# ---- what the loader makes of one mutant (shared by the test and the script) ------------------------
def outcome(m: Mutant, tmp: Path) -> dict:
    """Run ``medvision convert`` in-process on the mutant: its exit status, stdout/stderr, and the volumes."""
    import contextlib
    import io

    from medvision.cli import main

    err, out = io.StringIO(), io.StringIO()
    target = tmp / f"{m.folder.name}.nii"  # (uncompressed: the corpus is about the reading, not gzip)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(["convert", "-q", str(m.folder), "-o", str(target)])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
    return {"rc": rc, "stderr": err.getvalue(), "stdout": out.getvalue(), "written": sorted(tmp.glob(
        f"{m.folder.name}*.nii"))}


def classify(m: Mutant, result: dict) -> str:
    """"error" (clean refusal), "warning", "correct" (no warning: equal to the original, or a fuzz mutant
    that loaded), or "crash" (a traceback or an unexpected error)."""
    text = result["stderr"]
    if "Traceback" in text or result["rc"] not in (0, 2):
        return "crash"
    if result["rc"] == 2:
        return "error"
    return "warning" if "warning:" in text else "correct"


if __name__ == "__main__":
    import collections
    import sys
    import tempfile

    target = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="mutants-"))
    corpus = build(target)
    counts: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for mutant in corpus:
            got = classify(mutant, outcome(mutant, Path(tmp)))
            counts[got] += 1
            print(f"{got:8s} {mutant.name}")
    print(f"tried {len(corpus)}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
