"""Small widget helpers shared by the docks."""

from __future__ import annotations

import numpy as np
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


def heat_lut() -> np.ndarray:
    """256 RGBA entries for a heat-map overlay: transparent for low values, then yellow to red, more
    opaque as it rises (uncertainty, inpainting differences)."""
    t = np.linspace(0, 1, 256)
    lut = np.zeros((256, 4), np.uint8)
    lut[:, 0] = 255
    lut[:, 1] = np.clip(255 * (1.2 - t), 0, 255)
    lut[:, 2] = 0
    lut[:, 3] = np.clip(255 * (t - 0.05) * 1.3, 0, 255)
    return lut
