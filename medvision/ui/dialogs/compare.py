"""Two models side by side on the case on screen: each runs (one after the other, as jobs, with
progress and Cancel) and its result is scored against the case's labels (Dice per label, matched by
name)."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..job_status import JobStatus
from ..jobs import JobRunner


def dice_by_name(result, reference) -> dict[str, float | None]:
    """Dice of each label of ``result`` against the label of the same name in ``reference``
    (a LabelMap on the same grid); None where the reference has no such label."""
    out: dict[str, float | None] = {}
    for la in result.table:
        ref = reference.table.by_name(la.name)
        if ref is None:
            out[la.name] = None
            continue
        a, b = result.array == la.value, reference.array == ref.value
        total = int(a.sum()) + int(b.sum())
        out[la.name] = 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total
    return out


class CompareDialog(QDialog):
    def __init__(self, model_panel, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare two models on this case")
        self.resize(560, 360)
        self.model_panel = model_panel
        self.scores: dict[str, dict[str, float | None]] = {}
        self.runner: JobRunner | None = None
        self.queue: list = []
        self._total = 0
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.combos = [QComboBox(), QComboBox()]
        for i, combo in enumerate(self.combos):
            for pkg in model_panel.packages:
                if pkg.card.get("task") != "inpainting":  # (scored against labels: models that label)
                    combo.addItem(f"{pkg.name} {pkg.version}", pkg.id)
            combo.setCurrentIndex(min(i, combo.count() - 1))
            row.addWidget(combo, 1)
        self.run_button = QPushButton("Run both")
        self.run_button.clicked.connect(self.run)
        row.addWidget(self.run_button)
        layout.addLayout(row)
        self.status = QLabel("Dice of each model's result against the labels of this case (by label name).")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.job_status = JobStatus(self, message=True, own_cancel=True)
        self.job_status.cancel_requested.connect(self.cancel)
        layout.addWidget(self.job_status)
        self.table = QTableWidget(0, 3)
        layout.addWidget(self.table, 1)

    def run(self) -> bool:
        ann = self.model_panel.annotation
        volume = self.model_panel.viewer.volume
        if ann.labels is None or volume is None or not ann.labels.array.any():
            self.status.setText("this case has no labels to compare with: open or draw them first")
            return False
        ids = [c.currentData() for c in self.combos]
        if None in ids:
            return False
        self.scores = {}
        self.queue = [p for i in ids for p in self.model_panel.packages if p.id == i]
        self._total = len(self.queue)
        self.reference = ann.snapshot()
        self.volume = volume
        self.run_button.setEnabled(False)
        self._next()
        return True

    def _next(self) -> None:
        from ...ai.options import InferenceOptions

        if not self.queue:
            self.run_button.setEnabled(True)
            self._show()
            self.status.setText("Dice against this case's labels (1 = identical).")
            return
        pkg = self.queue.pop(0)
        volume = self.volume

        def job():
            from ...ai.engine import infer_job

            return (yield from infer_job(pkg, volume, InferenceOptions()))

        step = self._total - len(self.queue)
        self.status.setText(f"running {pkg.name} ({step} of {self._total}) ...")
        self.runner = JobRunner(job(), name=f"compare {pkg.id}", parent=self)
        self.runner.finished.connect(lambda result, p=pkg: self._scored(p, result))
        self.runner.failed.connect(lambda exc, p=pkg: self._failed(p, exc))
        self.runner.cancelled.connect(self._cancelled)
        self.job_status.track(self.runner, f"{pkg.name} ({step} of {self._total})")
        self.runner.start()

    def cancel(self) -> None:
        """Stop the model running and run no other; the scores so far stay shown."""
        self.queue = []
        if self.runner is not None and self.runner.running:
            self.runner.cancel()

    def _cancelled(self) -> None:
        self.run_button.setEnabled(True)
        self._show()
        self.status.setText("cancelled" + ("; the scores of the models that ended are shown" if self.scores else ""))

    def _scored(self, pkg, result) -> None:
        self.scores[f"{pkg.name} {pkg.version}"] = dice_by_name(result.labels, self.reference)
        self._next()

    def _failed(self, pkg, exc) -> None:
        self.scores[f"{pkg.name} {pkg.version}"] = {"(failed)": None}
        self._next()
        self.status.setText(f"{pkg.name} failed: {exc}")

    def _show(self) -> None:
        models = list(self.scores)
        names = sorted({n for s in self.scores.values() for n in s})
        self.table.setColumnCount(1 + len(models))
        self.table.setHorizontalHeaderLabels(["Label", *models])
        self.table.setRowCount(len(names))
        for r, name in enumerate(names):
            self.table.setItem(r, 0, QTableWidgetItem(name))
            for c, m in enumerate(models):
                v = self.scores[m].get(name)
                self.table.setItem(r, c + 1, QTableWidgetItem("not in the case's labels" if v is None else f"{v:.3f}"))
        self.table.resizeColumnsToContents()
