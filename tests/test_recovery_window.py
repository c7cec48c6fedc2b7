"""Crash recovery with the real GUI: a window painting labels is killed with SIGKILL, and the next
start offers the autosave; restoring it gives back the labels bit for bit (Xvfb)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from .conftest import ROOT, SAMPLE_CT, x_env


def _line_with(proc: subprocess.Popen, prefix: str, timeout: float) -> dict:
    """The JSON after ``prefix`` on the process's stdout (within ``timeout`` seconds)."""
    found: dict = {}
    seen: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(prefix):
                found.update(json.loads(line[len(prefix):]))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, f"no {prefix!r} line within {timeout} s; output: {''.join(seen)[-2000:]}"
    return found


@pytest.mark.slow
def test_a_killed_window_offers_its_autosave_and_restores_it(xdisplay, tmp_path, screenshot_dir):
    env = x_env(xdisplay)
    env.pop("MEDVISION_NO_DIALOGS", None)
    env.update(MEDVISION_HOME=str(tmp_path / "home"), MEDVISION_AUTOSAVE_S="1")
    editing = subprocess.Popen([sys.executable, "-m", "tests.annotate_script", "edit", str(SAMPLE_CT)], env=env,
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = _line_with(editing, "READY ", 240)
    finally:
        os.kill(editing.pid, signal.SIGKILL)  # mid-annotation: no chance to save or clean up
        editing.wait(30)
    assert editing.returncode == -signal.SIGKILL
    assert ready["platform"] == "xcb" and ready["strokes"] == 3 and ready["voxels"] > 1000

    png = screenshot_dir / "recovered_labels.png"
    restoring = subprocess.Popen([sys.executable, "-m", "tests.annotate_script", "restore", str(png)], env=env,
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        restored = _line_with(restoring, "RESTORED ", 240)
        restoring.wait(30)
    finally:
        if restoring.poll() is None:
            restoring.kill()
    assert "Restore them?" in restored["prompt"] and "autosaved" in restored["prompt"]
    assert restored["digest"] == ready["digest"] and restored["voxels"] == ready["voxels"]
    assert restored["dirty"] and restored["title"].startswith("*")  # restored, not yet saved anywhere
    assert restored["case_source"][0] == str(SAMPLE_CT)
    # the old slot was taken over by the new window's own autosave
    assert not os.path.exists(ready["slot"])
