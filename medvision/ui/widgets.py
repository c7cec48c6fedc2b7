"""Small widget helpers shared by the docks."""

from __future__ import annotations

from PySide6.QtWidgets import QToolButton


def tool_buttons(layout, specs) -> list[QToolButton]:
    """Add a button per ``(text, tooltip, slot)`` to ``layout``; returns them in order."""
    out = []
    for text, tip, slot in specs:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        layout.addWidget(b)
        out.append(b)
    return out
