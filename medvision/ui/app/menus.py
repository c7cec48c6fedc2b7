"""The main window's menu bar: File (open, recent, screenshot, quit), View (layouts, the toolbar's view
actions, the docks), the annotation menus (:mod:`.annotating`), Window (:mod:`.controls`) and Help."""

from __future__ import annotations

import os

from PySide6.QtGui import QActionGroup, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

__all__ = ["WindowMenus"]


class WindowMenus:
    """Builds the menus of a :class:`~medvision.ui.app.main_window.MainWindow`."""

    def __init__(self, window) -> None:
        self.window = window

    def build(self) -> None:
        w = self.window
        menu = w.menuBar()
        file_menu = menu.addMenu("&File")
        self.action_open_file = w.add_action(file_menu, "Open &file...", w.choose_file, QKeySequence.StandardKey.Open)
        self.action_open_folder = w.add_action(file_menu, "Open f&older...", w.choose_folder, "Ctrl+Shift+O")
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        w.add_action(file_menu, "Save &screenshot...", self.choose_screenshot, "Ctrl+Shift+S")
        file_menu.addSeparator()
        w.add_action(file_menu, "&Quit", w.close, QKeySequence.StandardKey.Quit)

        view_menu = menu.addMenu("&View")
        self._add_layouts(view_menu)
        view_menu.addSeparator()
        for act in w.controls.view_actions():
            view_menu.addAction(act)
        view_menu.addSeparator()
        for dock in (w.browser_dock, w.header_dock, w.log_dock):
            view_menu.addAction(dock.toggleViewAction())
        w.header_dock.toggleViewAction().setShortcut("Ctrl+H")

        w.annotating.build_menus(menu, file_menu, view_menu)

        window_menu = menu.addMenu("&Window")
        w.controls.fill_window_menu(window_menu)

        help_menu = menu.addMenu("&Help")
        w.add_action(help_menu, "&Keyboard and mouse", self.show_shortcuts, "F1")
        w.add_action(help_menu, "&About medvision", self.show_about)

    def _add_layouts(self, view_menu) -> None:
        w = self.window
        group = QActionGroup(w)
        self.layout_actions = {}
        for i, name in enumerate(("1x1", "1x3", "2x2")):
            act = w.add_action(view_menu, f"Layout {name}", lambda _=False, n=name: w.set_layout(n), f"Ctrl+{i + 1}")
            act.setCheckable(True)
            group.addAction(act)
            self.layout_actions[name] = act
        self.layout_actions[w.views.layout_name].setChecked(True)
        w.views.layout_changed.connect(lambda n: self.layout_actions[n].setChecked(True))

    # ---- File ------------------------------------------------------------------------------------
    def _fill_recent_menu(self) -> None:
        settings = self.window.settings
        self.recent_menu.clear()
        for path in settings.recent:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.window.open_path(p))
            act.setEnabled(os.path.exists(path))
        if settings.recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self._clear_recent)
        else:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _clear_recent(self) -> None:
        self.window.settings.recent = []
        self.window.settings.save()

    def choose_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Save screenshot", "medvision.png", "PNG (*.png)")
        if path:
            self.window.save_screenshot(path)

    # ---- Help ------------------------------------------------------------------------------------
    def show_shortcuts(self) -> None:
        from ..views.slice_view import __doc__ as view_doc

        QMessageBox.information(self.window, "Keyboard and mouse", view_doc.split("\n\n", 1)[1] + "\n\n"
                                "I: invert.  Space: cine.  Ctrl+1/2/3: layouts 1x1, 1x3, 2x2.\n"
                                "Ctrl+O: open a file.  Ctrl+Shift+O: open a folder.  Ctrl+H: DICOM header.")

    def show_about(self) -> None:
        from ... import __version__

        QMessageBox.about(self.window, "About medvision", f"medvision {__version__}\nA radiology workstation.")
