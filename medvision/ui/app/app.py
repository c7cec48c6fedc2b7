"""Start the GUI: ``medvision [PATH]`` and ``medvision view PATH --screenshot OUT.png``."""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger(__name__)

SCREENSHOT_SIZE = (1600, 1000)


def _application():
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(sys.argv[:1])
        app.setApplicationName("medvision")
        app.setOrganizationName("medvision")
        app.setStyle("Fusion")
    return app


def install_excepthook(window) -> None:
    """An exception no code caught (in a Qt slot, a timer) is shown as one sentence in the window (status bar
    and message box) with its traceback in the private log, never printed as a traceback; nothing is closed."""
    previous = sys.excepthook

    def hook(kind, exc, tb):
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, exc, tb)
            return
        from ...crashlog import one_line, record

        where = record(exc.with_traceback(tb), "the window")
        try:
            window.report_error(f"unexpected error: {one_line(exc)}" + (f"; details in {where}" if where else "")
                                + "; nothing was closed")
        except Exception:  # noqa: BLE001 - the window itself is broken: the terminal is left
            previous(kind, exc, tb)

    sys.excepthook = hook


def run_gui(path: str | None = None, *, series: str | None = None, layout: str | None = None,
            screenshot: str | None = None, started: float | None = None) -> int:
    """Open the main window (and ``path`` in it). With ``screenshot``, render the window with the
    data loaded to that PNG and return (exit code 0, or 2 when the data could not be shown)."""
    no_display = (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
                  and not os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"))
    if screenshot and no_display:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif no_display:
        print("medvision: no display to open the window on (DISPLAY is not set). Run it in a desktop "
              "session, or under a virtual display (xvfb-run -a medvision ...), or render a picture "
              "with: medvision view PATH --screenshot OUT.png", file=sys.stderr)
        return 2
    if screenshot:
        os.environ["MEDVISION_NO_DIALOGS"] = "1"
    app = _application()
    from PySide6.QtCore import QTimer

    from .main_window import MainWindow
    from .settings import Settings

    settings = Settings.load()
    if screenshot:  # documentation renders: fixed size, the user's settings neither used nor changed
        settings = Settings()
        settings.save = lambda: None  # type: ignore[method-assign]
    window = MainWindow(settings)
    install_excepthook(window)
    if layout:
        window.set_layout(layout)
    if screenshot:
        window.resize(*SCREENSHOT_SIZE)
    window.show()
    if os.environ.get("MEDVISION_REPORT_STARTUP"):
        QTimer.singleShot(0, lambda: print(f"medvision: window shown at {time.time():.6f} "
                                           f"(+{time.perf_counter() - (started or 0):.3f} s after main, "
                                           f"torch={'torch' in sys.modules}, vtk={'vtkmodules' in sys.modules})",
                                           flush=True))
    window.start_view3d()
    if path:
        QTimer.singleShot(0, lambda: window.open_path(path, series))
    status = {"code": 0}
    if screenshot:
        _arrange_screenshot(app, window, screenshot, status, expect_data=bool(path))
    app.exec()
    return status["code"]


def _arrange_screenshot(app, window, out: str, status: dict, expect_data: bool, timeout_s: float = 300) -> None:
    """Save the window to ``out`` once the data is loaded and the 3D view has rendered, then quit."""
    from PySide6.QtCore import QTimer

    state = {"loaded": not expect_data, "ok": True, "view3d": False, "shooting": False}

    def maybe_shoot() -> None:
        if not state["loaded"] or state["shooting"]:
            return
        needs_3d = "3d" in window.views.visible_panes() or window.views.layout_name == "2x2"
        if needs_3d and not state["view3d"]:
            return
        view = window.views.view3d
        if needs_3d and view is not None and getattr(view, "is_preparing", False):
            QTimer.singleShot(100, maybe_shoot)
            return
        state["shooting"] = True
        QTimer.singleShot(200, shoot)

    def shoot() -> None:
        app.processEvents()
        if not state["ok"]:
            print(f"medvision: {window.last_error or 'the data could not be shown'}", file=sys.stderr)
            status["code"] = 2
        if window.save_screenshot(out):
            print(f"wrote {out}")
        else:
            status["code"] = 2
        window.close()
        app.quit()

    def on_loaded(ok: bool) -> None:
        state["loaded"], state["ok"] = True, ok
        maybe_shoot()

    def on_view3d() -> None:
        state["view3d"] = True
        maybe_shoot()

    def give_up() -> None:
        print(f"medvision: gave up waiting for the data after {timeout_s:.0f} s", file=sys.stderr)
        status["code"] = 2
        app.quit()

    window.load_finished.connect(on_loaded)
    window.view3d_ready.connect(on_view3d)
    if not expect_data:
        QTimer.singleShot(0, maybe_shoot)
    QTimer.singleShot(int(timeout_s * 1000), give_up)
