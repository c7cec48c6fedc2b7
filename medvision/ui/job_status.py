"""One widget for a running job: what runs, how far it is, and a Cancel button.

The status bar (loading, scanning), the series browser (scans) and the Models dock (inference) show
their jobs with it. :meth:`JobStatus.track` follows a :class:`~medvision.ui.jobs.JobRunner`: the bar
is busy until the first record with a total, shows ``stage done/total`` after it, and hides when that
runner ends (a runner replaced by a newer one no longer moves the bar). Cancel cancels the tracked
runner, or, with ``own_cancel``, only emits :attr:`JobStatus.cancel_requested` for the owner.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QWidget

from ..core.jobs import Progress
from .jobs import JobRunner

__all__ = ["JobStatus"]


class JobStatus(QWidget):
    """A progress row: an optional label, a progress bar and a Cancel button (see the module docstring).

    ``label``: show the job's text beside the bar (else it is the bar's own text); ``compact``: a
    thin bar and a tool button (status bar, dock rows); ``message``: add each record's message to
    its stage; ``own_cancel``: Cancel only emits ``cancel_requested``."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None, *, label: bool = False, compact: bool = True,
                 message: bool = False, own_cancel: bool = False, bar_width: int | None = None) -> None:
        super().__init__(parent)
        self.runner: JobRunner | None = None
        self._with_message = message
        self._own_cancel = own_cancel
        self.label = QLabel(self) if label else None
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(True)
        if compact:
            self.bar.setMaximumHeight(14 if label else 22)
        if bar_width is not None:
            self.bar.setMaximumWidth(bar_width)
        self.cancel_button = QToolButton(self) if compact else QPushButton(self)
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        if self.label is not None:
            row.addWidget(self.label, 1)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        self.hide()

    # ---- following a job ------------------------------------------------------------------
    def track(self, runner: JobRunner | None, what: str) -> None:
        """Show ``what`` as busy and follow ``runner`` (None: show only; call :meth:`finish`)."""
        self.runner = runner
        self.start(what)
        if runner is not None:
            runner.progress.connect(lambda rec: runner is self.runner and self.show_progress(rec))
            runner.done.connect(lambda: runner is self.runner and self.finish())

    def start(self, what: str) -> None:
        """Show ``what`` with a busy bar."""
        self.bar.setRange(0, 0)
        self._set_text(what)
        self.cancel_button.setEnabled(True)
        self.show()

    def show_progress(self, rec: Progress, prefix: str = "") -> None:
        """Show one progress record (``prefix`` goes before its stage, e.g. what is scanned)."""
        if rec.total:
            self.bar.setRange(0, rec.total)
            self.bar.setValue(rec.done)
        else:
            self.bar.setRange(0, 0)
        text = f"{prefix}{rec.stage}"
        if self._with_message and rec.message:
            text = f"{text} {rec.message}".strip()
        if self.label is not None:
            self.label.setText(text)
        else:
            self.bar.setFormat(f"{text} %v/%m" if rec.total and not self._with_message else text)

    def finish(self) -> None:
        """Hide the row (the job ended)."""
        self.runner = None
        self.hide()

    @property
    def text(self) -> str:
        """What the row says now (the label, or the bar's text)."""
        return self.label.text() if self.label is not None else self.bar.format()

    # ---- internals --------------------------------------------------------------------------
    def _set_text(self, what: str) -> None:
        if self.label is not None:
            self.label.setText(what)
            self.bar.setFormat("%p%")
        else:
            self.bar.setFormat(what)

    def _cancel(self) -> None:
        if self._own_cancel or self.runner is None:
            self.cancel_requested.emit()
        else:
            self.runner.cancel()
