"""Where medvision keeps its files: platformdirs' user dirs, or ``$MEDVISION_HOME`` when set."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "medvision"


def _base(kind: str) -> Path:
    home = os.environ.get("MEDVISION_HOME")
    if home:
        path = Path(home).expanduser() / kind
    else:
        path = Path(getattr(platformdirs, f"user_{kind}_dir")(APP, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """User data: the DICOM index, user model packages, recovery area."""
    return _base("data")


def config_dir() -> Path:
    """User settings."""
    return _base("config")


def cache_dir() -> Path:
    """Re-creatable files."""
    return _base("cache")
