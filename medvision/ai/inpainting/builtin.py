"""The inpainting method medvision has without any model: the region filled in 3D by the biharmonic fill
(smooth, from the voxels around it, with the voxel size) and given the image's own grain copied from
tissue of the same brightness nearby (:mod:`.texture`). It runs on any image in about a second, needs no
weights, and is what the Models dock and ``medvision inpaint`` offer when no inpainting model is
installed, beside any that is. It stands where a model package stands in those places (the same card
fields), but it has no network: nothing to fine-tune, nothing to load."""

from __future__ import annotations

from ... import __version__
from ..package import ModelPackage, PackageError, Registry

__all__ = ["BUILTIN_ID", "BuiltinInpainter", "builtin_inpainters", "find_inpainter", "describe"]

BUILTIN_ID = "medvision-fill-3d"


class BuiltinInpainter:
    """The built-in fill, with the attributes of a :class:`~medvision.ai.package.ModelPackage` that the
    inpainting job, the Models dock and the CLI read."""

    builtin = True
    shipped = True
    contains_code = False
    folder = None
    labels: tuple = ()  # (it labels nothing)
    dims = 3

    def __init__(self) -> None:
        self.card = {
            "id": BUILTIN_ID, "version": __version__, "task": "inpainting", "modality": None,
            "name": "Built-in fill: smooth 3D + the image's grain (no network)",
            "description": "Fills the region in 3D from the voxels around it (biharmonic, with the voxel size), "
                           "then copies the image's fine grain (noise) into it from tissue of the same brightness "
                           "nearby, so that the fill does not show as a smooth patch. No network: the same result "
                           "on any machine, about a second for a 5 cm region. It draws no anatomy the surroundings "
                           "do not suggest.",
            "license": "Apache-2.0 (medvision's own code)", "trainable": False,
            "input": {"coarse": "biharmonic_3d", "texture": "neighbour"},
            "provenance": {"source": "medvision (medvision.ai.inpainting.builtin)"},
        }

    id = property(lambda self: self.card["id"])
    version = property(lambda self: self.card["version"])
    name = property(lambda self: self.card["name"])
    modality = property(lambda self: None)

    def summary(self) -> str:
        return f"{self.id} {self.version}: {self.card['description']}"

    def suitability(self, volume) -> list[str]:
        return []  # (any modality: it learnt nothing from one)

    def network(self, part: str = "weights", device: str = "cpu"):
        raise PackageError(f"{self.id} is built in and has no network")


def builtin_inpainters() -> list[BuiltinInpainter]:
    return [BuiltinInpainter()]


def find_inpainter(model_id: str, registry: Registry | None = None) -> ModelPackage | BuiltinInpainter:
    """The built-in method or the installed package called ``model_id`` (:class:`PackageError` if neither)."""
    for method in builtin_inpainters():
        if method.id == model_id:
            return method
    return (registry or Registry()).get(model_id)


def describe(method, what: str = "inpainted") -> str:
    """How an image ``method`` made is described (its Series Description): "AI inpainted (id version)" for a
    model, "Inpainted (id version, no network)" for the built-in fill (``what``: e.g. "anomaly map")."""
    if getattr(method, "builtin", False):
        return f"{what[:1].upper()}{what[1:]} ({method.id} {method.version}, no network)"
    return f"AI {what} ({method.id} {method.version})"
