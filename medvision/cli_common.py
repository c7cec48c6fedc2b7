"""What the ``medvision`` command's modules share (:mod:`medvision.cli`, :mod:`medvision.cli_models`,
:mod:`medvision.cli_inpaint`): a terminal progress bar fed by a job's progress records, running a job
behind one, reading the input image, and saying a failure in one line."""

from __future__ import annotations

import sys

__all__ = ["ProgressBar", "run_with_progress", "load_input", "fail"]


class ProgressBar:
    """A terminal progress bar (tqdm on stderr) fed by a job's progress records."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.stage = None

    def __call__(self, record) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if record.stage != self.stage:
            self.close()
            self.stage = record.stage
            self.bar = tqdm(total=record.total or None, desc=record.stage, unit="", leave=False,
                            file=sys.stderr, dynamic_ncols=True, disable=None)
        if self.bar is not None:
            if record.total and self.bar.total != record.total:
                self.bar.total = record.total
            self.bar.n = record.done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_with_progress(job, quiet: bool):
    """Run ``job`` to its result, its progress on a :class:`ProgressBar` (none when ``quiet``)."""
    from .core.jobs import run_job

    bar = ProgressBar(quiet)
    try:
        return run_job(job, bar)
    finally:
        bar.close()


def load_input(path: str, series: str | None, quiet: bool):
    """The image a command works on (``series`` when the path holds several; else the first stack),
    read behind a progress bar."""
    from .io.api import load_job

    volume = run_with_progress(load_job(path, series=series) if series else load_job(path), quiet)
    return volume[0] if isinstance(volume, list) else volume


def add_image_arguments(p, frame_help: str) -> None:
    """The options of a command that runs a model on one image: device, series, 4D frame, quiet."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--series", help="series when INPUT holds several")
    p.add_argument("--frame", type=int, default=1, help=frame_help)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def derived_output_problem(out) -> str | None:
    """Why ``out`` (a path) cannot take a derived image: neither a volume file (.nii.gz, .nii, .nrrd, .mha)
    nor a new, empty folder (a derived DICOM series); None when it can."""
    from pathlib import Path

    from .io.volumes import is_volume_file

    out = Path(out)
    if is_volume_file(out):
        return None
    if out.suffix or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        return f"{out}: give a .nii.gz, .nii, .nrrd or .mha file, or a new folder (a derived DICOM series)"
    return None


def write_derived_dicom(volume, frame, array, out, frame_number: int, *, description: str, derivation: str) -> int:
    """``array`` (on ``frame``, frame ``frame_number`` (from 1) of ``volume``, a DICOM series) written as a
    derived DICOM series in the new folder ``out``; 0, or 2 after saying why not."""
    from .io.derived import write_derived_series
    from .io.errors import MedvisionIOError

    sources = volume.metadata.get("frame_slice_sources")
    try:
        write_derived_series(frame, array, out, description=description, derivation=derivation,
                             sources=sources[frame_number - 1] if sources else None)
    except MedvisionIOError as exc:
        return fail(str(exc))
    return 0


def fail(message: str) -> int:
    """Say ``message`` on stderr as the command's one-line failure; returns the exit status 2."""
    print(f"medvision: {message}", file=sys.stderr)
    return 2
