"""The Models dock: the local models and their cards; run one on the image (or the region the views
are zoomed to) as a job; its result is a *proposal*, a separate label map drawn as an outline over
the image, with an optional uncertainty overlay. Accept puts it into the working labels as one undo
step (all of it, or one label); Discard drops it. Manual labels are never changed otherwise.
"""

from __future__ import annotations

import html
import logging
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...annotate.rules import EMPTY_ONLY, EditRules, paint
from ...core.labels import LabelMap
from ..job_status import JobStatus
from ..jobs import JobRunner
from ..views.viewer import Layer
from ..widgets import heat_lut
from .inpaint_box import InpaintBox

log = logging.getLogger(__name__)

#: the colour of an implausible result's verdict
ALARM = "#e04040"

PROPOSAL = "proposal"
UNCERTAINTY = "uncertainty"



class ModelPanel(QWidget):
    def __init__(self, annotation, views, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.annotation = annotation
        self.viewer = annotation.viewer
        self.views = views
        self.runner: JobRunner | None = None
        self.proposal: LabelMap | None = None
        self.uncertainty: np.ndarray | None = None
        self.result = None
        self.annotating = None  # set by the window: the worklist's project feeds fine-tuning
        self.training_dialog = None
        self.packages = []
        layout = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.list.currentRowChanged.connect(self._show_card)
        layout.addWidget(self.list)
        self.card_view = QTextBrowser()
        self.card_view.setOpenExternalLinks(False)
        self.card_view.setMinimumHeight(90)
        layout.addWidget(self.card_view, 2)  # (the room left over: a trained model's card is long)
        self.run_box = self._build_run_box()
        self.proposal_box = self._build_proposal_box()
        layout.addWidget(self.run_box, 1)
        layout.addWidget(self.proposal_box)
        # an inpainting model's own part (shown instead of Run and Proposal when one is chosen)
        self.inpaint_box = InpaintBox(self)
        layout.addWidget(self.inpaint_box, 1)
        row = QHBoxLayout()
        self.train_button = QPushButton("Fine-tune...")
        self.train_button.setToolTip("Train a new model from this one on your finished cases (transfer learning)")
        self.train_button.clicked.connect(self.open_training)
        self.compare_button = QPushButton("Compare...")
        self.compare_button.setToolTip("Run two models on this case and score them against its labels (Dice)")
        self.compare_button.clicked.connect(self.open_compare)
        self.explain_button = QPushButton("Explain...")
        self.explain_button.setToolTip("Why the model labels a region: a saliency map over the image")
        self.explain_button.clicked.connect(self.open_explain)
        row.addWidget(self.train_button)
        row.addWidget(self.compare_button)
        row.addWidget(self.explain_button)
        layout.addLayout(row)
        self.viewer.volume_changed.connect(self._volume_changed)
        self.refresh()
        self._sync()

    def _build_run_box(self) -> QGroupBox:
        """Device, region, augmentation and uncertainty, Run, the job's status and the verdict."""
        box = QGroupBox("Run")
        form = QFormLayout(box)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.device_combo.setToolTip("auto: the NVIDIA GPU when there is one, else the CPU")
        self.region_combo = QComboBox()
        self.region_combo.addItems(["whole image", "region the views show"])
        self.region_combo.setToolTip("region: what the axial view shows across, the coronal view top to bottom "
                                     "(zoom in to the structure first)")
        self.tta_check = QCheckBox("Test-time augmentation (flips)")
        self.uncertainty_check = QCheckBox("Uncertainty map")
        form.addRow("Device", self.device_combo)
        form.addRow("On", self.region_combo)
        form.addRow(self.tta_check)
        form.addRow(self.uncertainty_check)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        row.addWidget(self.run_button)
        form.addRow(row)
        self.job_status = JobStatus(message=True)  # the running model's stage and Cancel
        form.addRow(self.job_status)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a long verdict scrolls inside the dock instead of being cut off on a small screen
        self.status_scroll = QScrollArea()
        self.status_scroll.setWidget(self.status)
        self.status_scroll.setWidgetResizable(True)
        self.status_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.status_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.status_scroll.setMinimumHeight(48)
        form.addRow(self.status_scroll)
        return box

    def _build_proposal_box(self) -> QGroupBox:
        """Accept all, accept one label, discard, show uncertainty."""
        box = QGroupBox("Proposal")
        form = QFormLayout(box)
        self.keep_check = QCheckBox("Keep existing labels (fill only unlabelled voxels)")
        self.keep_check.setChecked(True)
        self.label_combo = QComboBox()
        self.accept_button = QPushButton("Accept all")
        self.accept_button.clicked.connect(lambda: self.accept(None))
        self.accept_one = QPushButton("Accept label")
        self.accept_one.clicked.connect(lambda: self.accept(self.label_combo.currentData()))
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard)
        self.show_uncertainty = QCheckBox("Show uncertainty")
        self.show_uncertainty.toggled.connect(self._toggle_uncertainty)
        form.addRow(self.keep_check)
        row = QHBoxLayout()
        row.addWidget(self.accept_button)
        row.addWidget(self.discard_button)
        form.addRow(row)
        row = QHBoxLayout()
        row.addWidget(self.label_combo, 1)
        row.addWidget(self.accept_one)
        form.addRow(row)
        form.addRow(self.show_uncertainty)
        return box

    # ---- models -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the models of the registry (shipped and the user's)."""
        from ...ai.inpainting.builtin import builtin_inpainters
        from ...ai.package import Registry

        registry = Registry()
        # (the built-in fill last: it inpaints without a model)
        self.packages = registry.packages() + builtin_inpainters()
        self.list.clear()
        for pkg in self.packages:
            item = QListWidgetItem(f"{pkg.name}  {pkg.version}" + ("  [contains code]" if pkg.contains_code else ""))
            item.setToolTip(pkg.summary())
            self.list.addItem(item)
        if self.packages:
            self.list.setCurrentRow(0)
        for problem in registry.problems:
            log.warning("model package not usable: %s", problem)

    @property
    def package(self):
        row = self.list.currentRow()
        return self.packages[row] if 0 <= row < len(self.packages) else None

    def select(self, model_id: str) -> bool:
        for i, pkg in enumerate(self.packages):
            if pkg.id == model_id:
                self.list.setCurrentRow(i)
                return True
        return False

    def is_inpainting(self) -> bool:
        return self.package is not None and self.package.card.get("task") == "inpainting"

    def _show_card(self, _row: int) -> None:
        pkg = self.package
        inpainting = self.is_inpainting()
        self.run_box.setVisible(not inpainting)
        self.proposal_box.setVisible(not inpainting)
        self.inpaint_box.setVisible(inpainting)
        if inpainting:
            self.inpaint_box.method_changed(pkg)
        self.explain_button.setEnabled(pkg is not None and not inpainting
                                       and (pkg.card.get("inference") or {}).get("mode") != "brainchop")
        trainable = pkg is not None and pkg.card.get("trainable", True)
        self.train_button.setEnabled(trainable or pkg is None)  # (none chosen: the dialog says what to choose)
        self.train_button.setToolTip("Train a new model from this one on your finished cases (transfer learning)"
                                     if trainable or pkg is None else f"{pkg.name} cannot be fine-tuned")
        if pkg is None:
            self.card_view.setHtml("<i>No model packages found.</i>")
            return
        c = pkg.card
        labels = ", ".join(html.escape(str(la.get("name"))) for la in pkg.labels)
        prov = c.get("provenance") or {}
        rows = [("Task", c.get("task")), ("Modality", f"{pkg.modality or 'any'} {c.get('sequence', '')}".strip()),
                ("Labels", labels), ("Version", pkg.version), ("Licence", c.get("license")),
                ("Source", prov.get("source")), ("Parent", prov.get("parent")),
                ("Metrics", metrics_text(prov.get("metrics") or {})),
                ("Validation", (prov.get("metrics") or {}).get("validation") or prov.get("split")),
                ("Where", "shipped with medvision" if pkg.shipped else str(pkg.folder))]
        text = "".join(f"<tr><td><b>{k}</b></td><td>{html.escape(str(v)) if k != 'Labels' else v}</td></tr>"
                       for k, v in rows if v)
        if pkg.contains_code:
            from ...ai.package import CODE_WARNING

            text = (f"<tr><td><b>Code</b></td><td style='color:#d32f2f'><b>{html.escape(CODE_WARNING)}</b> "
                    "(TorchScript; imported with --trust-code)</td></tr>") + text
        self.card_view.setHtml(f"<b>{html.escape(pkg.name)}</b><br>{html.escape(str(c.get('description', '')))}"
                               f"<table>{text}</table><small>{html.escape(str(c.get('attribution', '')))}</small>")

    # ---- running ----------------------------------------------------------------------------
    def view_region(self):
        """The (z, y, x) box of the volume the views show, or None for the whole image."""
        if self.region_combo.currentIndex() == 0 or self.viewer.grid is None:
            return None
        grid = self.viewer.grid
        from PySide6.QtCore import QPointF

        lo, hi = np.zeros(3), np.asarray(grid.shape_xyz, float) - 1
        for plane, axes in (("axial", (0, 1)), ("coronal", (2,))):
            view = self.views.slice_views[plane]
            (x0, x1), (y0, y1) = view.vb.viewRange()  # view coordinates: millimetres on the screen image
            corners = [view.screen_index(QPointF(x0, y0)), view.screen_index(QPointF(x1, y1))]
            for a in axes:
                vals = sorted(c[a] for c in corners)
                lo[a], hi[a] = max(lo[a], vals[0]), min(hi[a], vals[1])
        lo, hi = np.floor(np.clip(lo, 0, None)).astype(int), np.ceil(hi).astype(int)
        if np.any(hi - lo < 8):
            return None
        a = self.viewer.array_index(lo)
        b = self.viewer.array_index(hi)
        return tuple(slice(int(min(p, q)), int(max(p, q)) + 1) for p, q in zip(a, b, strict=True))

    def run(self) -> bool:
        if self.is_inpainting():
            return self.inpaint_box.run()
        pkg = self.package
        volume = self.viewer.volume
        if pkg is None or volume is None or volume.metadata.get("partial"):
            self._ended("open an image (and let it load) and choose a model first")
            return False
        if self.runner is not None and self.runner.running:
            return False
        warnings = pkg.suitability(volume)
        from ...ai.options import InferenceOptions

        options = InferenceOptions(device=self.device_combo.currentText(), tta=self.tta_check.isChecked(),
                                   uncertainty=self.uncertainty_check.isChecked(), box=self.view_region(),
                                   frame=self.viewer.frame)

        def job():
            from ...ai.engine import infer_job

            return (yield from infer_job(pkg, volume, options))

        self.discard()
        self.runner = JobRunner(job(), name=f"running {pkg.name}", interval=0.1, parent=self)
        self.runner.finished.connect(self._finished)
        self.runner.failed.connect(self._failed)
        self.runner.cancelled.connect(lambda: self._ended("cancelled"))
        self._started = time.perf_counter()
        self._ended("\n".join(f"warning: {w}" for w in warnings) or f"running {pkg.name} ...")
        self.job_status.track(self.runner, f"running {pkg.name}")
        self.runner.start()
        self._sync()
        return True

    def cancel(self) -> None:
        if self.runner is not None:
            self.runner.cancel()

    def open_training(self):
        from ..dialogs.training import TrainingDialog

        dialog = self.training_dialog
        busy = dialog is not None and dialog.process is not None and dialog.process.running
        if not busy and (dialog is None or not dialog.isVisible()):  # a running training keeps its dialog
            self.training_dialog = TrainingDialog(self, self.window())
        self.training_dialog.show()
        self.training_dialog.raise_()
        return self.training_dialog

    def open_explain(self):
        from ..dialogs.explain import ExplainDialog

        dialog = ExplainDialog(self, self.window())
        dialog.show()
        return dialog

    def open_compare(self):
        from ..dialogs.compare import CompareDialog

        dialog = CompareDialog(self, self.window())
        dialog.show()
        return dialog

    def _ended(self, text: str, alarm: str = "") -> None:
        """Show ``text``; ``alarm`` (plain text) above it in bold red."""
        if alarm:
            self.status.setTextFormat(Qt.TextFormat.RichText)
            lines = [html.escape(line) for line in (alarm + "\n" + text).splitlines()]
            cut = alarm.count("\n") + 1
            self.status.setText(f'<span style="color:{ALARM}; font-weight:bold">{"<br>".join(lines[:cut])}</span>'
                                f'<br>{"<br>".join(lines[cut:])}')
        else:
            self.status.setTextFormat(Qt.TextFormat.PlainText)
            self.status.setText(text)
        self._fit_status()
        self._sync()

    def _fit_status(self) -> None:
        """Room for the status text (up to ~10 lines; the card above gives it up), the rest scrolls."""
        width = max(100, self.status_scroll.viewport().width())
        need = self.status.heightForWidth(width) if self.status.text() else 0
        self.status_scroll.setMinimumHeight(max(48, min(need + 4, 10 * self.fontMetrics().lineSpacing())))

    def _failed(self, exc: BaseException) -> None:
        message = f"{self.package.name if self.package else 'the model'} failed: {exc}"
        self._ended(message)
        self.annotation.failed.emit(message)

    def _finished(self, result) -> None:
        volume = self.viewer.volume
        if volume is None or result.labels.shape != volume.shape[-3:]:
            self._ended("the image changed while the model ran: result dropped")
            return
        self.result = result
        self.proposal = result.labels
        self.uncertainty = result.uncertainty
        s = result.seconds
        # a modality warning the verdict repeats is not said twice
        said = " ".join(result.implausible)
        notes = "".join(f"\n{n}" for n in result.notes
                        if not (n.startswith("warning:") and "was made for" in n and "was made for" in said))
        ml = result.labels.voxel_volume_ml()
        found = ", ".join(f"{la.name} {int((result.labels.array == la.value).sum()) * ml:.1f} mL"
                          for la in result.labels.table)
        done = (f"done on {result.device} in {s.get('total', 0):.1f} s (inference {s.get('inference', 0):.1f} s): "
                f"{found}{notes}")
        if result.implausible:
            why = "".join(f"\n- {w}" for w in result.implausible)
            self._ended(done, alarm=f"IMPLAUSIBLE RESULT: check it before accepting it{why}")
            self.annotation.message.emit(f"implausible result: {'; '.join(result.implausible)}")
        else:
            self._ended(done)
        self._show_proposal()

    # ---- the proposal -----------------------------------------------------------------------
    def _show_proposal(self) -> None:
        viewer = self.viewer
        viewer.remove_layer(PROPOSAL, UNCERTAINTY, notify=False)
        if self.proposal is not None:
            lut = self.proposal.table.lut(256 if self.proposal.array.dtype == np.uint8 else None)
            viewer.add_layer(Layer(PROPOSAL, self.proposal.array, lut, 0.9, outline=True), notify=False)
            self.label_combo.clear()
            for la in self.proposal.table:
                self.label_combo.addItem(la.name, la.value)
        if self.uncertainty is not None and self.show_uncertainty.isChecked():
            top = float(self.uncertainty.max()) or 1.0
            scaled = np.clip(self.uncertainty / top * 255, 0, 255).astype(np.uint8)
            viewer.add_layer(Layer(UNCERTAINTY, scaled, heat_lut(), 0.7), notify=False)
        viewer.display_changed.emit()
        self._sync()

    def _toggle_uncertainty(self, _on: bool) -> None:
        self._show_proposal()

    def accept(self, value: int | None = None) -> bool:
        """Put the proposal (or its label ``value``) into the working labels: one undo step."""
        ann, proposal = self.annotation, self.proposal
        if proposal is None or not ann.can_edit():
            return False
        if self.result is not None and self.result.implausible and not self.confirm_implausible():
            return False
        labels = ann.ensure_labels()
        if labels is None:
            return False
        chosen = [la for la in proposal.table if value is None or la.value == value]
        rules = EditRules(inside=EMPTY_ONLY if self.keep_check.isChecked() else ann.rules.inside,
                          intensity=None, respect_locks=True)
        history = ann.history
        history.begin(f"accept {self.package.name if self.package else 'model'} proposal")
        changed = False
        try:
            for la in chosen:
                mask = proposal.array == la.value
                if not mask.any():
                    continue
                target = labels.table.by_name(la.name)
                if target is None:
                    target = labels.table.add(la.name, la.color, category=la.category, type=la.type)
                    ann.table_edited()
                full = tuple(slice(0, n) for n in mask.shape)
                changed |= paint(history, labels, full, mask, target.value, rules, description="accept")
        finally:
            history.end()
        if changed:
            ann.message.emit("proposal accepted into the labels (Ctrl+Z undoes it)")
            if value is None:
                self.discard()
        else:
            ann.message.emit("the proposal added nothing (the voxels are labelled or locked already)")
        return changed

    def confirm_implausible(self) -> bool:
        """Ask before an implausible result goes into the labels (default: no)."""
        box = QMessageBox(QMessageBox.Icon.Warning, "medvision",
                          "This result is implausible:\n\n" + "\n".join(f"- {w}" for w in self.result.implausible)
                          + "\n\nPut it into the labels all the same?", parent=self)
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box.exec() == QMessageBox.StandardButton.Yes

    def discard(self) -> None:
        self.proposal = None
        self.uncertainty = None
        self.label_combo.clear()
        self.viewer.remove_layer(PROPOSAL, UNCERTAINTY)
        self._sync()

    def _volume_changed(self) -> None:
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        self.proposal = None
        self.uncertainty = None
        QTimer.singleShot(0, self._sync)

    def _sync(self) -> None:
        running = self.runner is not None and self.runner.running
        has = self.proposal is not None
        self.run_button.setEnabled(not running and self.package is not None)
        for w in (self.accept_button, self.accept_one, self.discard_button, self.label_combo):
            w.setEnabled(has and not running)
        self.show_uncertainty.setEnabled(self.uncertainty is not None)


__all__ = ["ModelPanel", "Qt"]


def metrics_text(metrics: dict) -> str:
    """A card's metrics in words: validation Dice (± the folds' spread, at which epoch), per label, the rest."""
    def num(v) -> str:
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    m = dict(metrics) if isinstance(metrics, dict) else {}
    parts = []
    if "val_dice" in m:
        sd, epoch = m.pop("val_dice_sd", None), m.pop("best_epoch", None)
        parts.append(f"validation Dice {num(m.pop('val_dice'))}" + (f" ± {num(sd)}" if sd is not None else "")
                     + (f" (epoch {epoch})" if epoch else ""))
    per = m.pop("per_label", None)
    if isinstance(per, dict) and per:
        parts.append(", ".join(f"{n} {num(v)}" for n, v in per.items()))
    m.pop("validation", None)  # (its own row)
    parts += [f"{k} {num(v)}" for k, v in m.items()]
    return "; ".join(parts)
