"""Run by real-window tests in a subprocess on an X display (Xvfb):

    python -m tests.window_script PATH OUT.png OUT.json [--click]

Opens the main window on PATH, waits until the data and the 3D view are shown, optionally clicks
into the axial view with real X mouse events, then saves a screenshot and a JSON description
(pane rectangles in the screenshot, cursor, window, platform, 3D view state).
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    path, out_png, out_json = sys.argv[1:4]
    click = "--click" in sys.argv
    from PySide6.QtCore import QPoint, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from medvision.ui.app.main_window import MainWindow
    from medvision.ui.app.settings import Settings

    app = QApplication(sys.argv[:1])
    settings = Settings()
    window = MainWindow(settings)
    window.resize(1600, 1000)
    window.set_layout("2x2")
    window.show()
    window.start_view3d()
    state = {"loaded": None, "view3d": False, "info": {}}

    def finish() -> None:
        view3d = window.views.view3d
        if view3d is not None and getattr(view3d, "is_preparing", False):
            QTimer.singleShot(100, finish)
            return
        info = state["info"]
        if click:
            axial = window.views.slice_views["axial"]
            vp = axial.viewport()
            before = window.viewer.cursor.tolist()
            QTest.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                             QPoint(vp.width() // 3, vp.height() // 3))
            app.processEvents()
            info["cursor_before_click"] = before
        app.processEvents()
        window.save_screenshot(out_png)
        panes = {}
        for name in ("axial", "coronal", "sagittal", "3d"):
            widget = window.views.pane(name)
            if widget.isVisible():
                top_left = widget.mapTo(window, QPoint(0, 0))
                panes[name] = [top_left.x(), top_left.y(), widget.width(), widget.height()]
        viewer = window.viewer
        info.update(
            loaded=state["loaded"], platform=app.platformName(), panes=panes,
            cursor=viewer.cursor.tolist() if viewer.grid is not None else None,
            window=[viewer.window.center, viewer.window.width], window_name=viewer.window_name,
            labels={p: viewer.grid.edge_labels(p) for p in ("axial", "coronal", "sagittal")} if viewer.grid else None,
            view3d=type(window.views.view3d).__name__ if window.views.view3d is not None else None,
            view3d_window=getattr(getattr(view3d, "scene", None), "window_class", None),
            status=window.statusBar().currentMessage(), error=window.last_error,
            device_pixel_ratio=window.devicePixelRatioF(),
        )
        with open(out_json, "w") as f:
            json.dump(info, f, indent=1)
        window.close()
        app.quit()

    def maybe_finish() -> None:
        if state["loaded"] is not None and state["view3d"]:
            QTimer.singleShot(300, finish)

    window.load_finished.connect(lambda ok: (state.update(loaded=ok), maybe_finish()))
    window.view3d_ready.connect(lambda: (state.update(view3d=True), maybe_finish()))
    QTimer.singleShot(0, lambda: window.open_path(path))
    QTimer.singleShot(240_000, app.quit)
    app.exec()
    return 0 if state["loaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
