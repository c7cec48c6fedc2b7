"""Eager PyTorch networks of the shipped models, by the architecture name a model card gives."""

from __future__ import annotations

from .deepbet import LinkNet3D
from .meshnet import MeshNet

__all__ = ["ARCHITECTURES", "LinkNet3D", "MeshNet"]

#: model.json ``architecture.name`` -> module class (built with ``architecture.args``)
ARCHITECTURES = {"deepbet.LinkNet3D": LinkNet3D, "meshnet.MeshNet": MeshNet}
