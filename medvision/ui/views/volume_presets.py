"""The 3D view's transfer-function presets (data only; :func:`medvision.ui.views.vtk_support.apply_preset`
puts one into the VTK pipeline): CT's in Hounsfield units, and for MR and other modalities ramps placed
between the volume's 5th and 99.5th percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass

from .volume_prep import PreparedVolume

__all__ = ["Preset", "CT_PRESETS", "CT_PRESET_NAMES", "ALL_PRESET_NAMES", "mr_presets", "presets_for", "default_preset"]


@dataclass(frozen=True)
class Preset:
    """A transfer function: colour points ``(value, r, g, b)``, opacity points ``(value, alpha per
    mm)``, compositing or maximum-intensity projection, and shading."""

    name: str
    colors: tuple[tuple[float, float, float, float], ...]
    opacities: tuple[tuple[float, float], ...]
    mip: bool = False
    shade: bool = True
    ambient: float = 0.2
    diffuse: float = 0.9
    specular: float = 0.3
    specular_power: float = 15.0


CT_PRESETS: tuple[Preset, ...] = (
    Preset("CT bone",
           colors=((-1000, 0, 0, 0), (150, 0.73, 0.25, 0.30), (400, 0.91, 0.82, 0.55), (1200, 1, 1, 0.95)),
           opacities=((-1000, 0), (150, 0), (300, 0.25), (700, 0.7), (3000, 0.8))),
    Preset("CT soft tissue",
           colors=((-1000, 0, 0, 0), (-150, 0.55, 0.25, 0.15), (-50, 0.88, 0.60, 0.29), (40, 0.80, 0.32, 0.25),
                   (200, 0.95, 0.85, 0.75), (600, 1, 1, 0.95)),
           opacities=((-1000, 0), (-400, 0), (-150, 0), (-50, 0.01), (20, 0.03), (80, 0.08), (250, 0.5),
                      (3000, 0.7)),
           ambient=0.3, diffuse=0.8, specular=0.1),
    Preset("CT lung",
           colors=((-1000, 0.3, 0.3, 1), (-600, 0.85, 0.55, 0.45), (-400, 0.9, 0.7, 0.6), (0, 1, 0.9, 0.8),
                   (3000, 1, 1, 1)),
           opacities=((-1000, 0), (-900, 0), (-800, 0.02), (-600, 0.08), (-400, 0.1), (-390, 0), (3000, 0)),
           ambient=0.3, diffuse=0.8, specular=0.1),
    Preset("CT angio (contrast)",
           colors=((-1000, 0, 0, 0), (140, 0.62, 0, 0.02), (170, 0.91, 0.45, 0), (215, 0.97, 0.81, 0.61),
                   (420, 0.91, 0.91, 1), (3000, 1, 1, 1)),
           opacities=((-1000, 0), (140, 0), (170, 0.5), (215, 0.6), (420, 0.8), (3000, 0.8))),
    Preset("CT MIP", colors=((-100, 0, 0, 0), (1000, 1, 1, 1)), opacities=((-1000, 0), (-100, 0), (1000, 1)),
           mip=True, shade=False),
)


def mr_presets(lo: float, hi: float) -> tuple[Preset, ...]:
    """MR (and other modalities) presets, their ramps placed between the 5th and 99.5th percentiles."""
    span = max(hi - lo, 1e-6)

    def at(f: float) -> float:
        return lo + f * span

    default = Preset(
        "MR default",
        colors=((at(0), 0, 0, 0), (at(0.1), 0.17, 0, 0), (at(0.25), 0.40, 0.15, 0.08), (at(0.5), 0.78, 0.61, 0.38),
                (at(0.8), 0.85, 0.84, 0.79), (at(1.0), 1, 1, 1)),
        opacities=((at(0), 0), (at(0.15), 0), (at(0.3), 0.05), (at(0.6), 0.15), (at(1.0), 0.3)),
        ambient=0.25, diffuse=0.8, specular=0.2,
    )
    mip = Preset("MR MIP", colors=((at(0), 0, 0, 0), (at(1.0), 1, 1, 1)),
                 opacities=((at(0), 0), (at(0.05), 0), (at(1.0), 1)), mip=True, shade=False)
    return default, mip



#: names of the CT presets, and of every preset a volume of any modality may offer
CT_PRESET_NAMES: tuple[str, ...] = tuple(p.name for p in CT_PRESETS)
ALL_PRESET_NAMES: tuple[str, ...] = CT_PRESET_NAMES + tuple(p.name for p in mr_presets(0.0, 1.0))


def presets_for(prepared: PreparedVolume | None) -> list[Preset]:
    """The presets offered for a volume: CT's in HU for CT, percentile-placed ones otherwise."""
    if prepared is None:
        return []
    if prepared.modality == "CT":
        return list(CT_PRESETS)
    return list(mr_presets(*prepared.percentiles))


def default_preset(prepared: PreparedVolume) -> str:
    return "CT bone" if prepared.modality == "CT" else "MR default"

