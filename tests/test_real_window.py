"""Real windows on an X display (Xvfb + Mesa), VTK view included; screenshots a person can open
in tests/out/screenshots. Also the `medvision` command's window modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PySide6.QtGui import QImage

from .conftest import ROOT, SAMPLE_CT, x_env

MEDVISION = [sys.executable, "-m", "medvision.cli"]


def _pixels(path) -> np.ndarray:
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    assert not image.isNull(), f"{path} is not an image"
    ptr = image.constBits()
    arr = np.frombuffer(ptr, np.uint8, image.bytesPerLine() * image.height()).reshape(image.height(), -1)
    return arr[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()  # outlive the QImage


def _crop(pixels, rect):
    x, y, w, h = rect
    return pixels[y:y + h, x:x + w]


def _run_window(display, path, tmp_path, name, *extra, screenshot_dir=None):
    png = (screenshot_dir or tmp_path) / f"{name}.png"
    js = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "tests.window_script", str(path), str(png), str(js), *extra],
                          env=x_env(display), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _pixels(png), json.loads(js.read_text())


def test_sample_ct_in_a_real_window(xdisplay, tmp_path, screenshot_dir):
    pixels, info = _run_window(xdisplay, SAMPLE_CT, tmp_path, "main_window_ct", "--click",
                               screenshot_dir=screenshot_dir)
    assert info["platform"] == "xcb" and info["loaded"] is True
    assert info["view3d"] == "View3D" and "OpenGL" in (info["view3d_window"] or "")  # GLX on X, not EGL
    # a real X click in the axial view moved the linked cursor
    assert info["cursor"] != info["cursor_before_click"]
    assert info["window_name"] == "DICOM" and info["labels"]["axial"]["left"] == "R"
    for pane in ("axial", "coronal", "sagittal", "3d"):
        crop = _crop(pixels, info["panes"][pane])
        assert crop.std() > 10, f"the {pane} pane is blank"
    # the 3D pane shows the CT bone rendering, not a message on black
    render = _crop(pixels, info["panes"]["3d"]).astype(int)
    assert (render.sum(axis=2) > 150).mean() > 0.02


@pytest.mark.slow
def test_sagittal_mr_shows_like_its_axial_source(xdisplay, tmp_path, screenshot_dir, shared_data):
    """The same anatomy lands in the same view whatever plane it was acquired in: a sagittal DICOM
    acquisition of the MNI T1 and the NIfTI itself give identical slice panes."""
    from medvision.io import load

    from .dicomgen import write_volume_as_series

    source = load(shared_data / "volumes" / "mni152_t1_1mm.nii.gz")
    write_volume_as_series(source, tmp_path / "sag", "sagittal")
    sag_pixels, sag = _run_window(xdisplay, tmp_path / "sag", tmp_path, "main_window_sagittal_mr",
                                  screenshot_dir=screenshot_dir)
    src_pixels, src = _run_window(xdisplay, shared_data / "volumes" / "mni152_t1_1mm.nii.gz", tmp_path, "source")
    assert sag["loaded"] and src["loaded"]
    assert sag["labels"]["sagittal"] == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    assert sag["window_name"] == "automatic"
    for pane in ("axial", "coronal", "sagittal"):
        assert sag["panes"][pane] == src["panes"][pane]
        a, b = _crop(sag_pixels, sag["panes"][pane]), _crop(src_pixels, src["panes"][pane])
        # identical pictures except the corner text (series name may differ): compare the middle
        h, w = a.shape[:2]
        middle = (slice(h // 8, h - h // 8), slice(w // 8, w - w // 8))
        assert np.abs(a[middle].astype(int) - b[middle].astype(int)).mean() < 1.0, pane


def test_view_screenshot_command(xdisplay, tmp_path, screenshot_dir):
    out = screenshot_dir / "medvision_view_1x3.png"
    proc = subprocess.run([*MEDVISION, "view", str(SAMPLE_CT), "--screenshot", str(out), "--layout", "1x3"],
                          env=x_env(xdisplay), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pixels = _pixels(out)
    assert pixels.shape[:2] == (1000, 1600) and pixels.std() > 20


@pytest.mark.slow
def test_view_screenshot_without_a_display_and_bad_paths(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    out = tmp_path / "shot.png"
    proc = subprocess.run([*MEDVISION, "view", str(SAMPLE_CT), "--screenshot", str(out), "--layout", "1x1"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _pixels(out).std() > 20
    proc = subprocess.run([*MEDVISION, "view", str(tmp_path / "nope"), "--screenshot", str(out)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(os.urandom(2000))
    proc = subprocess.run([*MEDVISION, "view", str(garbage), "--screenshot", str(tmp_path / "g.png")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "garbage.dcm" in proc.stderr
    # the GUI without any display says what to do instead of crashing
    proc = subprocess.run([*MEDVISION, str(SAMPLE_CT)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "no display" in proc.stderr


def test_medvision_opens_the_window_without_importing_torch(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDVISION_REPORT_STARTUP="1")
    proc = subprocess.Popen(MEDVISION, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        t0 = time.monotonic()
        line = proc.stdout.readline()
        assert "window shown" in line, line
        assert "torch=False" in line and "vtk=False" in line
        assert time.monotonic() - t0 < 30
    finally:
        proc.kill()
        proc.wait()
