"""Run by the crash-recovery test in a subprocess on an X display (Xvfb):

    python -m tests.annotate_script edit PATH      # paint, wait for the autosave, print READY, wait to be killed
    python -m tests.annotate_script restore OUT.png  # answer the restore prompt, print the labels restored

``edit`` paints strokes with mouse events in the axial view of the real window and prints
``READY {json}`` (voxel count and checksum of the labels) once the autosave holds them, then keeps
the window open until the test kills the process with SIGKILL. ``restore`` starts a new window,
clicks "Restore" in the prompt it shows, and prints ``RESTORED {json}`` with the same figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys


def _digest(array) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def main() -> int:
    mode = sys.argv[1]
    import numpy as np
    from PySide6.QtCore import QPoint, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication, QMessageBox

    from medvision.ui.app.main_window import MainWindow
    from medvision.ui.app.settings import Settings

    app = QApplication(sys.argv[:1])
    window = MainWindow(Settings())
    window.resize(1500, 950)
    window.set_layout("1x1")
    window.show()
    ann = window.annotating.annotation

    def paint() -> None:
        panel = window.annotating.panel
        panel.set_tool("paint")
        panel.tools["paint"].set_radius(6.0)
        view = window.views.slice_views["axial"]
        vp = view.viewport()
        z = int(window.viewer.cursor[2])
        for k, (a, b) in enumerate((((180, 200), (320, 200)), ((200, 300), (300, 340)), ((260, 150), (262, 380)))):
            window.viewer.set_slice("axial", z + k - 1)
            start = view.viewport_point(np.array([a[0], a[1], z], float)).toPoint()
            end = view.viewport_point(np.array([b[0], b[1], z], float)).toPoint()
            QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
            for i in range(1, 11):
                p = QPoint(start.x() + (end.x() - start.x()) * i // 10, start.y() + (end.y() - start.y()) * i // 10)
                QTest.mouseMove(vp, p, 15)
            QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end, 15)
            app.processEvents()
        QTimer.singleShot(200, wait_autosave)

    def wait_autosave() -> None:
        slot = ann.recovery_dir
        state = slot / "state.json" if slot is not None else None
        if state is None or not state.exists() or json.loads(state.read_text())["version"] != ann.history.version:
            QTimer.singleShot(200, wait_autosave)
            return
        info = {"voxels": int((ann.labels.array > 0).sum()), "digest": _digest(ann.labels.array),
                "strokes": len(ann.history.undo_stack), "slot": str(slot), "platform": app.platformName()}
        print("READY " + json.dumps(info), flush=True)

    def answer_prompt() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            for button in box.buttons():
                if button.text() == "Restore":
                    prompt["text"] = box.text() + " " + box.informativeText()
                    button.click()
                    return
        QTimer.singleShot(100, answer_prompt)

    def restored() -> None:
        if ann.labels is None or ann.busy:
            QTimer.singleShot(200, restored)
            return
        app.processEvents()
        window.save_screenshot(sys.argv[2])
        info = {"voxels": int((ann.labels.array > 0).sum()), "digest": _digest(ann.labels.array),
                "dirty": ann.dirty, "title": window.windowTitle(), "prompt": prompt["text"],
                "case_source": list(ann.source or [])}
        print("RESTORED " + json.dumps(info), flush=True)
        os._exit(0)  # the restored labels are unsaved: leave without the "save changes?" question

    prompt = {"text": ""}
    if mode == "edit":
        window.load_finished.connect(lambda ok: QTimer.singleShot(300, paint) if ok else app.exit(3))
        QTimer.singleShot(0, lambda: window.open_path(sys.argv[2]))
    else:
        QTimer.singleShot(50, answer_prompt)
        window.load_finished.connect(lambda ok: QTimer.singleShot(300, restored) if ok else app.exit(3))
    QTimer.singleShot(180_000, lambda: app.exit(4))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
