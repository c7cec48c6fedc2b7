"""The main window's opening and loading: the file and folder choosers, what a drop or a chosen path
opens (:func:`medvision.io.routing.plan_open`), the background scan or load with its preview filling
up, going back to the last complete volume when a load fails or is cancelled, and the loader's
warnings (the status bar's warning button and its message box)."""

from __future__ import annotations

import logging
import os
import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ...core.jobs import Progress
from ...core.volume import Volume
from ...io.dicom.index import ScanResult, SeriesInfo
from ..jobs import JobRunner

log = logging.getLogger(__name__)

__all__ = ["Loading"]


class Loading:
    """Opens and loads images into a :class:`~medvision.ui.app.main_window.MainWindow`, one job at a time."""

    def __init__(self, window) -> None:
        self.window = window
        self.viewer = window.viewer
        self.runner: JobRunner | None = None  # the scan or load running (or the last one)
        self.label = ""  # what is loading, or was loaded last
        self.last_warning_box: QMessageBox | None = None  # the warnings' box, when MEDVISION_NO_DIALOGS is set
        self._source: tuple[str, str | None] | None = None
        self._preview_shown = False
        # what a failed or cancelled load goes back to: (volume, window, window name, reload_regular)
        self._previous: tuple | None = None
        self._reload_regular = None  # reloads the DICOM series last opened, resampled to regular spacing
        self._last_preview_refresh = 0.0

    # ---- choosing and routing ----------------------------------------------------------------
    def choose_file(self) -> None:
        w = self.window
        path, _ = QFileDialog.getOpenFileName(
            w, "Open image", w.settings.last_dir or os.path.expanduser("~"),
            "Images (*.dcm *.DCM *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.zip DICOMDIR);;All files (*)")
        if path:
            w.open_path(path)

    def choose_folder(self) -> None:
        w = self.window
        path = QFileDialog.getExistingDirectory(w, "Open DICOM folder", w.settings.last_dir or os.path.expanduser("~"))
        if path:
            w.open_path(path)

    def open_paths(self, paths: list[str], series: str | None = None) -> None:
        """Open what was dropped or chosen together, as :func:`medvision.io.routing.plan_open`
        decides: an image file loads, DICOM files and folders are scanned as one set and its
        (largest) image series opens."""
        from ...io.api import load_job
        from ...io.routing import plan_open

        w = self.window
        plan = plan_open(paths)
        if plan.missing:
            w.report_error(plan.missing_text)
        if plan.action == "nothing":
            w.load_finished.emit(False)
            return
        first = plan.paths[0]
        w.settings.add_recent(first if len(plan.paths) == 1 else os.path.commonpath(plan.paths))
        w.settings.last_dir = os.path.dirname(first)
        w.settings.save()
        if plan.note:
            log.info("%s", plan.note)
        if plan.action == "load":
            w.browser.tree.clearSelection()  # the series list no longer shows what is open
            self.start_load(load_job(plan.target), plan.label, source=(plan.target, None))
            return
        self._start(w.index.scan(plan.scan), f"scanning {plan.label}",
                    lambda result: self._scanned(result, series, member=plan.member))

    def _scanned(self, result: ScanResult, series: str | None, member: str | None = None) -> None:
        from ...io.routing import pick_series

        w = self.window
        w.browser.refresh()
        try:
            chosen, note = pick_series(result, series, member)
        except Exception as exc:  # noqa: BLE001 - shown to the user, nothing lost
            w.report_error(str(exc))
            w.load_finished.emit(False)
            return
        if note:
            w.statusBar().showMessage(note, 15000)
        w.browser_dock.show()
        w.open_series(chosen)

    def open_series(self, series: SeriesInfo) -> None:
        """Load an image series of the index (from those of its files that are still there)."""
        from ...io.dicom.series import load_series_job

        w = self.window
        if series.kind != "image":
            w.report_error(f"{series.label()} is a {series.kind} object, not an image series")
            w.load_finished.emit(False)
            return
        # files indexed earlier may have been moved or deleted since (a copied study removed): the
        # index forgets them, and the series loads from the files that are still there
        gone = [ref for ref in series.files if not os.path.exists(ref.path)]
        files = [ref for ref in series.files if os.path.exists(ref.path)] if gone else series.files
        if gone:
            w.index.forget(*gone)
            w.browser.refresh()
            log.info("%s: %d indexed files are gone and were forgotten", series.label(), len(gone))
            if not files:
                w.report_error(f"{series.label()}: its files are gone (moved or deleted since they were "
                               "indexed); open the folder where they are now")
                w.load_finished.emit(False)
                return
        w.browser.select_series(series.key)
        folders = {os.path.dirname(ref.path) for ref in files}
        source = (folders.pop() if len(folders) == 1 else os.path.commonpath(list(folders)), series.uid or None)
        self.start_load(load_series_job(files), series.label(), source=source,
                        reload_regular=lambda: self.start_load(load_series_job(files, regularize=True),
                                                               series.label(), source=source))

    # ---- the job ---------------------------------------------------------------------------------
    def start_load(self, job, label: str, reload_regular=None, source: tuple[str, str | None] | None = None) -> None:
        """Load ``job``'s volume (unless unsaved labels are kept); ``reload_regular`` reloads it resampled
        to regular slice spacing, ``source`` is (folder or file, series UID) for the annotation."""
        w = self.window
        if not w.annotating.confirm_discard("open another image"):
            job.close()
            w.load_finished.emit(False)
            return
        self.label = label
        self._source = source
        if not self._preview_shown:
            # what to go back to if this load fails or is cancelled: the last complete volume
            # (when a load replaces another still loading, its half-decoded preview is not kept)
            self._previous = (self.viewer.volume, self.viewer.window, self.viewer.window_name,
                              self._reload_regular)
        self._reload_regular = reload_regular
        self._start(job, f"loading {label}", self._loaded, on_progress=self._load_progress)

    def _start(self, job, what: str, on_finished, on_progress=None) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        runner = JobRunner(job, name=what, parent=self.window)

        def current(handler):  # a job replaced by a newer one is ignored when it ends
            return lambda *args: runner is self.runner and handler(*args)

        if on_progress is not None:
            runner.progress.connect(lambda rec: runner is self.runner and on_progress(rec))
        runner.finished.connect(current(on_finished))
        runner.failed.connect(current(lambda exc: self._job_failed(what, exc)))
        runner.cancelled.connect(current(lambda: self._job_cancelled(what)))
        self.runner = runner
        self.window.job_status.track(runner, what)
        runner.start()

    def _job_failed(self, what: str, exc: BaseException) -> None:
        self._restore_previous()
        self.window.report_error(f"{what} failed: {exc}")
        self.window.load_finished.emit(False)

    def _job_cancelled(self, what: str) -> None:
        self._restore_previous()
        self.window.statusBar().showMessage(f"{what}: cancelled", 8000)
        self.window.load_finished.emit(False)

    def _restore_previous(self) -> None:
        if self._preview_shown and self._previous is not None:
            volume, window, name, self._reload_regular = self._previous
            self.viewer.set_volume(volume, window=window if volume is not None else None, window_name=name)
        self._preview_shown = False

    def cancel(self) -> None:
        """Cancel the scan or load running."""
        if self.runner is not None:
            self.runner.cancel()

    def _load_progress(self, rec: Progress) -> None:
        if rec.preview is not None and not self._preview_shown:
            # the first decoded slices (the middle ones) are there: show the volume filling up
            self._preview_shown = True
            self._last_preview_refresh = time.monotonic()
            self.viewer.set_volume(rec.preview)
            self.window.statusBar().showMessage(f"loading {self.label} ...")
        elif self._preview_shown and time.monotonic() - self._last_preview_refresh > 0.25:
            # the views redraw what has been decoded so far, a few times a second (not on every
            # record: on a small machine that would take the event loop's time from the user)
            self._last_preview_refresh = time.monotonic()
            self.viewer.notify_data_updated()

    def _loaded(self, volumes: list[Volume]) -> None:
        w, viewer = self.window, self.viewer
        volume = volumes[0]
        keep = self._preview_shown and viewer.volume is not None and viewer.volume.same_grid(volume)
        if keep and viewer.volume.array.shape == volume.array.shape:
            # the preview was this volume filling up: keep the cursor and any window the user chose
            # (an automatic window is recomputed now that every slice is there)
            automatic = viewer.window_name == "automatic"
            viewer.set_volume(volume, window=None if automatic else viewer.window,
                              window_name=viewer.window_name, keep_cursor=True)
        else:
            viewer.set_volume(volume)
        w.annotating.annotation.source = self._source
        self._preview_shown = False
        warnings = volume.metadata.get("warnings") or []
        message = f"opened {self.label}: {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]}"
        if volume.is_4d:
            message += f", {volume.n_frames} frames"
        if warnings:
            message += f"  ({len(warnings)} warning{'s' if len(warnings) > 1 else ''}: {warnings[0]})"
            for warning in warnings:
                log.warning("%s: %s", self.label, warning)
        w.statusBar().showMessage(message, 20000)
        w.update_title()
        w.load_finished.emit(True)

    # ---- warnings ------------------------------------------------------------------------------
    def warnings(self) -> list[str]:
        """What the loader noticed about the complete volume on screen."""
        volume = self.viewer.volume
        if volume is None or volume.metadata.get("partial"):
            return []
        return list(volume.metadata.get("warnings") or [])

    def show_warning_button(self) -> None:
        """The status bar's warning button: shown (with the count) while the volume on screen has warnings."""
        button = self.window.warning_button
        warnings = self.warnings()
        if not warnings:
            button.hide()
            return
        button.setText(f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}")
        button.setToolTip("\n".join(warnings))
        button.show()

    def show_warnings(self) -> None:
        """What the loader noticed about the data on screen (spacing, tilt, missing tags ...); a
        series with irregular slice spacing can be resampled onto a regular grid from here."""
        warnings = self.warnings()
        if not warnings:
            return
        irregular = any(w.startswith("non-uniform slice spacing") and "resampled" not in w for w in warnings)
        box = QMessageBox(QMessageBox.Icon.Warning, "medvision",
                          f"{self.label}: what the loader noticed", parent=self.window)
        box.setInformativeText("\n\n".join(warnings))
        resample = None
        if irregular and self._reload_regular is not None:
            resample = box.addButton("Resample to regular spacing", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if resample is not None:
            resample.clicked.connect(self._reload_regular)
        if os.environ.get("MEDVISION_NO_DIALOGS"):
            self.last_warning_box = box
            return
        box.open()
