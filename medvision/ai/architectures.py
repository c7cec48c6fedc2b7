"""Networks by the name a model card gives them: medvision's own (``deepbet.LinkNet3D``,
``meshnet.MeshNet``, ``inpaint.GatedUNet25D``) and any of
monai's (``monai.UNet``, ``monai.SegResNet``, ``monai.SwinUNETR`` ...) with the card's arguments."""

from __future__ import annotations

from typing import Any

from .package_base import PackageError

__all__ = ["build", "known"]


def _deepbet(args: dict[str, Any]):
    from .networks import deepbet

    return deepbet.LinkNet3D(**args)


def _meshnet(args: dict[str, Any]):
    from .networks import meshnet

    return meshnet.MeshNet(**args)


def _inpaint(args: dict[str, Any]):
    from .inpainting.network import InpaintingUNet

    return InpaintingUNet(**args)


_OWN = {"deepbet.LinkNet3D": _deepbet, "meshnet.MeshNet": _meshnet, "inpaint.GatedUNet25D": _inpaint}


def known() -> list[str]:
    import monai.networks.nets as nets

    return sorted(_OWN) + sorted(f"monai.{n}" for n in dir(nets) if n[:1].isupper())


def build(spec: dict[str, Any]):
    """A new (randomly initialised) network from a card's ``architecture`` entry."""
    name = str(spec.get("name", ""))
    args = dict(spec.get("args") or {})
    if name in _OWN:
        return _OWN[name](args)
    if name in ("torchscript", "onnx"):  # run from their own file: ModelPackage.network() loads them
        raise PackageError(f"a {name} model is not built from a card: it runs from its file (ModelPackage.network) "
                           "but cannot be fine-tuned")
    if name.startswith("monai."):
        import monai.networks.nets as nets

        cls = getattr(nets, name.split(".", 1)[1], None)
        if cls is None:
            raise PackageError(f"monai has no network {name.split('.', 1)[1]!r}")
        try:
            return cls(**args)
        except TypeError as exc:
            raise PackageError(f"{name}: bad arguments in the card ({exc})") from exc
    raise PackageError(f"unknown architecture {name!r} (known: medvision's {', '.join(_OWN)} and monai.*)")
