"""The annotation dock: label table, tools and their options, masking, operations on a label.

Like 3D Slicer's Segment Editor: pick a label, pick a tool, edit in any of the three views. The
operations (islands, smoothing, margin, logical, fill between slices) act on the active label and
run on a worker thread; each is one undo step.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...annotate import contours, regions
from ...annotate.rules import EMPTY_ONLY
from ..annotating.box_tool import BoxTool
from ..annotating.measure import Measurements, measurement_tools
from ..annotating.tools import BrushTool, GrowTool, IslandsTool, PolygonTool, ThresholdTool, Tool
from .label_table import LabelTableWidget, StatisticsDialog
from .measure_list import MeasurementList

log = logging.getLogger(__name__)

#: tool name -> keyboard shortcut (active while a slice view has the focus)
TOOL_KEYS = {"navigate": "Escape", "paint": "B", "erase": "E", "polygon": "P", "threshold": "T", "grow": "G",
             "islands": "K", "box": "X", "ruler": "M", "angle": "", "ellipse": "", "rectangle": ""}
MEASURE_TOOLS = ("ruler", "angle", "ellipse", "rectangle")


class AnnotationPanel(QWidget):
    """Drives the :class:`~medvision.ui.annotating.annotation.Annotation` and the tools of the slice views."""

    def __init__(self, annotation, slice_views: dict, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.annotation = annotation
        self.viewer = annotation.viewer
        self.slice_views = slice_views
        self.threshold = ThresholdTool(annotation)
        self.tools: dict[str, Tool] = {t.name: t for t in (
            Tool(annotation), BrushTool(annotation), BrushTool(annotation, erase=True), PolygonTool(annotation),
            self.threshold, GrowTool(annotation, self.threshold), IslandsTool(annotation), BoxTool(annotation))}
        self.measurements = Measurements(self.viewer)
        for tool in measurement_tools(annotation, self.measurements):
            self.tools[tool.name] = tool
        self.tool: Tool = self.tools["navigate"]
        self.last_plane = "axial"

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        inner = QWidget()
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(inner)

        self.label_table = LabelTableWidget(annotation)
        self.label_table.statistics_requested.connect(self.show_statistics)
        layout.addWidget(self.label_table)
        layout.addWidget(self._overlay_box())
        layout.addWidget(self._tools_box())
        layout.addWidget(self._masking_box())
        layout.addWidget(self._operations_box())
        box = QGroupBox("Measurements")
        QVBoxLayout(box).addWidget(MeasurementList(self.measurements, self.viewer))
        self.measurement_list = box.layout().itemAt(0).widget()
        layout.addWidget(box)
        layout.addStretch(1)

        for tool in self.tools.values():
            tool.changed.connect(self._sync_options)
        annotation.labels_replaced.connect(self._labels_replaced)
        annotation.table_changed.connect(self._fill_label_combos)
        annotation.state_changed.connect(self._sync_enabled)
        self.viewer.volume_changed.connect(self._volume_changed)
        self._fill_label_combos()
        self._sync_options()
        self._sync_enabled()

    # ---- construction ---------------------------------------------------------------------
    def _overlay_box(self) -> QGroupBox:
        box = QGroupBox("Overlay")
        row = QHBoxLayout(box)
        self.show_check = QCheckBox("Show")
        self.show_check.setChecked(True)
        self.show_check.toggled.connect(self.annotation.set_overlay_visible)
        self.style_combo = QComboBox()
        self.style_combo.addItems(["Fill", "Outline"])
        self.style_combo.currentTextChanged.connect(lambda t: self.annotation.set_overlay(outline=t == "Outline"))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(5, 100)
        self.opacity_slider.setValue(int(self.annotation.opacity * 100))
        self.opacity_slider.setToolTip("Opacity of the labels over the image")
        self.opacity_slider.valueChanged.connect(lambda v: self.annotation.set_overlay(opacity=v / 100))
        self.show3d_check = QCheckBox("3D")
        self.show3d_check.setToolTip("Label surfaces in the 3D view")
        for w in (self.show_check, self.style_combo, QLabel("Opacity"), self.opacity_slider, self.show3d_check):
            row.addWidget(w)
        return box

    def _tools_box(self) -> QGroupBox:
        box = QGroupBox("Tools")
        layout = QVBoxLayout(box)
        grid = QGridLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_buttons: dict[str, QToolButton] = {}
        measuring = [n for n in self.tools if n in MEASURE_TOOLS]
        editing = [n for n in self.tools if n not in MEASURE_TOOLS]
        edit_rows = (len(editing) + 3) // 4
        place = {n: (i // 4, i % 4) for i, n in enumerate(editing)}
        place.update({n: (edit_rows + 1 + i // 4, i % 4) for i, n in enumerate(measuring)})
        grid.addWidget(QLabel("Measure"), edit_rows, 0, 1, 4)
        for name, tool in self.tools.items():
            b = QToolButton()
            b.setText(tool.title)
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setMinimumWidth(76)
            b.setMinimumHeight(b.sizeHint().height())  # never squeezed when the dock is short
            key = TOOL_KEYS.get(name)
            b.setToolTip((tool.__doc__ or tool.title).split("\n\n")[0] + (f"  [{key}]" if key else ""))
            b.clicked.connect(lambda _=False, n=name: self.set_tool(n))
            self.tool_group.addButton(b)
            grid.addWidget(b, *place[name])
            self.tool_buttons[name] = b
        self.tool_buttons["navigate"].setChecked(True)
        layout.addLayout(grid)
        self.options = QStackedWidget()
        self.option_pages: dict[str, QWidget] = {}
        for name in self.tools:
            page = self._options_page(name)
            self.option_pages[name] = page
            self.options.addWidget(page)
        layout.addWidget(self.options)
        self._show_options("navigate")
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #888;")
        self.hint.setMinimumHeight(2 * self.hint.fontMetrics().lineSpacing() + 4)  # two lines, never clipped
        layout.addWidget(self.hint)
        return box

    def _options_page(self, name: str) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        if name in ("paint", "erase"):
            tool = self.tools[name]
            radius = QDoubleSpinBox()
            radius.setRange(0.1, 200.0)
            radius.setDecimals(1)
            radius.setSuffix(" mm")
            radius.setValue(tool.radius_mm)
            radius.valueChanged.connect(tool.set_radius)
            sphere = QCheckBox("3D (a ball through the slices)")
            sphere.toggled.connect(lambda on, t=tool: setattr(t, "sphere", on))
            form.addRow("Radius", radius)
            form.addRow("", sphere)
            page.radius, page.sphere = radius, sphere
            if name == "erase":
                only = QCheckBox("Only the active label")
                only.toggled.connect(lambda on, t=tool: setattr(t, "erase_active_only", on))
                form.addRow("", only)
        elif name == "box":
            depth = QDoubleSpinBox()
            depth.setRange(0.0, 500.0)
            depth.setDecimals(1)
            depth.setSuffix(" mm")
            depth.setSpecialValueText("this slice")
            depth.setToolTip("How deep the box goes through the slices, centred on the slice drawn on")
            depth.valueChanged.connect(lambda v, t=self.tools["box"]: setattr(t, "depth_mm", v))
            form.addRow("Depth", depth)
            page.depth = depth
        elif name in ("threshold", "grow"):
            if name == "threshold":
                low, high = QDoubleSpinBox(), QDoubleSpinBox()
                for s in (low, high):
                    s.setRange(-1e9, 1e9)
                    s.setDecimals(1)
                    s.setKeyboardTracking(False)
                # the other end follows when one passes it
                low.valueChanged.connect(lambda v: self.threshold.set_range(v, max(v, self.high_spin.value())))
                high.valueChanged.connect(lambda v: self.threshold.set_range(min(v, self.low_spin.value()), v))
                self.low_spin, self.high_spin = low, high
                form.addRow("From", low)
                form.addRow("To", high)
                apply = QPushButton("Apply to the active label")
                apply.clicked.connect(self.threshold.apply)
                as_range = QPushButton("Use as the paint range")
                as_range.setToolTip("Masking: paint only where the intensity lies in this range")
                as_range.clicked.connect(self._threshold_as_range)
                form.addRow(apply)
                form.addRow(as_range)
            else:
                grow = self.tools["grow"]
                method = QComboBox()
                method.addItems(["confidence", "connected"])
                method.setToolTip("confidence: the range is learnt around the seed; connected: the "
                                  "Threshold tool's range")
                method.currentTextChanged.connect(lambda t: setattr(grow, "method", t))
                mult = QDoubleSpinBox()
                mult.setRange(0.5, 10.0)
                mult.setValue(grow.multiplier)
                mult.valueChanged.connect(lambda v: setattr(grow, "multiplier", v))
                form.addRow("Method", method)
                form.addRow("Multiplier (confidence)", mult)
        elif name == "islands":
            keep = QPushButton("Keep the largest island")
            keep.clicked.connect(lambda: self._operation("keep largest island", regions.keep_largest_island))
            size = QSpinBox()
            size.setRange(1, 10_000_000)
            size.setValue(100)
            size.setSuffix(" voxels")
            remove = QPushButton("Remove islands smaller than")
            remove.clicked.connect(lambda: self._operation(
                "remove small islands", lambda h, lm, v, r: regions.remove_small_islands(h, lm, v, size.value(), r)))
            form.addRow(keep)
            form.addRow(remove, size)
        return page

    def _masking_box(self) -> QGroupBox:
        box = QGroupBox("Masking")
        form = QFormLayout(box)
        self.inside_combo = QComboBox()
        self.inside_combo.setToolTip("Which voxels edits may change")
        self.inside_combo.currentIndexChanged.connect(self._rules_changed)
        self.locks_check = QCheckBox("Never overwrite locked labels")
        self.locks_check.setChecked(True)
        self.locks_check.toggled.connect(self._rules_changed)
        self.range_check = QCheckBox("Only where the intensity is in")
        self.range_low, self.range_high = QDoubleSpinBox(), QDoubleSpinBox()
        for s in (self.range_low, self.range_high):
            s.setRange(-1e9, 1e9)
            s.setDecimals(1)
            s.valueChanged.connect(self._rules_changed)
        self.range_check.toggled.connect(self._rules_changed)
        rng = QHBoxLayout()
        rng.addWidget(self.range_low)
        rng.addWidget(QLabel("to"))
        rng.addWidget(self.range_high)
        form.addRow("Edit", self.inside_combo)
        form.addRow(self.locks_check)
        form.addRow(self.range_check)
        form.addRow(rng)
        return box

    def _operations_box(self) -> QGroupBox:
        box = QGroupBox("Operations on the active label")
        form = QFormLayout(box)
        self.smooth_combo = QComboBox()
        self.smooth_combo.addItems(["median", "opening", "closing"])
        self.smooth_combo.setToolTip("median: smooths edges; opening: removes thin extrusions; closing: fills "
                                     "holes and gaps")
        self.smooth_mm = _mm_spin(2.0)
        smooth = QPushButton("Smooth")
        smooth.clicked.connect(lambda: self._operation(
            f"smoothing ({self.smooth_combo.currentText()})",
            lambda h, lm, v, r: regions.smooth(h, lm, v, self.smooth_combo.currentText(), self.smooth_mm.value(), r)))
        row = QHBoxLayout()
        row.addWidget(self.smooth_combo)
        row.addWidget(self.smooth_mm)
        row.addWidget(smooth)
        form.addRow("Smoothing", row)

        self.margin_mm = _mm_spin(3.0)
        grow, shrink = QPushButton("Grow"), QPushButton("Shrink")
        grow.clicked.connect(lambda: self._operation(
            "margin", lambda h, lm, v, r: regions.margin(h, lm, v, self.margin_mm.value(), r)))
        shrink.clicked.connect(lambda: self._operation(
            "margin", lambda h, lm, v, r: regions.margin(h, lm, v, -self.margin_mm.value(), r)))
        row = QHBoxLayout()
        row.addWidget(self.margin_mm)
        row.addWidget(grow)
        row.addWidget(shrink)
        form.addRow("Margin", row)

        self.logic_combo = QComboBox()
        self.logic_combo.addItems(["union", "intersect", "subtract", "replace", "invert", "clear"])
        self.other_combo = QComboBox()
        self.other_combo.setToolTip("The other label of the operation")
        logic = QPushButton("Apply")
        logic.clicked.connect(self._logical)
        row = QHBoxLayout()
        row.addWidget(self.logic_combo)
        row.addWidget(self.other_combo, 1)
        row.addWidget(logic)
        form.addRow("Logical", row)

        fill = QPushButton("Fill between slices")
        fill.setToolTip("Interpolate the active label between the slices where it was drawn, across the "
                        "slices of the view last edited or clicked")
        fill.clicked.connect(self.fill_between)
        form.addRow(fill)
        self.operation_buttons = [smooth, grow, shrink, logic, fill]
        return box

    # ---- tools ----------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        if name not in self.tools:
            raise ValueError(f"unknown tool {name!r}")
        if self.tool.name == name:
            return
        self.tool.deactivate()
        self.tool = self.tools[name]
        for view in self.slice_views.values():
            view.tool = None if name == "navigate" else self.tool
            view.setCursor(Qt.CursorShape.ArrowCursor if name == "navigate" else Qt.CursorShape.CrossCursor)
            view.viewport().update()
        self.tool.activate()
        self.tool_buttons[name].setChecked(True)
        self._show_options(name)
        hints = {
            "navigate": "Left: crosshair. Right drag: window. Middle drag: pan. Wheel: slices.",
            "paint": "Drag to paint. Shift+wheel or [ ]: size. Shift+left: crosshair. Ctrl+Z: undo.",
            "erase": "Drag to erase. Shift+wheel or [ ]: size.",
            "polygon": "Click points, double-click or Enter to fill (Ctrl: erase); or drag a lasso.",
            "box": "Drag a rectangle: filled on this slice, or through the depth (Ctrl: erase).",
            "threshold": "The range shows in every view; Apply fills the active label there.",
            "grow": "Click a seed inside the structure.",
            "islands": "Click a region to keep only that island of its label.",
            "ruler": "Drag, or click both ends. Delete removes the last measurement.",
            "angle": "Click three points: one end, the vertex, the other end.",
            "ellipse": "Drag the bounding box: area and intensity statistics.",
            "rectangle": "Drag a rectangle: area and intensity statistics.",
        }
        self.hint.setText(hints.get(name, ""))
        if name == "threshold":
            self._sync_options()

    def _show_options(self, name: str) -> None:
        # the stack takes the height of the page shown, not of its tallest page
        for page_name, page in self.option_pages.items():
            policy = QSizePolicy.Policy.Preferred if page_name == name else QSizePolicy.Policy.Ignored
            page.setSizePolicy(policy, policy)
        self.options.setCurrentWidget(self.option_pages[name])
        self.options.updateGeometry()

    def install_shortcuts(self, window) -> None:
        """Tool keys, active while a slice view has the focus (typing in a field is not stolen)."""
        for name, key in TOOL_KEYS.items():
            if not key:
                continue
            for view in self.slice_views.values():
                sc = QShortcut(QKeySequence(key), view)
                sc.setContext(Qt.ShortcutContext.WidgetShortcut)
                sc.activated.connect(lambda n=name: self.set_tool(n))

    def _sync_options(self) -> None:
        for name in ("paint", "erase"):
            page = self.option_pages[name]
            tool = self.tools[name]
            if abs(page.radius.value() - tool.radius_mm) > 0.05:
                page.radius.blockSignals(True)
                page.radius.setValue(tool.radius_mm)
                page.radius.blockSignals(False)
        for spin, v in ((self.low_spin, self.threshold.low), (self.high_spin, self.threshold.high)):
            if spin.value() != v:
                spin.blockSignals(True)
                spin.setValue(v)
                spin.blockSignals(False)

    def _threshold_as_range(self) -> None:
        self.range_low.setValue(self.threshold.low)
        self.range_high.setValue(self.threshold.high)
        self.range_check.setChecked(True)

    # ---- masking --------------------------------------------------------------------------
    def _fill_label_combos(self) -> None:
        labels = self.annotation.labels
        items = [(la.value, la.name) for la in labels.table] if labels is not None else []
        current_inside = self.inside_combo.currentData()
        current_other = self.other_combo.currentData()
        for combo in (self.inside_combo, self.other_combo):
            combo.blockSignals(True)
            combo.clear()
        self.inside_combo.addItem("anywhere", None)
        self.inside_combo.addItem("only unlabelled voxels", EMPTY_ONLY)
        for value, name in items:
            self.inside_combo.addItem(f"only inside {name}", value)
            self.other_combo.addItem(name, value)
        for combo, cur in ((self.inside_combo, current_inside), (self.other_combo, current_other)):
            i = combo.findData(cur)
            combo.setCurrentIndex(max(i, 0))
            combo.blockSignals(False)
        self._rules_changed()

    def _rules_changed(self) -> None:
        rules = self.annotation.rules
        rules.inside = self.inside_combo.currentData()
        rules.respect_locks = self.locks_check.isChecked()
        rules.intensity = ((self.range_low.value(), self.range_high.value()) if self.range_check.isChecked()
                           else None)

    # ---- operations -----------------------------------------------------------------------
    def _operation(self, what: str, fn) -> bool:
        ann = self.annotation
        labels = ann.labels
        if labels is None or ann.active not in labels.table:
            ann.message.emit(f"{what}: choose a label first")
            return False
        value, rules = ann.active, ann.rules

        def done(changed) -> None:
            if changed is False:
                ann.message.emit(f"{what}: nothing changed")

        return ann.run(what, lambda: fn(ann.history, labels, value, rules), done)

    def _logical(self) -> bool:
        op = self.logic_combo.currentText()
        other = self.other_combo.currentData()
        labels = self.annotation.labels
        if labels is None:
            return False
        if op in ("union", "intersect", "subtract", "replace") and (other is None or other == self.annotation.active):
            self.annotation.message.emit(f"{op}: choose another label to combine with")
            return False
        return self._operation(op, lambda h, lm, v, r: regions.logical(
            h, lm, v, op, (lm.array == other) if other is not None else None, r))

    def fill_between(self) -> bool:
        axis = self.viewer.array_axis(self.last_plane) if self.viewer.grid is not None else 0
        return self._operation("fill between slices",
                               lambda h, lm, v, r: contours.fill_between_slices(h, lm, v, axis, r))

    def show_statistics(self) -> None:
        from ...annotate.statistics import label_statistics

        ann = self.annotation
        if ann.labels is None:
            return
        volume = self.viewer.volume
        unit = "HU" if volume.metadata.get("modality") == "CT" and volume.metadata.get("rescale_applied") else ""
        labels, image = ann.labels, ann.image

        def done(stats) -> None:
            if stats is not None:
                self.statistics_dialog = StatisticsDialog(stats, unit, self)
                self.statistics_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                self.statistics_dialog.show()

        ann.run("label statistics", lambda: label_statistics(labels, image), done)

    # ---- state ----------------------------------------------------------------------------
    def _labels_replaced(self) -> None:
        self._fill_label_combos()
        self._sync_enabled()

    def _volume_changed(self) -> None:
        if self.viewer.volume is None or self.viewer.volume.metadata.get("partial"):
            return
        if self.tool.name == "threshold":  # the preview follows the new image
            self.tool.deactivate()
            self.tool.activate()
        self.threshold.suggest_range()
        if not self.range_check.isChecked():  # the paint range starts as the window on screen
            w = self.viewer.window
            self.range_low.setValue(w.center - w.width / 2)
            self.range_high.setValue(w.center + w.width / 2)
        self.label_table.refresh()
        self._sync_enabled()

    def _sync_enabled(self) -> None:
        ok = self.annotation.editable and not self.annotation.busy
        for b in self.operation_buttons:
            b.setEnabled(ok and self.annotation.labels is not None)
        self.label_table.add_button.setEnabled(self.annotation.editable)


def _mm_spin(value: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(0.1, 100.0)
    s.setDecimals(1)
    s.setSuffix(" mm")
    s.setValue(value)
    return s
