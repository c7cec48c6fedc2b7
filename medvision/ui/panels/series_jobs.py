"""The series browser's background jobs: reading the index, forgetting files, and scanning folders
(one progress row for every scan running, its Cancel cancelling them all; a status message for each
finished scan)."""

from __future__ import annotations

import os

from ...core.jobs import Job, Progress
from ...io.dicom.files import FileRef
from ...io.dicom.index import DicomIndex, ScanResult
from ..job_status import JobStatus
from ..jobs import JobRunner

__all__ = ["contents_job", "forget_job", "scan_job", "scan_summary", "ScanJobs"]


def contents_job(index: DicomIndex) -> Job[ScanResult]:
    """Everything in the index, as one tree."""
    yield Progress("reading the index")
    return index.contents()


def forget_job(index: DicomIndex, refs: list[FileRef]) -> Job[int]:
    """Forget files in the index; returns how many."""
    yield Progress("removing from the list", 0, len(refs))
    return index.forget(*refs)


def scan_job(index: DicomIndex, paths: list[str]) -> Job[list[ScanResult]]:
    """Scan each path into the index, one after the other."""
    results = []
    for path in paths:
        results.append((yield from index.scan(path)))  # noqa: PERF401 - a job: no `yield from` in a comprehension
    return results


def scan_summary(result: ScanResult) -> str:
    """The status message of a finished scan: what it found, or why nothing opens."""
    path = result.root
    series = result.all_series()
    images = [s for s in series if s.kind == "image"]
    skipped = (f"; {len(result.problems)} files skipped, e.g. {result.problems[0]}" if result.problems else "")
    if not series:
        if not result.files_seen:
            return f"No DICOM files in {path}: it holds no files"
        return f"No DICOM images in {path}: none of its {result.files_seen} files is readable DICOM{skipped}"
    if not images:
        kinds = ", ".join(sorted({s.kind for s in series}))
        return f"No image series in {path}: only non-image objects ({kinds})"
    patients = len(result.patients)
    return (f"{path}: {len(images)} image series of {patients} patient{'s' if patients != 1 else ''} "
            f"({result.files_seen} files, {result.files_read} read){skipped}")


class ScanJobs:
    """The scans of a :class:`~medvision.ui.panels.series_browser.SeriesBrowser`: started with its
    ``run_job``, shown in ``progress_row`` while any runs; a finished scan goes to its ``show_scanned``."""

    def __init__(self, browser, progress_row: JobStatus) -> None:
        self.browser = browser
        self.progress_row = progress_row
        self.running: list[JobRunner] = []

    def start(self, paths: list[str]) -> JobRunner:
        """Scan ``paths`` (in the background) into the browser's index."""
        what = paths[0] if len(paths) == 1 else f"{len(paths)} folders"
        runner = self.browser.run_job(scan_job(self.browser.index, paths), f"scan {what}",
                                      lambda results: self._finished(runner, what, results),
                                      lambda exc: self._failed(runner, what, exc))
        runner.progress.connect(lambda p: self._progress(what, p))
        runner.cancelled.connect(lambda: self._cancelled(runner, what))
        self.running.append(runner)
        self.progress_row.start(f"Scanning {os.path.basename(what) or what}")
        return runner

    def cancel(self) -> None:
        """Cancel every scan running."""
        for runner in self.running:
            runner.cancel()

    def _progress(self, what: str, p: Progress) -> None:
        self.progress_row.show_progress(p, prefix=f"{os.path.basename(what) or what}: ")

    def _ended(self, runner: JobRunner) -> None:
        """Hide the progress row (on finished/failed/cancelled: done() may come after the refresh)."""
        if runner in self.running:
            self.running.remove(runner)
        if not self.running:
            self.progress_row.finish()

    def _cancelled(self, runner: JobRunner, what: str) -> None:
        self._ended(runner)
        self.browser.status.emit(f"Scan of {what} cancelled")

    def _failed(self, runner: JobRunner, what: str, exc: BaseException) -> None:
        self._ended(runner)
        text = str(exc) or type(exc).__name__
        self.browser.status.emit(f"Scan failed: {text}" if what in text else f"Scan of {what} failed: {text}")

    def _finished(self, runner: JobRunner, what: str, results: list[ScanResult]) -> None:
        self._ended(runner)
        for result in results:
            self.browser.status.emit(scan_summary(result))
        self.browser.show_scanned(results)
