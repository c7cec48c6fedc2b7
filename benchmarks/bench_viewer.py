"""Benchmark: how the reading window responds (issue 3 targets), in one run on this machine.

    python benchmarks/bench_viewer.py [--slices 600] [--events 200] [--workdir DIR] [--skip-load]

1. Scroll latency: a wheel event sent to a slice view until that view has repainted, for a 512x512
   slice with a label overlay, in the real main window (2x2 layout, 1600x1000), from a
   512x512xN int16 volume (the bundled real CT, tiled to N slices). Axial, coronal, sagittal.
   Baseline in the same run: the same views fed the raw int16 slice with pyqtgraph's own
   levels (no lookup table), i.e. a plain pyqtgraph viewer.
2. Crosshair: a click in the axial view until the three slice views have repainted.
3. Start to window: `medvision` in a fresh process until its window is shown (and whether torch
   was imported by then). Baseline: a bare PySide6 QMainWindow started the same way.
4. Event-loop stall while a 600-slice DICOM series scans and loads (uncompressed and JPEG 2000),
   measured by a 1 ms timer on the GUI thread; also the time until the first slice shows.
   Baseline: the same timer with the window idle.

Targets: scroll p95 < 10 ms axial, < 16 ms reformatted; crosshair p95 < 30 ms; start < 2 s with
torch not imported; longest stall < 100 ms. Writes benchmarks/out/viewer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def summary(values, digits: int = 2) -> dict:
    return {"p50_ms": round(pct(values, 50), digits), "p95_ms": round(pct(values, 95), digits),
            "max_ms": round(pct(values, 100), digits), "n": len(values)}


# ---- 1 + 2: scroll and crosshair in the real window ---------------------------------------------
def big_ct(slices: int):
    from medvision.core.volume import Volume
    from medvision.io import load

    ct = load(ROOT / "resources" / "sample" / "ct_abdomen_siemens_j2k")
    reps = -(-slices // ct.shape[0])
    array = np.ascontiguousarray(np.tile(ct.array, (reps, 1, 1))[:slices])
    affine = ct.affine.copy()
    return Volume(array, affine, ct.frame_of_reference_uid, dict(ct.metadata, slice_sources=None))


def _wait_painted(app, views, t0: float, timeout: float = 2.0) -> float:
    deadline = time.perf_counter() + timeout
    while any(v.last_paint < t0 for v in views):
        app.processEvents()
        if time.perf_counter() > deadline:
            raise RuntimeError("a view did not repaint")
    return max(v.last_paint for v in views) - t0


def interaction(window, app, events: int, raw_baseline: bool) -> dict:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QMouseEvent, QWheelEvent

    views = window.views.slice_views
    if raw_baseline:  # a plain pyqtgraph viewer: raw slices, pyqtgraph's own levels
        for view in views.values():
            def raw_refresh(view=view):
                viewer, grid = view.viewer, view.viewer.grid
                index = int(viewer.cursor[grid.slice_axis(view.plane)])
                view.image.setImage(grid.image(view.plane, index), autoLevels=False,
                                    levels=(viewer.window.low, viewer.window.high))
                view.image.setRect(view.image_rect())
                view._refresh_overlays(index, view.image_rect())
                view._shown_slice = index
                view.place_crosshair()
            view.refresh_image = raw_refresh
    out = {}
    rng = np.random.default_rng(0)
    for plane, view in views.items():
        vp = view.viewport()
        centre = QPointF(vp.width() / 2, vp.height() / 2)
        n = window.viewer.grid.n_slices(plane)
        window.viewer.set_slice(plane, n // 2)
        direction, times = 1, []
        for i in range(events + 10):
            idx = window.viewer.cursor[window.viewer.grid.slice_axis(plane)]
            if idx + direction >= n or idx + direction < 0:
                direction = -direction
            ev = QWheelEvent(centre, QPointF(vp.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                             QPoint(0, 120 * direction), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                             Qt.ScrollPhase.NoScrollPhase, False)
            t0 = time.perf_counter()
            app.sendEvent(vp, ev)
            dt = _wait_painted(app, [view], t0)
            if i >= 10:  # warm-up
                times.append(dt)
        out[f"scroll_{plane}"] = summary(times)
    axial = views["axial"]
    vp = axial.viewport()
    times = []
    for i in range(events + 10):
        pos = QPointF(rng.uniform(0.25, 0.75) * vp.width(), rng.uniform(0.25, 0.75) * vp.height())
        glob = QPointF(vp.mapToGlobal(pos.toPoint()))
        t0 = time.perf_counter()
        app.sendEvent(vp, QMouseEvent(QMouseEvent.Type.MouseButtonPress, pos, glob, Qt.MouseButton.LeftButton,
                                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
        app.sendEvent(vp, QMouseEvent(QMouseEvent.Type.MouseButtonRelease, pos, glob, Qt.MouseButton.LeftButton,
                                      Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
        dt = _wait_painted(app, list(views.values()), t0)
        if i >= 10:
            times.append(dt)
        time.sleep(0.3 if i % 2 else 0.0)  # not a double click
    out["crosshair_3_views"] = summary(times)
    return out


def bench_window(volume=None, layout: str = "2x2", size=(1600, 1000)):
    """A main window for benchmarks (offscreen unless a platform is set): the user's settings
    neither read nor written, dialogs off, autosaves into a temporary folder; shows ``volume``."""

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["MEDVISION_NO_DIALOGS"] = "1"
    os.environ["MEDVISION_HOME"] = tempfile.mkdtemp(prefix="medvision-bench-")
    from PySide6.QtWidgets import QApplication

    from medvision.ui.app.main_window import MainWindow
    from medvision.ui.app.settings import Settings

    app = QApplication.instance() or QApplication([])
    settings = Settings()
    settings.save = lambda: None
    window = MainWindow(settings)
    window.resize(*size)
    window.set_layout(layout)
    window.show()
    app.processEvents()
    if volume is not None:
        window.viewer.set_volume(volume)
    for _ in range(20):
        app.processEvents()
    return app, window


def bench_interaction(slices: int, events: int) -> dict:
    from medvision.ui.views.viewer import Layer

    volume = big_ct(slices)
    labels = np.zeros(volume.shape, np.uint8)
    labels[volume.array > 150] = 1
    labels[(volume.array > 30) & (volume.array < 80)] = 2
    lut = np.zeros((256, 4), np.uint8)
    lut[1], lut[2] = (255, 80, 80, 255), (80, 200, 255, 255)
    result = {}
    for name, raw in (("baseline_pyqtgraph_raw", True), ("medvision", False)):
        app, window = bench_window(volume)
        window.viewer.add_layer(Layer("labels", labels, lut, 0.5))
        for _ in range(20):
            app.processEvents()
        result[name] = interaction(window, app, events, raw)
        window.close()
        app.processEvents()
    shape = window.views.slice_views["axial"].viewport().size()
    result["view_size_px"] = [shape.width(), shape.height()]
    result["volume"] = f"{volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} int16 + uint8 overlay"
    return result


# ---- 3: start to window -----------------------------------------------------------------------
_BARE = r"""
import sys, time
from PySide6.QtWidgets import QApplication, QMainWindow
from PySide6.QtCore import QTimer
app = QApplication(sys.argv[:1]); w = QMainWindow(); w.resize(1500, 950); w.show()
QTimer.singleShot(0, lambda: (print(f"medvision: window shown at {time.time():.6f}", flush=True), app.quit()))
app.exec()
"""


def _time_to_window(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if "window shown at" in line:
                shown = float(line.split("window shown at")[1].split()[0])
                return shown - t0, line.strip()
        raise RuntimeError(f"{cmd}: no window")
    finally:
        proc.kill()
        proc.wait()


def bench_startup(repeats: int = 5) -> dict:
    home = tempfile.mkdtemp(prefix="mv-bench-home-")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDVISION_REPORT_STARTUP="1", MEDVISION_HOME=home)
    exe = str(Path(sys.executable).with_name("medvision"))
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "medvision.cli"]
    medvision, bare, lines = [], [], []
    for _ in range(repeats):
        t, line = _time_to_window(cmd, env)
        medvision.append(t)
        lines.append(line)
        bare.append(_time_to_window([sys.executable, "-c", _BARE], env)[0])
    return {"medvision_s": round(statistics.median(medvision), 3),
            "bare_qt_window_s": round(statistics.median(bare), 3),
            "ratio": round(statistics.median(medvision) / statistics.median(bare), 2),
            "torch_imported_at_window": any("torch=True" in line for line in lines), "report": lines[-1]}


# ---- 4: event-loop stall while loading ----------------------------------------------------------
def bench_stall(folder: Path, label: str) -> dict:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from medvision.io.dicom.index import DicomIndex
    from medvision.ui.app.main_window import MainWindow
    from medvision.ui.app.settings import Settings

    app = QApplication.instance() or QApplication([])
    settings = Settings()
    settings.save = lambda: None
    index = DicomIndex(Path(tempfile.mkdtemp(prefix="mv-bench-index-")) / "index.sqlite")
    window = MainWindow(settings, index)
    window.resize(1600, 1000)
    window.set_layout("1x3")
    window.show()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    state = {"done": None, "first": None}
    window.load_finished.connect(lambda ok: state.update(done=(time.perf_counter(), ok)))
    window.viewer.volume_changed.connect(lambda: state["first"] or state.update(first=time.perf_counter()))
    timer.start()
    t_idle = time.perf_counter()
    while time.perf_counter() - t_idle < 1.0:
        app.processEvents()
    idle = np.diff(ticks)
    ticks.clear()
    t0 = time.perf_counter()
    window.open_path(str(folder))
    while state["done"] is None:
        app.processEvents()
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("load did not finish")
    t_end, ok = state["done"]
    for _ in range(5):
        app.processEvents()
    timer.stop()
    gaps = np.diff([t0, *ticks])
    window.close()
    app.processEvents()
    return {"series": label, "ok": ok, "load_s": round(t_end - t0, 2),
            "first_slice_s": round(state["first"] - t0, 2) if state["first"] else None,
            "longest_stall_ms": round(float(gaps.max()) * 1000, 1),
            "p99_gap_ms": round(pct(gaps, 99), 1),
            "baseline_idle_longest_gap_ms": round(float(idle.max()) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--workdir", help="where the 600-slice series is built and reused (default: temp)")
    parser.add_argument("--skip-load", action="store_true", help="skip the loading stall measurement")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("MEDVISION_HOME", tempfile.mkdtemp(prefix="mv-bench-home-"))
    os.environ["MEDVISION_NO_DIALOGS"] = "1"
    result = {"machine": f"{os.cpu_count()} cpus, QT_QPA_PLATFORM={os.environ['QT_QPA_PLATFORM']}"}
    print("== start to window (5 fresh processes, median)", flush=True)
    result["startup"] = bench_startup()
    print(json.dumps(result["startup"], indent=1), flush=True)
    print(f"== scroll and crosshair ({args.events} events each)", flush=True)
    result["interaction"] = bench_interaction(args.slices, args.events)
    print(json.dumps(result["interaction"], indent=1), flush=True)
    if not args.skip_load:
        from bench_dicom_load import build_series

        work = Path(args.workdir or tempfile.mkdtemp(prefix="mv-bench-data-"))
        print(f"== building a {args.slices}-slice 512x512 CT series in {work} (reused when present)", flush=True)
        build_series(work / "series", args.slices, 512)
        result["load_stall"] = [bench_stall(work / "series" / "uncompressed", "uncompressed"),
                                bench_stall(work / "series" / "j2k", "JPEG 2000 lossless")]
        print(json.dumps(result["load_stall"], indent=1), flush=True)
    inter = result["interaction"]
    med, base = inter["medvision"], inter["baseline_pyqtgraph_raw"]
    print("\n== summary (targets in brackets)")
    for plane, target in (("axial", 10), ("coronal", 16), ("sagittal", 16)):
        m, b = med[f"scroll_{plane}"], base[f"scroll_{plane}"]
        print(f"scroll {plane:9s} p50 {m['p50_ms']:6.2f} ms  p95 {m['p95_ms']:6.2f} ms [<{target}]   "
              f"baseline p95 {b['p95_ms']:6.2f} ms  ratio {m['p95_ms'] / b['p95_ms']:.2f}")
    m, b = med["crosshair_3_views"], base["crosshair_3_views"]
    print(f"crosshair 3 views p50 {m['p50_ms']:6.2f} ms  p95 {m['p95_ms']:6.2f} ms [<30]   "
          f"baseline p95 {b['p95_ms']:6.2f} ms  ratio {m['p95_ms'] / b['p95_ms']:.2f}")
    s = result["startup"]
    print(f"start to window {s['medvision_s']:.2f} s [<2], bare Qt window {s['bare_qt_window_s']:.2f} s, "
          f"ratio {s['ratio']:.2f}; torch imported: {s['torch_imported_at_window']}")
    for r in result.get("load_stall", []):
        print(f"loading {r['series']}: longest stall {r['longest_stall_ms']} ms [<100] (idle baseline "
              f"{r['baseline_idle_longest_gap_ms']} ms), first slice after {r['first_slice_s']} s, "
              f"loaded in {r['load_s']} s")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "viewer.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'viewer.json'}")


if __name__ == "__main__":
    main()
