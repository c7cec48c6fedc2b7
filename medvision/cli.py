"""The ``medvision`` command: the window by default (``medvision [PATH]``), sub-commands for
headless work (``info``, ``convert``) and ``view PATH --screenshot OUT.png``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .cli_common import run_with_progress


def _cmd_info(args) -> int:
    from .io import DicomIndex
    from .io.volumes import is_volume_file, read_volume

    path = os.path.abspath(args.path)
    if os.path.isfile(path) and is_volume_file(path):
        v = read_volume(path)
        info = {"path": path, "shape_zyx": list(v.shape), "frames": v.n_frames, "dtype": str(v.dtype),
                "spacing_xyz": [round(float(s), 6) for s in v.spacing], "origin_lps": v.origin.tolist(),
                "orientation": v.orientation, "direction": v.direction.round(6).tolist()}
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            for k, val in info.items():
                print(f"{k:>12}: {val}")
        return 0
    index = DicomIndex()
    try:
        result = run_with_progress(index.scan(path), args.quiet)
    finally:
        index.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
        return 0 if result.patients else 1
    if not result.patients:
        print(f"{path}: no DICOM objects found among {result.files_seen} files", file=sys.stderr)
    n = 0
    for p in result.patients:
        print(f"Patient {p.name or '(no name)'}  ID {p.id or '(none)'}  born {p.birth_date or '-'}  sex {p.sex or '-'}")
        for st in p.studies:
            print(f"  Study {st.date or '(no date)'} {st.description or '(no description)'}"
                  f"  accession {st.accession or '-'}  UID {st.uid or '(empty)'}")
            for s in st.series:
                body = f" {s.body_part}" if s.body_part else ""
                size = f" {s.columns}x{s.rows}" if s.rows else ""
                print(f"    @{n:<3} #{s.number if s.number is not None else '-':<5} {s.modality or '?':<3}"
                      f"{'' if s.kind == 'image' else ' ' + s.kind:<4} {s.description or '(no description)'}"
                      f"  {s.instance_count} files{'' if s.frames == s.instance_count else f', {s.frames} frames'}"
                      f"{size}{body}  UID {s.uid or '(empty)'}")
                n += 1
    if result.problems:
        print(f"\n{len(result.problems)} problems:", file=sys.stderr)
        for line in result.problems[:20]:
            print(f"  {line}", file=sys.stderr)
        if len(result.problems) > 20:
            print(f"  ... and {len(result.problems) - 20} more", file=sys.stderr)
    return 0 if result.patients else 1


def _load_reference(path: str, series, quiet: bool):
    from .io import load_job

    return run_with_progress(load_job(path, series=series), quiet)[0]


def _find_referenced_series(seg_path: Path, quiet: bool, rtstruct: bool = False):
    """The image series a SEG (or an RTSTRUCT) references, looked for in its own folder (and below it)."""
    from .io.dicom.index import DicomIndex

    if rtstruct:
        from .io.rtstruct import referenced_series_uids

        wanted = set(referenced_series_uids(seg_path))
    else:
        import pydicom

        ds = pydicom.dcmread(seg_path, stop_before_pixels=True)
        wanted = {str(item.SeriesInstanceUID) for item in getattr(ds, "ReferencedSeriesSequence", [])}
    if not wanted:
        return None
    index = DicomIndex()
    try:
        folder = seg_path.parent
        result = run_with_progress(index.scan(folder), True)
        for s in result.all_series(images_only=True):
            if s.uid in wanted:
                return _load_reference(str(folder), s.uid, quiet)
    finally:
        index.close()
    return None


def _cmd_convert_labels(args, source_is_seg: bool, source_is_rtstruct: bool = False) -> int:
    from .io.labels import load_labels, save_labels
    from .io.rtstruct import read_rtstruct
    from .io.seg import read_seg, write_seg
    from .io.volumes import is_volume_file

    src, out = Path(args.path), Path(args.output)
    reference = _load_reference(args.reference, args.series, args.quiet) if args.reference else None
    if source_is_seg:
        if reference is None:
            reference = _find_referenced_series(src, args.quiet)
            if reference is None:
                print(f"note: the series {src.name} references was not found beside it; the labels keep the "
                      "SEG's own grid (give it with --reference)", file=sys.stderr)
        labels = read_seg(src, reference)
    elif source_is_rtstruct:
        if reference is None:
            reference = _find_referenced_series(src, args.quiet, rtstruct=True)
            if reference is None:
                raise SystemExit(f"medvision: {src.name} is an RT structure set (contours, not voxels): the series "
                                 "it was drawn on was not found beside it; give it with --reference SERIES")
        labels = read_rtstruct(src, reference)
    elif is_volume_file(src):
        labels = load_labels(src, reference)
    else:
        raise SystemExit(f"medvision: {src} is neither a DICOM SEG or RTSTRUCT nor a NIfTI/NRRD/MHA label file")
    if out.suffix.lower() == ".dcm":
        if reference is None:
            raise SystemExit("medvision: writing a DICOM SEG needs the image series it refers to: --reference SERIES")
        write_seg(labels, reference, out, series_description=args.description or "Labels")
        for w in reference.metadata.get("warnings", []):  # (empty UIDs: the SEG's are generated)
            print(f"  warning: the reference series: {w}", file=sys.stderr)
    else:
        save_labels(labels, out)
    placed = f", {labels.placement} onto the reference" if reference is not None else ""
    print(f"wrote {out}: {len(labels.present_values())} labels, {labels.shape[2]}x{labels.shape[1]}x"
          f"{labels.shape[0]}{placed}")
    for w in labels.metadata.get("warnings", []):
        print(f"  warning: {w}", file=sys.stderr)
    return 0


def _cmd_convert(args) -> int:
    from .io import load_job, save
    from .io.rtstruct import is_rtstruct
    from .io.seg import is_seg
    from .io.volumes import suffix_of

    source_is_seg = os.path.isfile(args.path) and is_seg(args.path)
    source_is_rtstruct = not source_is_seg and os.path.isfile(args.path) and is_rtstruct(args.path)
    if args.reference or source_is_seg or source_is_rtstruct or Path(args.output).suffix.lower() == ".dcm":
        return _cmd_convert_labels(args, source_is_seg, source_is_rtstruct)
    from .io.sidecars import write_sidecars

    volumes = run_with_progress(load_job(args.path, series=args.series,
                                         stack=None if args.stack is None else args.stack,
                                         regularize=args.regularize, correct_tilt=not args.keep_tilt,
                                         philips_scaling=args.philips_scaling), args.quiet)
    out = Path(args.output)
    suffix = suffix_of(out)
    written = []
    for i, v in enumerate(volumes):
        target = out if len(volumes) == 1 else out.with_name(out.name[: -len(suffix)] + f"_{i + 1}{suffix}")
        save(v, target)
        if suffix in (".nii", ".nii.gz"):  # dcm2niix's sidecars: .json, and .bval/.bvec for diffusion
            write_sidecars(v, target)
        written.append((target, v))
    for target, v in written:
        frames = f" x {v.n_frames} {v.metadata.get('frame_axis') or 'frames'}" if v.is_4d else ""
        stack = f"  [{v.metadata['stack']}]" if v.metadata.get("stack") else ""
        print(f"wrote {target}: {v.shape[2]}x{v.shape[1]}x{v.shape[0]}{frames} {v.dtype}, "
              f"spacing {' x '.join(f'{s:.4g}' for s in v.spacing)} mm{stack}")
        if v.metadata.get("philips_scaling"):
            from .io.dicom.scaling import SCALING_TEXT

            print(f"  values: {SCALING_TEXT.get(v.metadata['philips_scaling'], v.metadata['philips_scaling'])}")
        for w in v.metadata.get("warnings", []):
            print(f"  warning: {w}", file=sys.stderr)
    return 0


def _cmd_view(args) -> int:
    from .ui.app.app import run_gui

    if args.screenshot and not args.screenshot.lower().endswith(".png"):
        raise SystemExit("medvision: --screenshot needs a .png file name")
    if args.path and not os.path.exists(args.path):
        raise FileNotFoundError(f"{args.path}: no such file or folder")
    return run_gui(args.path, series=args.series, layout=args.layout, screenshot=args.screenshot,
                   started=getattr(args, "started", None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medvision", description="Radiology workstation: view, label, run models.")
    parser.add_argument("--version", action="version", version=f"medvision {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("info", help="list the patients, studies and series under PATH (or describe a volume file)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="convert DICOM to NIfTI/NRRD/MHA, between volume formats, labels "
                                       "to and from DICOM SEG, or a DICOM RTSTRUCT to labels")
    p.add_argument("path", help="DICOM folder, zip, DICOMDIR or file; a NIfTI/NRRD/MHA file; a DICOM SEG or "
                                "RTSTRUCT")
    p.add_argument("-o", "--output", required=True,
                   help="output file: .nii.gz, .nii, .nrrd, .mha, .mhd; .dcm writes labels as a DICOM SEG")
    p.add_argument("--series", help="series to convert when PATH holds several: UID, series number or @N from `info`")
    p.add_argument("--stack", type=int, default=None,
                   help="only this stack of a series that splits (0 = largest); default: every stack, "
                        "numbered _1, _2, ...")
    p.add_argument("--regularize", action="store_true", help="resample non-uniform slice spacing onto a regular grid")
    p.add_argument("--keep-tilt", action="store_true", help="keep gantry tilt as a sheared grid (no correction)")
    p.add_argument("--philips-scaling", choices=("precise", "display"), default="precise",
                   help="Philips images: precise floating-point values (private scale slope, dcm2niix's default) "
                        "or the console's display values (Rescale Slope/Intercept); default: precise")
    p.add_argument("--reference", metavar="SERIES",
                   help="labels: the image series (folder, zip, file) they lie on; needed to write a DICOM SEG "
                        "(-o OUT.dcm), and places labels read from a SEG, an RTSTRUCT or a volume file onto its "
                        "grid (a SEG's or RTSTRUCT's series is otherwise looked for beside it)")
    p.add_argument("--description", help="labels: the SEG's series description (default Labels)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("view", help="open the window on PATH (what `medvision PATH` does), or render it to a PNG")
    _view_arguments(p)
    from .cli_explain import add_parser as add_explain_parser
    from .cli_inpaint import add_parser as add_inpaint_parser
    from .cli_models import add_parsers

    add_parsers(sub)
    add_inpaint_parser(sub)
    add_explain_parser(sub)
    return parser


def _view_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="DICOM folder, zip, DICOMDIR or file; or a NIfTI/NRRD/MHA file")
    p.add_argument("--series", help="series to open when PATH holds several: UID, series number or @N")
    p.add_argument("--layout", choices=("1x1", "1x3", "2x2"), help="view layout")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="render the window with the data loaded to this PNG and exit (works under Xvfb "
                        "and without a display)")
    p.set_defaults(func=_cmd_view)


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medvision", description="Radiology workstation: view, label, run models. "
        "Sub-commands: info, convert, view, infer, inpaint, explain, models, train (medvision SUBCOMMAND -h for each).")
    parser.add_argument("--version", action="version", version=f"medvision {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    _view_arguments(parser)
    return parser


_SUBCOMMANDS = ("info", "convert", "view", "infer", "inpaint", "explain", "models", "train")


class _OneLine(logging.Formatter):
    """Log lines on the terminal without tracebacks (those go to the private log with ``-v``'s details)."""

    def format(self, record: logging.LogRecord) -> str:
        bare = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(bare)


def args_verbose(argv: list[str]) -> bool:
    return "-v" in argv or "--verbose" in argv


def main(argv: list[str] | None = None) -> int:
    import time

    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if a not in ("-v", "--verbose")), None)
    if first in _SUBCOMMANDS:
        parser = build_parser()
    else:  # `medvision` and `medvision PATH` open the window
        parser = _gui_parser()
    args = parser.parse_args(argv)
    args.started = started
    terse = ("info", "convert", "infer", "inpaint", "explain", "models")
    quiet_level = logging.ERROR if first in terse else logging.WARNING
    level = logging.INFO if args.verbose else quiet_level
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        # the window's log panel listens at INFO; the terminal shows only what was asked for
        handler.setLevel(level)
        if isinstance(handler, logging.StreamHandler) and not args_verbose(argv):
            handler.setFormatter(_OneLine("%(levelname)s %(name)s: %(message)s"))
            # pydicom logs a decoder's failure with its traceback; medvision says it in words
            handler.addFilter(lambda record: not record.name.startswith("pydicom"))
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    from .core.jobs import Cancelled
    from .io.errors import MedvisionIOError

    if first == "train":  # an inpainting base trains on images alone (medvision.ai.inpainting.finetune)
        from .cli_inpaint import inpainting_base, train_inpainting

        base = inpainting_base(args.base)
        if base is not None:
            args.func = lambda a: train_inpainting(a, base)
    try:
        return args.func(args)
    except (MedvisionIOError, FileNotFoundError) as exc:
        print(f"medvision: {exc}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"medvision: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("medvision: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        return _unexpected(args, first, exc, "not enough memory")
    except OSError as exc:  # a write that failed (full disk, no permission) or a file that could not be read
        from .io.errors import os_error_text

        what, filename = os_error_text(exc)
        print(f"medvision: {filename or getattr(args, 'output', '') or ''}: {what}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - never a traceback: one sentence, the details in the log
        return _unexpected(args, first, exc)


def _unexpected(args, command: str | None, exc: BaseException, what: str | None = None) -> int:
    from .crashlog import one_line, record

    target = getattr(args, "path", None) or getattr(args, "input", None) or ""
    where = record(exc, f"medvision {command or ''} {target}".strip())
    details = f"; details in {where}" if where else ""
    print(f"medvision: {command or 'medvision'} failed on {target or 'its input'}: {what or 'unexpected error'} "
          f"({one_line(exc)}){details}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
