"""Fine-tuning from the Models dock: a dialog that trains a new model from a pretrained one on the
worklist's finished cases (or a datalist file) in a separate process, with live loss and
validation Dice curves (one per fold of a k-fold cross-validation), per-label Dice, ETA, pause and
cancel. The window stays usable meanwhile; a crash of the training process is reported and
changes nothing else."""

from __future__ import annotations

import json
import logging
import os
import time

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ...ai.training import FINAL_RUN
from .training_inpaint import apply_mode, is_finetunable_inpainting, show_final, show_progress

log = logging.getLogger(__name__)


class TrainingDialog(QDialog):
    """Set up and watch one training run."""

    model_ready = Signal(str)  # the new model's id, once its package is installed

    def __init__(self, model_panel, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune a model")
        self.resize(760, 720)
        self.model_panel = model_panel
        self.process = None
        self.history: list[dict] = []
        self.last_message = ""
        self.current_run = ""  # a cross-validation's run going on ("fold 2 of 3", FINAL_RUN)
        self.current_fold: int | None = None  # its fold's number (None: the final model)
        self.config_sent: dict = {}
        self.final: tuple[str, dict] | None = None
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_form(model_panel))
        layout.addLayout(self._build_buttons())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        layout.addLayout(self._build_plots(), 1)
        self.label_table = QTableWidget(0, 2)
        self.label_table.setHorizontalHeaderLabels(["Label", "Validation Dice"])
        self.label_table.horizontalHeader().setStretchLastSection(True)
        self.label_table.setMaximumHeight(150)
        layout.addWidget(self.label_table)

        self.timer = QTimer(self)
        self.timer.setInterval(200)
        self.timer.timeout.connect(self._poll)
        project = self._project()
        self.project_radio.setEnabled(project is not None)
        (self.project_radio if project is not None else self.datalist_radio).setChecked(True)
        self.n_cases = 0
        self.project_radio.toggled.connect(self._describe_cases)
        self.datalist_edit.textChanged.connect(self._describe_cases)
        self.validation_combo.currentIndexChanged.connect(self._sync_folds)
        self.base_combo.currentIndexChanged.connect(self._base_changed)
        self._describe_cases()
        self._base_changed()
        self._sync()

    def inpainting(self) -> bool:
        """Whether the chosen base is an inpainting model (trained on images alone)."""
        return self.base_combo.currentData() in self.inpainting_ids

    def _base_changed(self) -> None:
        apply_mode(self, self.inpainting())

    def sync_folds_enabled(self) -> bool:
        return self.validation_combo.currentData() == "k-fold"

    # ---- the dialog's parts -----------------------------------------------------------------
    def _build_form(self, model_panel) -> QFormLayout:
        """The settings: base model, cases, new id, budget, validation, device."""
        form = QFormLayout()
        self.base_combo = QComboBox()
        self.inpainting_ids = set()
        for pkg in model_panel.packages:
            if is_finetunable_inpainting(pkg):  # (images alone: training_inpaint)
                self.inpainting_ids.add(pkg.id)
            elif not pkg.card.get("trainable", True) or getattr(pkg, "builtin", False):
                continue
            self.base_combo.addItem(f"{pkg.name} {pkg.version}", pkg.id)
        current = model_panel.package.id if model_panel.package is not None else None
        if self.base_combo.findData(current) >= 0:  # the model chosen in the dock
            self.base_combo.setCurrentIndex(self.base_combo.findData(current))
        form.addRow("Start from", self.base_combo)
        self.scratch_check = QCheckBox("From scratch (same network, random weights: a baseline)")
        form.addRow(self.scratch_check)
        row = QHBoxLayout()
        self.project_radio = QRadioButton("Worklist: cases marked done")
        self.datalist_radio = QRadioButton("Datalist file")
        self.datalist_edit = QLineEdit()
        self.datalist_edit.setPlaceholderText("datalist.json (MONAI style: labels, training)")
        browse = QPushButton("...")
        browse.clicked.connect(self._browse)
        row.addWidget(self.project_radio)
        row.addWidget(self.datalist_radio)
        row.addWidget(self.datalist_edit, 1)
        row.addWidget(browse)
        form.addRow("Cases", row)
        self.cases_label = QLabel("")
        form.addRow("", self.cases_label)
        self.id_edit = QLineEdit()
        self.id_edit.setPlaceholderText("my-model")
        form.addRow("New model id", self.id_edit)
        row = QHBoxLayout()
        self.epochs_radio = QRadioButton("Epochs")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(30)
        self.minutes_radio = QRadioButton("Minutes")
        self.minutes_spin = QSpinBox()
        self.minutes_spin.setRange(1, 10_000)
        self.minutes_spin.setValue(10)
        self.epochs_radio.setChecked(True)
        # two separate choices (radio buttons of one dialog are otherwise exclusive all together)
        self._groups = [QButtonGroup(self), QButtonGroup(self)]
        for b in (self.project_radio, self.datalist_radio):
            self._groups[0].addButton(b)
        for b in (self.epochs_radio, self.minutes_radio):
            self._groups[1].addButton(b)
        for w in (self.epochs_radio, self.epochs_spin, self.minutes_radio, self.minutes_spin):
            row.addWidget(w)
        row.addStretch(1)
        form.addRow("Budget", row)
        row = QHBoxLayout()
        self.validation_combo = QComboBox()
        self.validation_combo.addItem("Hold out about 20 % of the cases (one region of a single case)", "hold-out")
        self.validation_combo.addItem("k-fold cross-validation, then the model on every case", "k-fold")
        self.validation_combo.setToolTip(
            "k-fold: one run per fold, each validated on cases it did not see (every case once); the model "
            "is then trained on all the cases, and its card records the folds' Dice. Takes k + 1 runs.")
        self.folds_spin = QSpinBox()
        self.folds_spin.setRange(2, 10)
        self.folds_spin.setValue(3)
        self.folds_spin.setSuffix(" folds")
        row.addWidget(self.validation_combo, 1)
        row.addWidget(self.folds_spin)
        form.addRow("Validation", row)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device", self.device_combo)
        return form

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.start_button, self.pause_button, self.cancel_button):
            row.addWidget(b)
        row.addStretch(1)
        return row

    def _build_plots(self) -> QHBoxLayout:
        """Training loss and validation Dice by epoch (a curve per cross-validation run)."""
        plots = QHBoxLayout()
        self.loss_plot = pg.PlotWidget(title="training loss")
        self.loss_plot.setLabel("bottom", "epoch")
        self.dice_plot = pg.PlotWidget(title="validation Dice")
        self.dice_plot.setLabel("bottom", "epoch")
        self.dice_plot.setYRange(0, 1)
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen((230, 120, 60), width=2), symbol="o", symbolSize=5)
        self.dice_curve = self.dice_plot.plot([], [], pen=pg.mkPen((80, 180, 240), width=2), symbol="o", symbolSize=5)
        self.run_curves: dict[str, tuple] = {}  # a cross-validation's run -> (loss curve, Dice curve)
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.dice_plot)
        return plots

    # ---- set-up -----------------------------------------------------------------------------
    def _project(self):
        annotating = getattr(self.model_panel, "annotating", None)
        worklist = getattr(annotating, "worklist", None)
        return getattr(worklist, "project", None)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Datalist", "", "JSON (*.json)")
        if path:
            self.datalist_edit.setText(path)
            self.datalist_radio.setChecked(True)

    def _describe_cases(self) -> None:
        self.n_cases = 0
        if self.project_radio.isChecked() and self._project() is not None:
            project = self._project()
            done = project.datalist()["training"]
            self.n_cases = len(done)
            self.cases_label.setText(f"{len(done)} case{'s' if len(done) != 1 else ''} of project "
                                     f"{project.name} marked done or reviewed, with labels")
        else:
            path = self.datalist_edit.text().strip()
            try:
                with open(path, encoding="utf-8") if path else open(os.devnull) as fh:
                    n = len(json.loads(fh.read() or "{}").get("training", []))
                self.n_cases = n if path else 0
                self.cases_label.setText(f"{n} case{'s' if n != 1 else ''} in the datalist" if path else "")
            except (OSError, ValueError, AttributeError) as exc:
                self.cases_label.setText(f"cannot read the datalist: {exc}")
        self._sync_folds()

    def _sync_folds(self) -> None:
        """k-fold needs two cases or more, and at most one fold per case."""
        possible = self.n_cases >= 2
        item = self.validation_combo.model().item(1)
        item.setEnabled(possible)
        item.setToolTip("" if possible else "k-fold needs at least 2 cases")
        if not possible and self.validation_combo.currentIndex() == 1:
            self.validation_combo.setCurrentIndex(0)
        self.folds_spin.setMaximum(max(2, min(10, self.n_cases)))
        self.folds_spin.setEnabled(self.validation_combo.currentData() == "k-fold")

    def config(self) -> tuple[dict, dict]:
        """The training settings and the data source chosen, as the child process takes them."""
        new_id = self.id_edit.text().strip() or "my-model"
        from ...ai.card_schema import is_safe_id

        if not is_safe_id(new_id):
            raise ValueError("the model id takes letters, digits, '.', '_' and '-', starts with a letter or digit, "
                             "has at most 100 characters and no '..'")
        config = {"base": self.base_combo.currentData(), "new_id": new_id, "name": new_id,
                  "device": self.device_combo.currentText(), "from_scratch": self.scratch_check.isChecked()}
        if self.inpainting():
            config = {k: v for k, v in config.items() if k != "from_scratch"} | {"task": "inpainting"}
        if self.epochs_radio.isChecked():
            config["epochs"] = self.epochs_spin.value()
        else:
            config["minutes"] = float(self.minutes_spin.value())
        if self.validation_combo.currentData() == "k-fold":
            if self.folds_spin.value() > self.n_cases:
                raise ValueError(f"{self.folds_spin.value()} folds need at least as many cases; there are "
                                 f"{self.n_cases}")
            config["folds"] = self.folds_spin.value()
        if self.project_radio.isChecked() and self._project() is not None:
            data = {"project": str(self._project().folder)}
        else:
            path = self.datalist_edit.text().strip()
            if not path or not os.path.isfile(path):
                raise ValueError("choose a datalist file or open a worklist project with cases marked done")
            data = {"datalist": path}
        return config, data

    # ---- running ----------------------------------------------------------------------------
    def start(self) -> bool:
        from ...ai.train_process import TrainingProcess

        if self.process is not None and self.process.running:
            return False
        if self.base_combo.currentData() is None:
            self.status.setText("no model to start from")
            return False
        try:
            config, data = self.config()
        except ValueError as exc:
            self.status.setText(str(exc))
            return False
        self.history = []
        self.final = None
        self.current_run, self.current_fold = "", None
        self.config_sent = dict(config)
        self.loss_curve.setData([], [])
        self.dice_curve.setData([], [])
        for loss, dice in self.run_curves.values():
            self.loss_plot.removeItem(loss)
            self.dice_plot.removeItem(dice)
        self.run_curves = {}
        self.label_table.setHorizontalHeaderLabels(["Label", "Validation Dice"])
        self._new_id = config["new_id"]
        self.process = TrainingProcess(config, data).start()
        self.started = time.monotonic()
        origin = "scratch" if config.get("from_scratch") else config["base"]
        folds = f", {config['folds']}-fold cross-validation first" if config.get("folds") else ""
        self.status.setText(f"training {config['new_id']} from {origin}{folds} in process {self.process.pid} ...")
        self.timer.start()
        self._sync()
        return True

    def toggle_pause(self) -> None:
        if self.process is None or not self.process.running:
            return
        if self.process.paused:
            self.process.resume()
            self.status.setText("resumed")
        else:
            self.process.pause()
            self.status.setText("paused (the process waits; Resume goes on)")
        self._sync()

    def cancel(self) -> None:
        if self.process is not None and self.process.running:
            self.process.cancel()
            self.status.setText("cancelling after the current step ...")

    def _poll(self) -> None:
        if self.process is None:
            return
        for kind, payload in self.process.poll():
            if kind == "progress":
                self._progress(payload)
            else:
                self._final(kind, payload)
        if self.process.finished:
            self.timer.stop()
            self._sync()

    def _progress(self, payload: dict) -> None:
        if payload.get("inpaint"):
            show_progress(self, payload["inpaint"])
        epoch = payload.get("epoch")
        if epoch:
            self.history.append(epoch)
            run = epoch.get("run") or ""
            history = [h for h in self.history if (h.get("run") or "") == run]
            loss_curve, dice_curve = self._curves(run)
            xs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
            loss_curve.setData(xs, [h.get("train_loss") or 0.0 for h in history])
            dice = [(x, h["val_dice"]) for x, h in zip(xs, history, strict=True) if h.get("val_dice") is not None]
            if dice:
                dice_curve.setData([d[0] for d in dice], [d[1] for d in dice])
            validated = epoch.get("validated", True)  # (not the final model of a k-fold: every case trains)
            if validated:
                self._fill_labels(epoch.get("per_label") or {})
            eta = epoch.get("eta_s")
            frozen = " (pretrained layers held)" if epoch.get("frozen") else ""
            best = epoch.get("best_val_dice") or 0
            validation = (f"validation Dice {epoch.get('val_dice') or 0:.3f} (best {best:.3f})" if validated
                          else "no validation (every case trains)")
            self.status.setText(
                f"{run + ', ' if run else ''}epoch {epoch.get('epoch')}"
                f"{'/' + str(payload['total']) if payload.get('total') else ''}{frozen}: "
                f"loss {epoch.get('train_loss', 0):.4f}, {validation}"
                + (f", about {eta / 60:.1f} min left" if eta else ""))
        if payload.get("message"):
            self.last_message = payload["message"]
        if payload.get("run"):  # a cross-validation's run (the record says which)
            self.current_run, self.current_fold = payload["run"], payload.get("fold")

    def _fill_labels(self, per: dict) -> None:
        self.label_table.setRowCount(len(per))
        for r, (name, value) in enumerate(per.items()):
            self.label_table.setItem(r, 0, QTableWidgetItem(str(name)))
            self.label_table.setItem(r, 1, QTableWidgetItem("" if value is None else f"{value:.3f}"))

    #: curve colours of a cross-validation's runs (folds in turn; the final model in grey)
    RUN_COLOURS = ((80, 180, 240), (240, 170, 60), (120, 210, 120), (220, 110, 200), (240, 230, 90), (150, 150, 255))

    def _curves(self, run: str) -> tuple:
        """The (loss, Dice) curves of ``run`` (a hold-out run: the dialog's own)."""
        if not run:
            return self.loss_curve, self.dice_curve
        if run not in self.run_curves:
            if not self.run_curves:
                self.loss_plot.addLegend(offset=(-10, 10))
            final = run == FINAL_RUN
            colour = (170, 170, 170) if final else self.RUN_COLOURS[len(self.run_curves) % len(self.RUN_COLOURS)]
            pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine if final else Qt.PenStyle.SolidLine)
            name = run.replace(" (all cases)", "")
            self.run_curves[run] = (self.loss_plot.plot([], [], pen=pen, symbol="o", symbolSize=4, name=name,
                                                        symbolBrush=colour),
                                    self.dice_plot.plot([], [], pen=pen, symbol="o", symbolSize=4, symbolBrush=colour))
        return self.run_curves[run]

    def _final(self, kind: str, payload: dict) -> None:
        self.final = (kind, payload)
        cv = payload.get("cross_validation") if kind == "done" else None
        if cv:
            sd = "" if cv.get("val_dice_sd") is None else f" ± {cv['val_dice_sd']:.3f}"
            folds = ", ".join("n/a" if f["val_dice"] is None else f"{f['val_dice']:.3f}"
                              for f in cv.get("per_fold", []))
            mean = "n/a" if payload.get("best_val_dice") is None else f"{payload['best_val_dice']:.3f}"
            self.status.setText(f"done: {payload.get('package')}\ncross-validated Dice {mean}{sd} over "
                                f"{cv.get('folds')} folds ({folds}); the model then trained on every case for "
                                f"{payload.get('epochs_run')} epochs (the folds' median best epoch)")
            self.label_table.setHorizontalHeaderLabels(["Label", "Cross-validated Dice (mean of the folds)"])
            self._fill_labels(cv.get("per_label_mean") or {})
        elif kind == "done" and payload.get("inpainting"):
            if not show_final(self, payload):
                return
        elif kind == "done":
            self.status.setText(f"done: {payload.get('package')} (best validation Dice "
                                f"{payload.get('best_val_dice') or 0:.3f} after {payload.get('epochs_run')} epochs; "
                                f"{payload.get('split', '')})")
        if kind == "done":
            self.model_panel.refresh()
            if self.model_panel.select(self._new_id):
                self.model_ready.emit(self._new_id)
        elif kind == "cancelled":
            self.status.setText(f"cancelled; {self._kept()}")
        elif kind == "error":
            what = "ran out of memory" if payload.get("out_of_memory") else "failed"
            message = str(payload.get("message"))
            said = "checkpoint is kept" in message or "no epoch" in message  # the trainer's own words
            where = f" in {self.current_run}" if self.current_run else ""
            self.status.setText(f"the training process {what}{where}: {message}\nNothing else was affected"
                                + ("." if said else "; " + self._kept()))
            log.error("training failed: %s\n%s", payload.get("message"), payload.get("traceback", ""))
        elif kind == "crashed":
            self.status.setText(f"the training process ended unexpectedly (exit code {payload.get('exitcode')}); "
                                "nothing else was affected; " + self._kept())
            log.error("training process crashed: exit code %s", payload.get("exitcode"))

    def _kept(self) -> str:
        """What is left of a run that stopped: its last finished epoch, if any (of a cross-validation:
        in the run it stopped in, and the folds that finished before it)."""
        run = self.current_run
        epochs = [h for h in self.history if (h.get("run") or "") == run]
        if self.current_fold:
            done = self.current_fold - 1
        else:
            done = int(self.config_sent.get("folds") or 0) if run == FINAL_RUN else 0
        folds = "" if not done else "; the fold before it is kept too" if done == 1 else \
            f"; the {done} folds before it are kept too"
        if not epochs:
            return f"{run}: no epoch had finished{folds}." if run else "no epoch of this run had finished."
        return (f"{run + ': ' if run else ''}epoch {epochs[-1].get('epoch', len(epochs))}'s checkpoint is kept{folds}: "
                "Start with the same settings resumes from it.")

    def _sync(self) -> None:
        running = self.process is not None and self.process.running
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Resume" if running and self.process.paused else "Pause")
        self.cancel_button.setEnabled(running)

    def closeEvent(self, event) -> None:
        # closing the dialog does not stop training: it keeps going; Cancel stops it
        super().closeEvent(event)
