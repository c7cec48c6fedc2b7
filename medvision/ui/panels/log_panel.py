"""The log panel: records from Python's ``logging`` (any thread) shown in a dock."""

from __future__ import annotations

import contextlib
import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QPlainTextEdit


class _Bridge(QObject):
    record = Signal(str, int)


class _QtHandler(logging.Handler):
    """Forwards formatted records through a queued signal (safe from worker threads)."""

    def __init__(self, bridge: _Bridge) -> None:
        super().__init__(logging.INFO)
        self.bridge = bridge
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # the panel is gone (application closing)
            self.bridge.record.emit(self.format(record), record.levelno)


class LogPanel(QPlainTextEdit):
    """Read-only, bounded log view attached to the ``medvision`` logger."""

    def __init__(self, parent=None, max_lines: int = 5000) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self._bridge = _Bridge(self)
        self._bridge.record.connect(self._append)
        self.handler = _QtHandler(self._bridge)
        logger = logging.getLogger("medvision")
        logger.addHandler(self.handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        self.destroyed.connect(lambda *_: logger.removeHandler(self.handler))

    def detach(self) -> None:
        logging.getLogger("medvision").removeHandler(self.handler)

    def _append(self, text: str, level: int) -> None:
        if level >= logging.ERROR:
            text = f'<span style="color:#e05050">{_escape(text)}</span>'
        elif level >= logging.WARNING:
            text = f'<span style="color:#d0a030">{_escape(text)}</span>'
        else:
            text = _escape(text)
        self.appendHtml(text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")
