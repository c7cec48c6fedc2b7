from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MEDVISION_SHARED_DATA", ROOT.parent / "shared" / "data"))
SAMPLE_CT = ROOT / "resources" / "sample" / "ct_abdomen_siemens_j2k"


@pytest.fixture(autouse=True)
def medvision_home(tmp_path_factory, monkeypatch):
    """Every test gets its own user dirs (index, settings)."""
    home = tmp_path_factory.mktemp("mvhome")
    monkeypatch.setenv("MEDVISION_HOME", str(home))
    return home


@pytest.fixture
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
