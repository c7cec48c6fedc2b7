"""Annotation benchmark: brush dab latency, region growing, undo history memory.

On a 512x512x600 int16 CT (the bundled real CT tiled along z, on an isotropic 0.98 mm grid so that
a radius of 10 voxels is the same on every axis) with a uint8 label map:

* brush dab (one ``Stroke.dab``: mask, rules, change recorded for undo), 2D radius 10 px and 3D
  radius 10 voxels, p50/p95; baseline: the bare numpy write of the same disk/ball into the array
  (no rules, no undo), measured in the same run;
* region growing (connected threshold from a seed in the liver) on 512x512x300; baseline:
  SimpleITK's ConnectedThreshold called directly on the same array;
* brush strokes in the real window (offscreen): mouse move to repainted view, against the same
  drag with the Navigate tool (the crosshair following the mouse in three views);
* undo history after 200 brush strokes (20 dabs each, 2D and 3D mixed): bytes held by the history,
  and the process's resident memory growth.

    python benchmarks/bench_annotate.py
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import bench_viewer  # noqa: E402 - shared helpers: percentiles, the tiled real CT


def summary(values) -> dict:
    return bench_viewer.summary(values, digits=3)  # sub-millisecond figures: one more digit


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def big_ct(slices: int):
    volume = bench_viewer.big_ct(slices)
    affine = volume.affine.copy()
    affine[:3, 2] *= volume.spacing[0] / volume.spacing[2]  # isotropic: "radius 10 voxels" on every axis
    return volume.array, affine


def bench_dabs(image, affine, n: int = 300) -> dict:
    from medvision.annotate.brush import BrushShape, Stroke, brush_mask
    from medvision.annotate.rules import EditRules, spacing_zyx
    from medvision.core.edits import History
    from medvision.core.labels import LabelMap

    spacing = spacing_zyx(affine)
    rng = np.random.default_rng(0)
    out = {}
    for name, shape in (("2d_radius_10px", BrushShape(10 * spacing[2], axis=0)),
                        ("3d_radius_10vox", BrushShape(10 * spacing[2], axis=None))):
        labels = LabelMap(np.zeros(image.shape, np.uint8), affine)
        labels.table.add("lesion")
        history = History(labels)
        rules = EditRules(intensity=(-200, 400))
        centres = [(int(rng.integers(20, image.shape[0] - 20)), int(rng.integers(40, 470)), int(rng.integers(40, 470)))
                   for _ in range(n)]
        times, changed = [], 0
        for i in range(0, n, 20):  # strokes of 20 dabs
            stroke = Stroke(history, labels, shape, 1, rules=rules, image=image)
            z, y, x = centres[i]
            for k in range(20):
                t0 = time.perf_counter()
                changed += stroke.dab((z, y + k, x + k)) is not None
                times.append(time.perf_counter() - t0)
            stroke.finish()
        base = []
        array = np.zeros(image.shape, np.uint8)
        for i in range(0, n, 20):
            z, y, x = centres[i]
            for k in range(20):
                t0 = time.perf_counter()
                box, mask = brush_mask((z, y + k, x + k), shape, spacing)
                array[box][mask] = 1
                base.append(time.perf_counter() - t0)
        out[name] = {"medvision": summary(times), "dabs_that_changed_voxels": changed,
                     "baseline_numpy_write": summary(base),
                     "ratio_p95": round(bench_viewer.pct(times, 95) / bench_viewer.pct(base, 95), 2)}
    return out


def bench_grow(image, affine) -> dict:
    import SimpleITK as sitk

    from medvision.annotate.regions import grow_connected

    sub = np.ascontiguousarray(image[:300])
    seed = (10, 297, 158)  # in the liver of the sample CT (slice 10 of each 20-slice tile)
    runs, base = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        mask = grow_connected(sub, [seed], 60, 130)
        runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = sitk.GetArrayFromImage(sitk.ConnectedThreshold(sitk.GetImageFromArray(sub), seedList=[seed[::-1]],
                                                             lower=60, upper=130, replaceValue=1))
        base.append(time.perf_counter() - t0)
    assert np.array_equal(mask, ref.astype(bool))
    return {"volume": "512x512x300 int16", "voxels_grown": int(mask.sum()), "medvision_s": round(min(runs), 3),
            "baseline_sitk_s": round(min(base), 3), "ratio": round(min(runs) / min(base), 2)}


def bench_history(image, affine, strokes: int = 200) -> dict:
    from medvision.annotate.brush import BrushShape, Stroke
    from medvision.annotate.rules import spacing_zyx
    from medvision.core.edits import History
    from medvision.core.labels import LabelMap

    spacing = spacing_zyx(affine)
    labels = LabelMap(np.zeros(image.shape, np.uint8), affine)
    labels.table.add("a")
    labels.table.add("b")
    history = History(labels)
    rng = np.random.default_rng(1)
    before = rss_mb()
    t0 = time.perf_counter()
    for s in range(strokes):
        shape = BrushShape(float(rng.uniform(3, 15)), axis=None if s % 4 == 0 else int(rng.integers(0, 3)))
        stroke = Stroke(history, labels, shape, 1 + s % 2)
        z, y, x = int(rng.integers(0, image.shape[0])), int(rng.integers(0, 512)), int(rng.integers(0, 512))
        for _ in range(20):
            y, x = int(np.clip(y + rng.integers(-8, 9), 0, 511)), int(np.clip(x + rng.integers(-8, 9), 0, 511))
            stroke.dab((z, y, x))
        stroke.finish()
    elapsed = time.perf_counter() - t0
    return {"strokes": strokes, "undo_steps": len(history.undo_stack), "history_mb": round(history.nbytes / 2**20, 2),
            "rss_growth_mb": round(rss_mb() - before, 1), "label_map_mb": round(labels.array.nbytes / 2**20, 1),
            "target": "< 1024 MB", "seconds": round(elapsed, 2), "spacing_mm": [round(float(s), 3) for s in spacing]}


def bench_brush_ui(slices: int = 300, moves: int = 150) -> dict:
    """Brush strokes in the real window (offscreen, 2x2 layout): time from a mouse move to the
    axial view repainted with the new paint. Baseline: the same drag with the Navigate tool (the
    crosshair follows the mouse and all three views repaint), in the same window and run."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QMouseEvent

    app, window = bench_viewer.bench_window(bench_viewer.big_ct(slices))
    panel, ann = window.annotating.panel, window.annotating.annotation
    axial = window.views.slice_views["axial"]
    vp = axial.viewport()

    def send(kind, pos, buttons) -> None:
        glob = QPointF(vp.mapToGlobal(pos.toPoint()))
        button = Qt.MouseButton.LeftButton if kind != QMouseEvent.Type.MouseMove else Qt.MouseButton.NoButton
        app.sendEvent(vp, QMouseEvent(kind, pos, glob, button, buttons, Qt.KeyboardModifier.NoModifier))

    def strokes(views) -> list[float]:
        times = []
        rng = np.random.default_rng(1)
        for _stroke in range(moves // 30):
            y = rng.uniform(0.3, 0.7) * vp.height()
            x0 = 0.25 * vp.width()
            send(QMouseEvent.Type.MouseButtonPress, QPointF(x0, y), Qt.MouseButton.LeftButton)
            for i in range(1, 31):
                time.sleep(0.012)  # pyqtgraph drops moves less than 10 ms apart
                pos = QPointF(x0 + i * 0.016 * vp.width(), y + 3 * np.sin(i / 3))
                t0 = time.perf_counter()
                send(QMouseEvent.Type.MouseMove, pos, Qt.MouseButton.LeftButton)
                dt = bench_viewer._wait_painted(app, views, t0)
                if i > 2:  # the drag starts after a few pixels
                    times.append(dt)
            send(QMouseEvent.Type.MouseButtonRelease, pos, Qt.MouseButton.NoButton)
            app.processEvents()
        return times

    result = {}
    panel.set_tool("navigate")
    result["baseline_crosshair_drag"] = summary(strokes(list(window.views.slice_views.values())))
    panel.set_tool("paint")
    tool = panel.tools["paint"]
    tool.set_radius(10 * float(window.viewer.grid.spacing[0]))  # 10 pixels
    result["paint_2d_radius_10px"] = summary(strokes([axial]))
    result["paint_steps_in_history"] = len(ann.history.undo_stack)
    result["ratio_p95"] = round(result["paint_2d_radius_10px"]["p95_ms"]
                                / result["baseline_crosshair_drag"]["p95_ms"], 2)
    result["view_px"] = [vp.width(), vp.height()]
    ann.discard_recovery()
    ann.history.version = ann.saved_version  # the window closes without asking
    window.close()
    app.processEvents()
    return result


def main() -> None:
    print("== brush in the window (512x512x300, 2x2 layout)", flush=True)
    ui = bench_brush_ui()
    print(json.dumps(ui, indent=1), flush=True)
    image, affine = big_ct(600)
    result = {"machine_cpus": __import__("os").cpu_count()}
    print("== brush dabs (512x512x600)", flush=True)
    result["dab"] = bench_dabs(image, affine)
    print(json.dumps(result["dab"], indent=1), flush=True)
    print("== region growing (512x512x300)", flush=True)
    result["grow"] = bench_grow(image, affine)
    print(json.dumps(result["grow"], indent=1), flush=True)
    print("== undo history after 200 strokes (512x512x600)", flush=True)
    result["history"] = bench_history(image, affine)
    print(json.dumps(result["history"], indent=1), flush=True)
    d2, d3, g, h = result["dab"]["2d_radius_10px"], result["dab"]["3d_radius_10vox"], result["grow"], result["history"]
    print("\n== summary (targets in brackets)")
    print(f"brush dab 2D r=10 px   p50 {d2['medvision']['p50_ms']:.3f} ms  p95 {d2['medvision']['p95_ms']:.3f} ms [<5]"
          f"   baseline numpy p95 {d2['baseline_numpy_write']['p95_ms']:.3f} ms  ratio {d2['ratio_p95']}")
    print(f"brush dab 3D r=10 vox  p50 {d3['medvision']['p50_ms']:.3f} ms  p95 {d3['medvision']['p95_ms']:.3f} ms [<15]"
          f"   baseline numpy p95 {d3['baseline_numpy_write']['p95_ms']:.3f} ms  ratio {d3['ratio_p95']}")
    print(f"region growing 512x512x300: {g['medvision_s']} s [<1]   baseline SimpleITK {g['baseline_sitk_s']} s"
          f"  ratio {g['ratio']}")
    print(f"undo history after {h['strokes']} strokes: {h['history_mb']} MB held, process grew {h['rss_growth_mb']} MB"
          f" [<1024] (label map itself {h['label_map_mb']} MB)")
    print(f"brush stroke in the window: move -> repainted p50 {ui['paint_2d_radius_10px']['p50_ms']} ms  p95 "
          f"{ui['paint_2d_radius_10px']['p95_ms']} ms   baseline crosshair drag p95 "
          f"{ui['baseline_crosshair_drag']['p95_ms']} ms  ratio {ui['ratio_p95']}")
    result["brush_ui"] = ui
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "annotate.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'annotate.json'}")


if __name__ == "__main__":
    main()
