"""User settings (layout, window presets, recent files, ...) in ``config_dir()/settings.json``.

Written atomically (``medvision.core.atomic``); a missing, unreadable or partly wrong file
falls back to defaults value by value and never stops the program from starting.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ...core.atomic import write_text
from ...paths import config_dir

log = logging.getLogger(__name__)

LAYOUTS = ("1x1", "1x3", "2x2")
MAX_RECENT = 12


@dataclass
class Settings:
    layout: str = "2x2"
    maximised_pane: str = "axial"
    recent: list[str] = field(default_factory=list)
    #: user-defined window presets: name -> [center, width]
    window_presets: dict[str, list[float]] = field(default_factory=dict)
    interpolate: bool = False
    cine_fps: float = 10.0
    preset_3d: str = ""
    last_dir: str = ""
    window_geometry: str = ""  # QMainWindow.saveGeometry(), base64
    window_state: str = ""  # QMainWindow.saveState() (docks), base64

    @staticmethod
    def path() -> Path:
        return config_dir() / "settings.json"

    @classmethod
    def load(cls) -> Settings:
        settings = cls()
        path = cls.path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return settings
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable settings (%s); using defaults", path, exc)
            return settings
        if not isinstance(data, dict):
            return settings
        for f in fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(settings, f.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if ok:
                setattr(settings, f.name, value)
            else:
                log.warning("%s: ignoring %s=%r (wrong type)", path, f.name, value)
        if settings.layout not in LAYOUTS:
            settings.layout = "2x2"
        settings.recent = [r for r in settings.recent if isinstance(r, str)][:MAX_RECENT]
        settings.window_presets = {
            k: [float(v[0]), float(v[1])] for k, v in settings.window_presets.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and v[1] > 0
        }
        return settings

    def save(self) -> None:
        path = self.path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(asdict(self), indent=2))
        except OSError as exc:
            log.warning("could not save settings to %s: %s", path, exc)

    def add_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        self.recent = [path] + [r for r in self.recent if r != path]
        del self.recent[MAX_RECENT:]
