"""Benchmark: loading a CT series with medvision, SimpleITK and dcm2niix; rescanning a large folder.

    python benchmarks/bench_dicom_load.py [--slices 600] [--size 512] [--workdir DIR] [--keep]
                                          [--skip-rescan] [--rescan-files 10000]

Builds a synthetic CT series (uncompressed and JPEG 2000 Lossless copies, shuffled file names),
then times every loader in fresh subprocesses: time of the load call alone (median of 3 runs), peak
memory as ru_maxrss minus the RSS after imports. Prints a table and the targets, and writes
benchmarks/out/dicom_load.json. Data generated in --workdir is reused by later runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPEATS = 3
DATA_VERSION = 1  # bump when the generated data changes, so old work dirs are rebuilt


# ---- synthetic data ---------------------------------------------------------------------------
def ct_slice(k: int, n: int, size: int) -> np.ndarray:
    """Stored values (HU + 1024, 12 bits) of slice k of n: air, fat, soft tissue, lungs, bones, noise."""
    rng = np.random.default_rng(1000 + k)
    t = k / max(1, n - 1)  # 0 at the pelvis, 1 at the lung apex
    c = (np.arange(size, dtype=np.float32) - size / 2 + 0.5) / (size / 2)
    y, x = c[:, None], c[None, :]
    s = 0.9 + 0.08 * np.sin(np.pi * t)
    body = (x / (0.85 * s)) ** 2 + ((y - 0.05) / (0.62 * s)) ** 2
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[body < 1.0] = -90.0  # subcutaneous fat
    hu[body < 0.8] = 40.0  # soft tissue
    if t > 0.45:  # thorax: lungs with vessels
        for sx in (-0.38, 0.38):
            lung = ((x - sx) / 0.26) ** 2 + ((y + 0.02) / (0.38 * min(1.0, 3 * (t - 0.4)))) ** 2 < 1
            hu[lung] = -850.0
        vessels = rng.random((size, size)) < 0.002
        hu[vessels & (hu < -800)] = 30.0
    else:  # abdomen: liver and kidneys
        hu[((x + 0.35) / 0.3) ** 2 + ((y + 0.05) / 0.3) ** 2 < 1] = 60.0
        for sx in (-0.3, 0.3):
            hu[((x - sx) / 0.08) ** 2 + ((y - 0.3) / 0.12) ** 2 < 1] = 150.0
    spine = np.hypot(x, y - 0.42)
    hu[spine < 0.11] = 700.0  # cortical bone
    hu[spine < 0.07] = 250.0  # marrow
    ribs = np.abs(body - 0.86) < 0.03
    hu[ribs & (np.cos(np.arctan2(y, x) * 9) > 0.7)] = 900.0
    hu += rng.normal(0.0, 1.0, hu.shape).astype(np.float32) * np.where(hu > -950, 12.0, 4.0)
    return np.clip(np.rint(hu) + 1024, 0, 4095).astype(np.uint16)


def ct_dataset(k: int, size: int, uids: dict, pixels: np.ndarray):
    """An uncompressed CT Image Storage dataset for slice k (Explicit VR Little Endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    sop_uid = f"{uids['series']}.{k + 1}"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    z = 100.0 - k * 1.0  # instance 1 at the top, as a head-first scan is numbered
    half = (size - 1) / 2 * 0.7
    tags = dict(
        SpecificCharacterSet="ISO_IR 100", ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
        SOPClassUID=CTImageStorage, SOPInstanceUID=sop_uid, StudyDate="20240115", SeriesDate="20240115",
        AcquisitionDate="20240115", ContentDate="20240115", StudyTime="101500", SeriesTime="101742",
        AcquisitionTime="101745", ContentTime=f"1017{45 + k // 100:02d}", AccessionNumber="ACC0042",
        Modality="CT", Manufacturer="MEDVISION BENCH", InstitutionName="Benchmark Hospital",
        ReferringPhysicianName="DOE^JOHN", StationName="CT01", StudyDescription="CT CHEST ABDOMEN",
        SeriesDescription="AXIAL 1.0 STANDARD", ManufacturerModelName="Synthetic CT 64",
        PatientName="BENCH^CT", PatientID="BENCH0001", PatientBirthDate="19600101", PatientSex="O",
        PatientAge="064Y", BodyPartExamined="CHEST", SliceThickness=1.0, KVP=120,
        SpacingBetweenSlices=1.0, DataCollectionDiameter=500.0, SoftwareVersions="1.0",
        ReconstructionDiameter=size * 0.7, GantryDetectorTilt=0.0, TableHeight=150.0,
        RotationDirection="CW", ExposureTime=500, XRayTubeCurrent=200, Exposure=100,
        FilterType="BODY", ConvolutionKernel="STANDARD", PatientPosition="HFS",
        StudyInstanceUID=uids["study"], SeriesInstanceUID=uids["series"], StudyID="1", SeriesNumber=3,
        AcquisitionNumber=1, InstanceNumber=k + 1, ImagePositionPatient=[-half, -half, z],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0], FrameOfReferenceUID=uids["frame"],
        PositionReferenceIndicator="", SliceLocation=z, SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2", Rows=size, Columns=size, PixelSpacing=[0.7, 0.7],
        BitsAllocated=16, BitsStored=12, HighBit=11, PixelRepresentation=0, WindowCenter=40,
        WindowWidth=400, RescaleIntercept=-1024, RescaleSlope=1, RescaleType="HU",
    )
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()
    return ds


def _write_slice(job: tuple) -> int:
    from pydicom.uid import JPEG2000Lossless

    k, n, size, uids, name, root = job
    pixels = ct_slice(k, n, size)
    ds = ct_dataset(k, size, uids, pixels)
    ds.save_as(root / "uncompressed" / name, enforce_file_format=True)
    ds.compress(JPEG2000Lossless, pixels, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    ds.save_as(root / "j2k" / name, enforce_file_format=True)
    return k


def _write_small_series(job: tuple) -> int:
    s, per_series, uids, root = job
    pixels = np.random.default_rng(s).integers(0, 4096, (64, 64), dtype=np.uint16)
    folder = root / f"S{s:04d}"
    folder.mkdir()
    series_uids = dict(uids, series=f"{uids['series']}.{s + 1}")
    for k in range(per_series):
        ds = ct_dataset(k, 64, series_uids, pixels)
        ds.SeriesNumber = s + 1
        ds.save_as(folder / f"IM{k:05d}", enforce_file_format=True)
    return per_series


def _build(folder: Path, params: dict, subdirs: list[str], fn, jobs: list) -> float:
    """Run the writing jobs in 2 processes unless the folder already holds this data; seconds taken."""
    marker = folder / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return 0.0
    shutil.rmtree(folder, ignore_errors=True)
    for sub in ["", *subdirs]:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with Pool(2) as pool:
        for _ in pool.imap_unordered(fn, jobs, chunksize=4):
            pass
    marker.write_text(json.dumps(params))
    return time.perf_counter() - t0


def _uids() -> dict:
    from pydicom.uid import generate_uid

    return {key: generate_uid(prefix=None) for key in ("study", "series", "frame")}


def build_series(folder: Path, slices: int, size: int) -> float:
    names = [f"IM{i:05d}" for i in np.random.default_rng(7).permutation(slices)]  # name order != z order
    uids = _uids()
    jobs = [(k, slices, size, uids, names[k], folder) for k in range(slices)]
    params = {"slices": slices, "size": size, "version": DATA_VERSION}
    return _build(folder, params, ["uncompressed", "j2k"], _write_slice, jobs)


def build_many(folder: Path, files: int) -> float:
    """Series of 100 small slices, ``files`` in all (rounded down to whole series)."""
    per_series, uids = min(100, files), _uids()
    jobs = [(s, per_series, uids, folder) for s in range(files // per_series)]
    return _build(folder, {"files": files, "version": DATA_VERSION}, [], _write_small_series, jobs)


# ---- measurements, each in a fresh interpreter ----------------------------------------------------
def _maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def _pool_hwm_mb() -> float:
    """Summed peak RSS (VmHWM) of this process's live descendants: medvision's worker pool."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError, ValueError):
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(status.split("VmHWM:")[1].split()[0]) / 1024
    return total


def child(kind: str, argv: list[str]) -> dict:
    """One measurement; the parent runs it as ``--_child KIND ARGS`` and reads the JSON it prints."""
    if kind == "medvision":
        import medvision.io as mio

        base, t0 = _maxrss_mb(), time.perf_counter()
        shape = mio.load(argv[0]).array.shape
        return dict(seconds=time.perf_counter() - t0, peak_mb=_maxrss_mb() - base, shape=shape,
                    pool_mb=_pool_hwm_mb())
    if kind == "sitk":
        import SimpleITK  # noqa: F401  (imported before the baseline, not in the timed call)

        base, t0 = _maxrss_mb(), time.perf_counter()
        shape = sitk_read(argv[0]).GetSize()[::-1]
        return dict(seconds=time.perf_counter() - t0, peak_mb=_maxrss_mb() - base, shape=shape)
    if kind == "dcm2niix":
        with tempfile.TemporaryDirectory(dir=argv[1]) as out:
            t0 = time.perf_counter()
            subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-o", out, "-f", "vol", argv[0]],
                           check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - t0
            if not list(Path(out).glob("*.nii")):
                raise SystemExit(f"dcm2niix wrote no NIfTI for {argv[0]}")
        return dict(seconds=seconds, peak_mb=_maxrss_mb(resource.RUSAGE_CHILDREN))
    if kind == "scan":
        from medvision.core import run_job
        from medvision.io import DicomIndex

        t0 = time.perf_counter()
        index = DicomIndex(argv[1])  # opening the index is part of a rescan
        result = run_job(index.scan(argv[0]))
        index.close()
        return dict(seconds=time.perf_counter() - t0, files=result.files_seen, files_read=result.files_read)
    if kind == "verify":
        return {Path(folder).name: verify(folder) for folder in argv}
    raise SystemExit(f"unknown child kind {kind}")


def sitk_read(folder: str):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    return reader.Execute()


def verify(folder: str) -> str:
    """medvision's volume against SimpleITK's: same voxels in the same (z, y, x) order, same grid."""
    import SimpleITK as sitk

    import medvision.io as mio

    vol, image = mio.load(folder), sitk_read(folder)
    ref, ours = sitk.GetArrayFromImage(image), vol.array
    if ours.shape != ref.shape or ours.dtype != ref.dtype:
        return f"MISMATCH: medvision {ours.shape} {ours.dtype}, SimpleITK {ref.shape} {ref.dtype}"
    if not np.array_equal(ours, ref):
        if np.array_equal(ours, ref[::-1]):
            return "MISMATCH: same slices in reverse z order"
        bad = np.count_nonzero(ours != ref)
        return f"MISMATCH: {bad} voxels differ (max |diff| {np.abs(ours.astype(int) - ref).max()})"
    spacing = np.linalg.norm(vol.affine[:3, :3], axis=0)
    direction = vol.affine[:3, :3] / spacing
    if not (np.allclose(spacing, image.GetSpacing(), atol=1e-4)
            and np.allclose(vol.affine[:3, 3], image.GetOrigin(), atol=1e-3)
            and np.allclose(direction, np.reshape(image.GetDirection(), (3, 3)), atol=1e-4)):
        return (f"MISMATCH: same voxels, different grid (spacing {spacing} vs {image.GetSpacing()}, "
                f"origin {vol.affine[:3, 3]} vs {image.GetOrigin()})")
    return f"OK ({ours.dtype}, {ours.shape}, HU {ours.min()}..{ours.max()})"


def run_child(kind: str, *argv: str, env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", kind, *map(str, argv)]
    base_env = {k: v for k, v in os.environ.items() if k != "MEDVISION_WORKERS"}  # default: all cores
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**base_env, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {argv} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(label: str, data: str, kind: str, *argv, env: dict | None = None, cold: bool = False) -> dict:
    first = run_child(kind, *argv, env=env) if cold else None
    runs = [run_child(kind, *argv, env=env) for _ in range(REPEATS)]
    row = dict(loader=label, data=data, median_s=statistics.median(r["seconds"] for r in runs),
               peak_mb=max(r["peak_mb"] for r in runs + ([first] if first else [])),
               times_s=[r["seconds"] for r in runs])
    if first:
        row["cold_s"] = first["seconds"]
    if "pool_mb" in runs[0]:
        row["pool_mb"] = max(r["pool_mb"] for r in runs)
    print(f"  {label:<22} {data:<13} {row['median_s']:7.3f} s", flush=True)
    return row


def _built(seconds: float) -> str:
    return f"built in {seconds:.1f} s" if seconds else "reused"


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name != "params.json") / 2**20


def benchmark(args: argparse.Namespace, root: Path, scratch: Path) -> dict:
    print(f"work dir {root}")
    series = root / f"ct_{args.slices}x{args.size}"
    built = build_series(series, args.slices, args.size)
    unc, j2k = series / "uncompressed", series / "j2k"
    sizes = {d.name: _folder_mb(d) for d in (unc, j2k)}
    print(f"series: {args.slices} x {args.size}^2 ({_built(built)}); "
          f"{sizes['uncompressed']:.1f} MB uncompressed, {sizes['j2k']:.1f} MB JPEG 2000 "
          f"(ratio {sizes['uncompressed'] / sizes['j2k']:.2f})")
    mv_env = {"MEDVISION_HOME": str(scratch / "medvision_home")}
    print(f"measuring (median of {REPEATS} fresh processes each):")
    rows = []
    for data, folder in (("uncompressed", unc), ("j2k", j2k)):
        rows.append(measure("medvision", data, "medvision", folder, env=mv_env, cold=True))
        rows.append(measure("SimpleITK", data, "sitk", folder))
        rows.append(measure("dcm2niix", data, "dcm2niix", folder, scratch))
    rows.append(measure("medvision 1 worker", "j2k", "medvision", j2k,
                        env={**mv_env, "MEDVISION_WORKERS": "1"}))
    checks = run_child("verify", unc, j2k, env=mv_env)
    result = dict(slices=args.slices, size=args.size, volume_mb=args.slices * args.size**2 * 2 / 2**20,
                  disk_mb=sizes, rows=rows, verify=checks)
    if not args.skip_rescan:
        many = root / f"many_{args.rescan_files}"
        built = build_many(many, args.rescan_files)
        print(f"rescan folder: {args.rescan_files} files ({_built(built)})")
        db = scratch / "rescan-index.sqlite"
        first = run_child("scan", many, db)
        again = [run_child("scan", many, db) for _ in range(REPEATS)]
        result["rescan"] = dict(files=first["files"], first_scan_s=first["seconds"],
                                rescan_s=statistics.median(r["seconds"] for r in again),
                                rescan_files_read=max(r["files_read"] for r in again))
    return result


def report(result: dict) -> list[dict]:
    rows = {(r["loader"], r["data"]): r for r in result["rows"]}
    print(f"\n{'loader':<20} {'data':<13} {'median s':>9} {'cold s':>8} {'peak MB':>8} {'pool MB':>8}")
    for r in result["rows"]:
        cold = f"{r['cold_s']:8.3f}" if "cold_s" in r else f"{'':8}"
        pool = f"{r['pool_mb']:8.0f}" if "pool_mb" in r else f"{'':8}"
        print(f"{r['loader']:<20} {r['data']:<13} {r['median_s']:9.3f} {cold} {r['peak_mb']:8.1f} {pool}")
    print(f"volume: {result['volume_mb']:.1f} MB (int16). peak MB: ru_maxrss of the loading process minus "
          "its RSS after imports (dcm2niix: the whole process). pool MB: summed VmHWM of medvision's worker "
          "processes (not in peak MB).")
    print("verify medvision == SimpleITK:", "; ".join(f"{k}: {v}" for k, v in result["verify"].items()))

    def t(loader: str, data: str) -> float:
        return rows[(loader, data)]["median_s"]

    targets = [
        ("uncompressed: medvision time / SimpleITK time", t("medvision", "uncompressed")
         / t("SimpleITK", "uncompressed"), "<=", 1.0),
        ("j2k: medvision speed-up vs MEDVISION_WORKERS=1", t("medvision 1 worker", "j2k")
         / t("medvision", "j2k"), ">=", 1.6),
    ] + [(f"{data}: medvision peak memory / volume bytes", rows[("medvision", data)]["peak_mb"]
          / result["volume_mb"], "<=", 1.5) for data in ("uncompressed", "j2k")]
    if "rescan" in result:
        r = result["rescan"]
        print(f"rescan: {r['files']} files, first scan {r['first_scan_s']:.2f} s, rescan "
              f"{r['rescan_s']:.3f} s (median; {r['rescan_files_read']} headers re-read)")
        targets.append((f"rescan of {r['files']} indexed files (s)", r["rescan_s"], "<", 1.0))
    print()
    out = []
    for name, value, op, goal in targets:
        ok = {"<=": value <= goal, ">=": value >= goal, "<": value < goal}[op]
        print(f"{name:<50} {value:7.3f}  target {op} {goal:<4}  {'PASS' if ok else 'MISS'}")
        out.append(dict(name=name, value=value, op=op, target=goal, passed=ok))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workdir", help="where the data is built (and reused); default: a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the default temp work dir")
    parser.add_argument("--skip-rescan", action="store_true")
    parser.add_argument("--rescan-files", type=int, default=10_000)
    parser.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(child(args._child[0], args._child[1:])))
        return
    root = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench_dicom_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_scratch_") as scratch:
            result = benchmark(args, root, Path(scratch))
        result["targets"] = report(result)
        out = HERE / "out" / "dicom_load.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"\nresults written to {out}")
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif not args.workdir:
            print(f"data kept in {root}")


if __name__ == "__main__":
    main()
