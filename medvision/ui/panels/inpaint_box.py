"""The Models dock's part for an inpainting model: fill the active label's voxels with plausible
tissue (a job: progress, cancel); the filled image shown in place, in the views' own window, with the
original a key press away and a difference map; accepted, it becomes a new series (a derived DICOM
series for a DICOM image, else NIfTI with a sidecar that says what it is) that opens beside the
original, which is never changed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton

from ...core.jobs import Progress
from ..job_status import JobStatus
from ..jobs import JobRunner, run_in_thread
from ..views.viewer import Layer
from ..widgets import heat_lut

__all__ = ["InpaintBox", "FILLED", "DIFFERENCE"]

FILLED = "inpainted"  # the filled region, drawn over the image
DIFFERENCE = "inpainting difference"


def _grey_lut() -> np.ndarray:
    """Codes 1..255 -> grey ramp, opaque; 0 transparent (outside the region)."""
    lut = np.zeros((256, 4), np.uint8)
    ramp = np.linspace(0, 255, 255).round().astype(np.uint8)
    lut[1:, 0] = lut[1:, 1] = lut[1:, 2] = ramp
    lut[1:, 3] = 255
    return lut


class InpaintBox(QGroupBox):
    def __init__(self, panel) -> None:
        super().__init__("Inpaint")
        self.panel = panel
        self.viewer = panel.viewer
        self.annotation = panel.annotation
        self.runner: JobRunner | None = None
        self.writer: JobRunner | None = None
        self.result = None
        self.region: np.ndarray | None = None
        self.source = None  # the volume the result was made from
        form = QFormLayout(self)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.device_combo.setToolTip("auto: the NVIDIA GPU when there is one, else the CPU")
        form.addRow("Device", self.device_combo)
        self.grain_check = QCheckBox("The image's grain in the fill")
        self.grain_check.setChecked(True)
        self.grain_check.setToolTip("Copy the image's fine grain (noise) into the fill from nearby tissue of the same "
                                    "brightness, so that it does not show as a smooth patch; off: the smooth fill, "
                                    "the lowest error")
        form.addRow(self.grain_check)
        self.region_label = QLabel("")
        self.region_label.setWordWrap(True)
        self.region_label.setToolTip("The fill continues what lies just outside the region: take in a lesion's rim "
                                     "or edge (Annotation: Margin, Grow) so that it starts from healthy tissue")
        form.addRow("Region", self.region_label)
        self.run_button = QPushButton("Fill the region")
        self.run_button.setToolTip("Fill the active label's voxels with what the model expects there")
        self.run_button.clicked.connect(self.run)
        form.addRow(self.run_button)
        self.job_status = JobStatus(message=True)
        form.addRow(self.job_status)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.status)
        self.original_check = QCheckBox("Show the original (O)")
        self.original_check.setShortcut("O")
        self.original_check.toggled.connect(self._show)
        self.difference_check = QCheckBox("Difference map")
        self.difference_check.toggled.connect(self._show)
        form.addRow(self.original_check)
        form.addRow(self.difference_check)
        row = QHBoxLayout()
        self.accept_button = QPushButton("Accept as a new series")
        self.accept_button.clicked.connect(self.accept)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard)
        row.addWidget(self.accept_button)
        row.addWidget(self.discard_button)
        form.addRow(row)
        self.viewer.window_changed.connect(self._window_changed)
        self.viewer.volume_changed.connect(self._volume_changed)
        # the region's size is counted over the whole image: after edits, once they pause, and only while
        # this part is shown (painting stays as quick as without it)
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(250)
        self._later.timeout.connect(self.sync)
        self.annotation.active_changed.connect(lambda _v: self._sync_soon())
        self.annotation.voxels_changed.connect(lambda _b: self._sync_soon())
        self.sync()

    def _sync_soon(self) -> None:
        if self.isVisible():
            self._later.start()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.sync()

    def method_changed(self, method) -> None:
        """A method was chosen: the grain as its card says (the built-in fill adds it; a model's card says
        whether its fill needs it), the device for a network only."""
        self.grain_check.setChecked((method.card.get("input") or {}).get("texture") == "neighbour")
        builtin = getattr(method, "builtin", False)
        self.device_combo.setEnabled(not builtin)
        self.run_button.setToolTip("Fill the active label's voxels " + (
            "smoothly from the voxels around them" if builtin else "with what the model expects there"))

    # ---- the region ------------------------------------------------------------------------
    def current_region(self) -> np.ndarray | None:
        """The active label's voxels on the image, or None when there are none."""
        labels, active = self.annotation.labels, self.annotation.active
        if labels is None or not active:
            return None
        mask = labels.array == active
        return mask if mask.any() else None

    def sync(self) -> None:
        labels, active = self.annotation.labels, self.annotation.active
        label = labels.table.labels.get(active) if labels is not None and active else None
        region = self.current_region()
        if region is None:
            self.region_label.setText("paint the part to fill into a label, or draw a Box (Annotation tools); the "
                                      "active label is used")
        else:
            ml = labels.voxel_volume_ml() * int(region.sum()) if labels is not None else 0.0
            self.region_label.setText(f"the voxels of label \u201c{label.name if label else active}\u201d "
                                      f"({int(region.sum())} voxels, {ml:.1f} mL)")
        busy = self.runner is not None and self.runner.running
        self.run_button.setEnabled(region is not None and not busy and self.viewer.volume is not None)
        has = self.result is not None
        for w in (self.original_check, self.difference_check, self.accept_button, self.discard_button):
            w.setEnabled(has)

    # ---- running ---------------------------------------------------------------------------
    def run(self) -> bool:
        from ...ai.inpainting.infer import InpaintOptions, inpaint_job

        pkg, volume, region = self.panel.package, self.viewer.volume, self.current_region()
        if pkg is None or volume is None or region is None or volume.metadata.get("partial"):
            self.status.setText("open an image (and let it load), choose an inpainting model and paint the region")
            return False
        if self.runner is not None and self.runner.running:
            return False
        self.discard()
        options = InpaintOptions(device=self.device_combo.currentText(), frame=self.viewer.frame,
                                 texture=self.grain_check.isChecked())
        self.runner = JobRunner(inpaint_job(pkg, volume, region, options), name=f"running {pkg.name}",
                                interval=0.1, parent=self)
        self.runner.finished.connect(lambda result: self._finished(result, volume, region))
        self.runner.failed.connect(lambda exc: self._ended(f"{pkg.name} failed: {exc}", failed=True))
        self.runner.cancelled.connect(lambda: self._ended("cancelled"))
        warnings = pkg.suitability(volume)
        self._ended("\n".join(f"warning: {w}" for w in warnings) or f"filling with {pkg.name} ...")
        self.job_status.track(self.runner, f"filling with {pkg.name}")
        self.runner.start()
        self.sync()
        return True

    def _ended(self, text: str, failed: bool = False) -> None:
        self.status.setText(text)
        if failed:
            self.annotation.failed.emit(text)
        self.sync()

    def _finished(self, result, volume, region) -> None:
        if self.viewer.volume is not volume:
            self._ended("the image changed while the model ran: result dropped")
            return
        self.result, self.source, self.region = result, volume, region
        notes = "".join(f"\n{n}" for n in result.notes)
        self._ended(f"filled {int(region.sum())} voxels on {result.device} in {result.seconds.get('total', 0):.1f} s: "
                    f"shown in place (O: the original); Accept makes it a new series, the original stays{notes}")
        self._show()

    # ---- showing ---------------------------------------------------------------------------
    def _filled_image(self, plane: str, index: int) -> np.ndarray:
        """The filled region of one slice as grey codes in the views' window (0 outside the region)."""
        grid, win = self.viewer.grid, self.viewer.window
        values = grid.image(plane, index, self.result.volume.array).astype(np.float32)
        inside = grid.image(plane, index, self.region.view(np.uint8)) > 0
        scaled = np.clip((values - win.low) / max(win.width, 1e-6), 0, 1)
        if self.viewer.invert:
            scaled = 1 - scaled
        return np.where(inside, 1 + np.rint(scaled * 254), 0).astype(np.uint8)

    def _show(self) -> None:
        viewer = self.viewer
        viewer.remove_layer(FILLED, DIFFERENCE, notify=False)
        if self.result is not None:
            if not self.original_check.isChecked():
                viewer.add_layer(Layer(FILLED, self.region.view(np.uint8), _grey_lut(), 1.0,
                                       image_fn=self._filled_image), notify=False)
            if self.difference_check.isChecked():
                diff = np.abs(self.result.difference)
                top = float(diff.max()) or 1.0
                viewer.add_layer(Layer(DIFFERENCE, np.clip(diff / top * 255, 0, 255).astype(np.uint8), heat_lut(),
                                       0.7), notify=False)
        viewer.display_changed.emit()
        self.sync()

    def _window_changed(self) -> None:
        if self.result is not None and not self.original_check.isChecked():
            self.viewer.display_changed.emit()  # the filled region follows the window

    def _volume_changed(self) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        self.result = self.region = self.source = None
        self.sync()

    def discard(self) -> None:
        self.result = self.region = self.source = None
        self.original_check.setChecked(False)
        self.viewer.remove_layer(FILLED, DIFFERENCE)
        self.sync()

    # ---- accepting -------------------------------------------------------------------------
    def accept(self) -> bool:
        """Write the filled image as a new series (in the user's data folder) and open it."""
        if self.result is None or self.source is None or (self.writer is not None and self.writer.running):
            return False
        from ...ai.inpainting.builtin import describe
        from ...paths import data_dir

        pkg, result, source, frame = self.panel.package, self.result, self.source, self.viewer.frame
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = data_dir() / "derived" / f"{stamp}-{pkg.id}"
        what = source.metadata.get("description") or source.metadata.get("source", "")
        grain = " (with the image's grain from nearby tissue)" if result.volume.metadata["derived"]["grain"] else ""
        derivation = (f"{describe(pkg)}: {int(self.region.sum())} voxels filled{grain}; every other voxel is the "
                      f"source image's ({what})")

        def job():
            yield Progress("writing the new series", 0, 0)
            sources = source.metadata.get("frame_slice_sources")
            sources = sources[frame] if sources else source.metadata.get("slice_sources")
            if sources:
                from ...io.derived import write_derived_series

                frame_volume = source.frame(frame) if source.is_4d else source
                write_derived_series(frame_volume, result.volume.array, folder, sources=sources,
                                     description=describe(pkg), derivation=derivation)
                return str(folder)
            from ...io.derived import write_synthetic_volume

            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "inpainted.nii.gz"
            write_synthetic_volume(result.volume, path, derivation=derivation, Model=pkg.id,
                                   ModelVersion=pkg.version, Source=str(source.metadata.get("source", "")))
            return str(path)

        def written(where: str) -> None:
            self.annotation.message.emit(f"the inpainted image is a new series: {where}")
            self.discard()
            self.status.setText(f"written as a new series ({where}); it opens beside the original, which is "
                                "unchanged")
            opener = getattr(self.window(), "open_path", None)
            if opener is not None:
                opener(where)

        self.writer = run_in_thread(job(), on_finished=written, parent=self, name="writing the inpainted series",
                                    on_failed=lambda exc: self._ended(f"the new series could not be written: {exc}",
                                                                      failed=True))
        self.status.setText(f"writing the new series into {Path(folder)} ...")
        return True
