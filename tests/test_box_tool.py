"""The Box tool in the main window (real mouse events): a dragged rectangle fills the active label on
its slice or through the depth set (in mm, on the image's slice spacing), Ctrl erases, one drag is one
undo step; the box is a region the built-in inpainting fill takes as it is."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from .qtutil import drag, view_point


def test_a_dragged_box_fills_through_the_depth_erases_with_ctrl_and_undoes_in_one_step(qtbot, ct):
    window = ct
    ann, panel = window.annotating.annotation, window.annotating.panel
    view = window.views.slice_views["axial"]
    z = int(window.viewer.cursor[2])
    panel.set_tool("box")
    assert view.tool is panel.tools["box"]
    drag(view.viewport(), view_point(view, [150, 150, z]), view_point(view, [250, 230, z]))
    labelled = ann.labels.array == 1
    slices = np.flatnonzero(labelled.any(axis=(1, 2)))
    assert len(slices) == 1 and 7600 < labelled.sum() < 8600, labelled.sum()  # 100 x 80 pixels, one slice
    assert len(ann.history.undo_stack) == 1
    # 9 mm deep on 3 mm slices: the slice drawn on and one each side
    spacing = window.viewer.volume.spacing[2]
    panel.option_pages["box"].depth.setValue(3 * spacing)
    drag(view.viewport(), view_point(view, [300, 300, z]), view_point(view, [340, 340, z]))
    second = (ann.labels.array == 1) & ~labelled
    assert len(np.flatnonzero(second.any(axis=(1, 2)))) == 3
    assert len(ann.history.undo_stack) == 2
    # Ctrl: erase what the box covers
    drag(view.viewport(), view_point(view, [140, 140, z]), view_point(view, [200, 240, z]),
         modifiers=Qt.KeyboardModifier.ControlModifier)
    assert 0 < (labelled & (ann.labels.array == 1)).sum() < labelled.sum()
    window.annotating.action_undo.trigger()
    assert np.array_equal((ann.labels.array == 1) & labelled, labelled)
    # the box as a region to fill: the Models dock's built-in fill takes it
    from medvision.ai.inpainting.builtin import BUILTIN_ID

    models = window.annotating.models
    models.refresh()
    assert models.select(BUILTIN_ID)
    box = models.inpaint_box
    qtbot.waitUntil(box.run_button.isEnabled, timeout=5000)
    region = ann.labels.array == 1
    assert box.run()
    qtbot.waitUntil(lambda: box.result is not None, timeout=60_000)
    assert np.array_equal(box.result.volume.array[~region], window.viewer.volume.array[~region])
