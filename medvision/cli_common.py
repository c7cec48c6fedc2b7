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


def fail(message: str) -> int:
    """Say ``message`` on stderr as the command's one-line failure; returns the exit status 2."""
    print(f"medvision: {message}", file=sys.stderr)
    return 2
