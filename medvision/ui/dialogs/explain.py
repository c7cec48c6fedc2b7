"""Explain...: why the chosen model labelled a region, as a map over the image (Grad-CAM, integrated
gradients, occlusion; :mod:`medvision.ai.explain`), run as a job (progress, cancel) and shown as an
overlay in every slice view with its colour scale, opacity and threshold. Every map made is kept in a
list and can be shown again; a map that fails the randomisation check says so in red beside it."""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSlider,
    QVBoxLayout,
)

from ..job_status import JobStatus
from ..jobs import JobRunner
from ..views.viewer import Layer

__all__ = ["ExplainDialog", "SALIENCY", "diverging_lut", "saliency_lut"]

SALIENCY = "saliency"
METHOD_NAMES = {"gradcam": "Grad-CAM (where a layer's features mattered)",
                "ig": "Integrated gradients (each voxel's signed share)",
                "occlusion": "Occlusion (the score's drop when a patch is hidden)"}


def saliency_lut() -> np.ndarray:
    """Codes 1..255 -> dark red to yellow to white (0 -> transparent): a map that only rises."""
    t = np.linspace(0, 1, 255)
    lut = np.zeros((256, 4), np.uint8)
    lut[1:, 0] = np.clip(255 * (0.35 + 1.3 * t), 0, 255)
    lut[1:, 1] = np.clip(255 * (1.6 * t - 0.35), 0, 255)
    lut[1:, 2] = np.clip(255 * (2.5 * t - 1.5), 0, 255)
    lut[1:, 3] = 255
    return lut


def diverging_lut() -> np.ndarray:
    """Codes 1..127 blue (most negative first), 128 unused, 129..255 red (most positive last); 0 transparent."""
    lut = np.zeros((256, 4), np.uint8)
    neg = np.linspace(1, 0.15, 127)
    lut[1:128, 0] = (60 * (1 - neg)).astype(np.uint8)
    lut[1:128, 1] = (120 + 100 * (1 - neg)).astype(np.uint8)
    lut[1:128, 2] = 255
    pos = np.linspace(0.15, 1, 127)
    lut[129:, 0] = 255
    lut[129:, 1] = (200 * (1 - pos)).astype(np.uint8)
    lut[129:, 2] = (60 * (1 - pos)).astype(np.uint8)
    lut[1:, 3] = 255
    lut[128, 3] = 0
    return lut


def codes(values: np.ndarray, signed: bool, threshold: float) -> tuple[np.ndarray, float]:
    """The map as overlay codes (0: below ``threshold`` of the top, transparent) and the top it is scaled by:
    the 99.5th percentile of its non-zero magnitudes (a map's few highest voxels would otherwise leave the
    rest too faint to see), above which the colour stays at its end."""
    magnitude = np.abs(values)
    nonzero = magnitude[magnitude > 0]
    peak = float(np.percentile(nonzero, 99.5)) if nonzero.size else 1.0
    peak = peak or float(magnitude.max()) or 1.0
    scaled = np.clip(values / peak, -1, 1)
    keep = np.abs(scaled) >= max(threshold, 1e-6)
    if signed:
        out = np.where(scaled >= 0, 129 + np.rint(scaled * 126), 127 - np.rint(-scaled * 126))
    else:
        out = 1 + np.rint(np.clip(scaled, 0, 1) * 254)
    return np.where(keep, out, 0).astype(np.uint8), peak


class ExplainDialog(QDialog):
    """Set up, run and show saliency maps of the Models dock's chosen model on the image shown."""

    def __init__(self, model_panel, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Explain a model's labels")
        self.model_panel = model_panel
        self.viewer = model_panel.viewer
        self.package = model_panel.package
        self.runner: JobRunner | None = None
        self.maps: list[tuple[str, object, bool]] = []  # (title, ExplainResult, signed)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Model", QLabel(html.escape(self.package.name if self.package else "(none)")))
        self.method_combo = QComboBox()
        for key, text in METHOD_NAMES.items():
            self.method_combo.addItem(text, key)
        form.addRow("Method", self.method_combo)
        self.label_combo = QComboBox()
        for label in (self.package.labels if self.package else []):
            self.label_combo.addItem(str(label.get("name")), str(label.get("name")))
        form.addRow("Label", self.label_combo)
        self.box_check = QCheckBox("Only inside the region the views show (zoom in first)")
        form.addRow(self.box_check)
        self.sanity_check = QCheckBox("Randomisation check (the map must change with random weights)")
        self.sanity_check.setChecked(True)
        form.addRow(self.sanity_check)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device", self.device_combo)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.run_button = QPushButton("Explain")
        self.run_button.clicked.connect(self.run)
        row.addWidget(self.run_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.job_status = JobStatus(message=True)
        layout.addWidget(self.job_status)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        self.map_list = QListWidget()
        self.map_list.setMaximumHeight(110)
        self.map_list.currentRowChanged.connect(lambda _r: self.show_map())
        layout.addWidget(self.map_list)
        display = QFormLayout()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.valueChanged.connect(lambda _v: self.show_map())
        display.addRow("Opacity", self.opacity)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 0.99)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.2)
        self.threshold.setToolTip("Hide the map below this share of its top (its 99.5th percentile)")
        self.threshold.valueChanged.connect(lambda _v: self.show_map())
        display.addRow("Threshold (of the top)", self.threshold)
        self.colour_bar = QLabel()
        self.scale_label = QLabel("")
        display.addRow(self.colour_bar)
        display.addRow(self.scale_label)
        layout.addLayout(display)
        self.viewer.volume_changed.connect(self._volume_changed)
        self._sync()

    # ---- running ---------------------------------------------------------------------------
    def run(self) -> bool:
        from ...ai.explain.job import ExplainOptions, explain_job

        volume = self.viewer.volume
        if self.package is None or volume is None or volume.metadata.get("partial"):
            self.status.setText("open an image (and let it load) and choose a model in the Models dock first")
            return False
        if self.runner is not None and self.runner.running:
            return False
        box = self.model_panel.view_region() if self.box_check.isChecked() else None
        if self.box_check.isChecked() and box is None:
            self.status.setText("zoom the views in to the region first (or leave the box unticked)")
            return False
        options = ExplainOptions(method=self.method_combo.currentData(), label=self.label_combo.currentData(),
                                 box=box, sanity=self.sanity_check.isChecked(),
                                 device=self.device_combo.currentText(), frame=self.viewer.frame)
        self.runner = JobRunner(explain_job(self.package, volume, options), name="explaining", interval=0.1,
                                parent=self)
        self.runner.finished.connect(lambda result: self._finished(result, volume))
        self.runner.failed.connect(lambda exc: self._ended(f"could not explain: {exc}"))
        self.runner.cancelled.connect(lambda: self._ended("cancelled"))
        self.job_status.track(self.runner, f"explaining {options.label or 'the box'}")
        self.status.setText("")
        self.runner.start()
        self._sync()
        return True

    def _ended(self, text: str) -> None:
        self.status.setText(text)
        self._sync()

    def _finished(self, result, volume) -> None:
        if self.viewer.volume is not volume:
            self._ended("the image changed while the map was made: dropped")
            return
        signed = result.method == "ig"
        verdict = result.check.summary() if result.check is not None else "not checked"
        title = f"{result.method} · {result.label}" + (f" · layer {result.layer}" if result.layer else "")
        if result.check is not None and not result.check.passed:
            title += " · FAILS randomisation check"
        self.maps.append((title, result, signed))
        self.map_list.addItem(title)
        if result.check is not None and not result.check.passed:
            self.map_list.item(self.map_list.count() - 1).setForeground(QColor("#e04040"))
        self.map_list.setCurrentRow(self.map_list.count() - 1)
        notes = "".join(f"\n{n}" for n in result.notes)
        extra = (f"\ncompleteness {100 * result.completeness_error:.1f} % after {result.steps} steps"
                 if result.completeness_error is not None else "")
        self._ended(f"{title}: {result.seconds.get('total', 0):.1f} s; {verdict}{extra}{notes}")

    # ---- showing ---------------------------------------------------------------------------
    def show_map(self) -> None:
        self.viewer.remove_layer(SALIENCY, notify=False)
        row = self.map_list.currentRow()
        if 0 <= row < len(self.maps):
            _title, result, signed = self.maps[row]
            array, peak = codes(result.map, signed, self.threshold.value())
            lut = diverging_lut() if signed else saliency_lut()
            self.viewer.add_layer(Layer(SALIENCY, array, lut, self.opacity.value() / 100), notify=False)
            self._show_scale(lut, peak, signed)
        self.viewer.display_changed.emit()

    def _show_scale(self, lut: np.ndarray, peak: float, signed: bool) -> None:
        bar = np.ascontiguousarray(np.repeat(lut[None, 1:, :3], 14, axis=0))
        image = QImage(bar.data, bar.shape[1], bar.shape[0], 3 * bar.shape[1], QImage.Format.Format_RGB888)
        self.colour_bar.setPixmap(QPixmap.fromImage(image.copy()))
        low = f"-{peak:.3g}" if signed else f"{self.threshold.value() * peak:.3g}"
        what = (" (blue: against the label, red: for it)" if signed
                else " (the top: the 99.5th percentile; shown above the threshold)")
        self.scale_label.setText(f"{low}  ...  {peak:.3g}{what}")

    def _volume_changed(self) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        self.maps.clear()
        self.map_list.clear()
        self.viewer.remove_layer(SALIENCY)

    def _sync(self) -> None:
        running = self.runner is not None and self.runner.running
        self.run_button.setEnabled(not running and self.package is not None)

    def closeEvent(self, event) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        self.viewer.remove_layer(SALIENCY)
        super().closeEvent(event)
