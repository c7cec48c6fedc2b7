from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# widget tests run without a display unless told otherwise (real-window tests use Xvfb subprocesses)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MEDVISION_NO_DIALOGS", "1")

# tests run side by side (pytest-xdist): each worker's share of the CPUs, for torch, the DICOM pool and the
# processes the tests start (they inherit it); two workers of two threads each on two cores run slower than one
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _WORKERS > 1 and "MEDVISION_THREADS" not in os.environ:
    _cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["MEDVISION_THREADS"] = str(max(1, _cpus // _WORKERS))
    os.environ.setdefault("MEDVISION_WORKERS", os.environ["MEDVISION_THREADS"])
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["MEDVISION_THREADS"])

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MEDVISION_SHARED_DATA", ROOT.parent / "shared" / "data"))
SAMPLE_CT = ROOT / "resources" / "sample" / "ct_abdomen_siemens_j2k"
SAMPLE_LABELS = ROOT / "resources" / "sample" / "ct_abdomen_siemens_j2k.totalseg_labels.nii.gz"


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """User dirs for the whole run, set before any fixture: module-scoped fixtures (which are set up
    before each test's own home below) must not write into the real user's index either."""
    before = os.environ.get("MEDVISION_HOME")
    os.environ["MEDVISION_HOME"] = str(tmp_path_factory.mktemp("mvhome-session"))
    yield
    if before is None:
        os.environ.pop("MEDVISION_HOME", None)
    else:
        os.environ["MEDVISION_HOME"] = before


@pytest.fixture(autouse=True)
def medvision_home(tmp_path_factory, monkeypatch):
    """Every test gets its own user dirs (index, settings)."""
    home = tmp_path_factory.mktemp("mvhome")
    monkeypatch.setenv("MEDVISION_HOME", str(home))
    return home


@pytest.fixture
def window(qtbot):
    """The main window, shown (offscreen), with the user's settings of this test's home."""
    from medvision.ui.app.main_window import MainWindow
    from medvision.ui.app.settings import Settings

    win = MainWindow(Settings.load())
    qtbot.addWidget(win)
    win.resize(1500, 950)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.annotating.annotation.discard_recovery()
    win.close()


@pytest.fixture
def ct(qtbot, window):
    """The main window showing the sample CT, one view (axial) filling it."""
    from PySide6.QtWidgets import QApplication

    from .qtutil import open_and_wait

    assert open_and_wait(qtbot, window, SAMPLE_CT)
    window.set_layout("1x1")
    QApplication.processEvents()
    return window


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def dcm2niix() -> str:
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix is not installed (bash packaging/setup.sh --dev installs it)")
    return exe


SCREENSHOTS = ROOT / "tests" / "out" / "screenshots"


@pytest.fixture(scope="session")
def xdisplay():
    """A real X display (Xvfb + Mesa) for real-window and VTK tests; yields the DISPLAY string.

    Real-window tests run their window in a subprocess with ``DISPLAY`` set and
    ``QT_QPA_PLATFORM=xcb`` (the test process itself stays offscreen).
    """
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (bash packaging/setup.sh --dev installs it)")
    import subprocess

    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def x_env(display: str) -> dict:
    """Environment for a subprocess that opens real windows on ``display``."""
    env = dict(os.environ)
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    env.pop("VTK_DEFAULT_OPENGL_WINDOW", None)
    return env


@pytest.fixture
def screenshot_dir() -> Path:
    """Where tests save screenshots a person can open (tests/out/screenshots, git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def pytest_collection_modifyitems(config, items):
    """A test that uses ../shared/data (the ``shared_data`` fixture, directly or through another fixture) is
    marked ``shared_data``: ``-m "not shared_data"`` runs what needs nothing outside the repository."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


def pytest_configure(config):
    if _WORKERS > 1:
        import torch

        torch.set_num_threads(int(os.environ["MEDVISION_THREADS"]))
