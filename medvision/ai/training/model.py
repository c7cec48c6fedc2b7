"""The network to fine-tune: the base package's architecture with a new output head.

The head (the parameters whose shape depends on ``out_channels``: deepbet's LinkNet3D ``tp_conv2``,
a monai network's last convolution) is always new and randomly initialised, even when the number
of classes happens to equal the base's; every other parameter whose name and shape fit comes from
the base weights (none with ``from_scratch``). The encoder (LinkNet3D: ``init``, ``down0..3``;
SwinUNETR: ``swinViT`` and ``encoder*``; SegResNet: ``convInit``, ``down_layers``; UNETR: ``vit``,
``encoder*``) is what the trainer can freeze first and then train with a smaller rate (or, with
``freeze_part="body"``, every pretrained layer, so that only the new head learns at first).

Another architecture than the base's (``architecture="monai.SwinUNETR"``) is built when the base
card lists it in ``trainable_architectures`` (a list of names, or ``{name: args}``); it starts
from scratch: no pretrained weights for it exist offline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..architectures import build
from ..package import ModelPackage, PackageError

__all__ = ["TrainNetwork", "make_network", "encoder_parameters", "head_and_decoder_parameters", "encoder_prefixes",
           "size_multiple", "logits_function"]

log = logging.getLogger(__name__)

_ENCODERS = {
    "LinkNet3D": ("init", "down0", "down1", "down2", "down3"),
    "SwinUNETR": ("swinViT", "encoder1", "encoder2", "encoder3", "encoder4", "encoder10"),
    "SegResNet": ("convInit", "down_layers"),
    "UNETR": ("vit", "encoder1", "encoder2", "encoder3", "encoder4"),
}
_DEFAULT_ARGS = {"monai.SwinUNETR": {"feature_size": 24, "spatial_dims": 3}}
#: monai's optional dependencies some networks need to run (they build without them, then fail)
_REQUIRES = {"monai.SwinUNETR": ("einops",), "monai.UNETR": ("einops",), "monai.ViT": ("einops",)}


@dataclass
class TrainNetwork:
    """The network and what the card and trainer need to know about it."""

    net: nn.Module
    spec: dict  # the card's ``architecture`` entry (name, args with the new out_channels)
    head: list[str]  # parameter names of the new head
    pretrained: list[str] = field(default_factory=list)  # parameter names loaded from the base
    softmax_in_network: bool = False  # forward() returns probabilities (LinkNet3D) rather than logits
    notes: list[str] = field(default_factory=list)


def _with_out_channels(spec: dict, out_channels: int) -> dict:
    args = dict(spec.get("args") or {})
    args["out_channels"] = int(out_channels)
    return {"name": spec["name"], "args": args}


def _head_names(spec: dict) -> list[str]:
    """Parameter names whose shape changes with ``out_channels`` (two throwaway builds)."""
    state = torch.random.get_rng_state()
    try:
        a = build(_with_out_channels(spec, 2)).state_dict()
        b = build(_with_out_channels(spec, 3)).state_dict()
    finally:
        torch.random.set_rng_state(state)
    return [k for k in a if k not in b or a[k].shape != b[k].shape]


def _alternative_spec(card: dict, architecture: str, in_channels: int) -> dict:
    allowed = card.get("trainable_architectures") or []
    names = list(allowed) if isinstance(allowed, list) else list(allowed.keys())
    if architecture not in names:
        offered = ", ".join(names) if names else "none"
        raise PackageError(f"{card.get('id')}: cannot train a {architecture} from this model: its card allows only "
                           f"its own architecture {card['architecture'].get('name')} (trainable_architectures: "
                           f"{offered})")
    args = dict(_DEFAULT_ARGS.get(architecture, {}))
    if isinstance(allowed, dict):
        args.update(allowed.get(architecture) or {})
    args.setdefault("in_channels", in_channels)
    return {"name": architecture, "args": args}


def make_network(base: ModelPackage, n_classes: int, from_scratch: bool = False, architecture: str | None = None,
                 seed: int = 0, transfer: str = "all") -> TrainNetwork:
    """The base architecture (or ``architecture``, when the base card allows it) with a new head for
    ``n_classes + 1`` outputs (background first), base weights loaded except the head's.

    ``transfer``: ``"all"`` loads every fitting parameter but the head's; ``"encoder"`` loads only
    the encoder's (decoder and head start random). With deepbet, "all" needs the images at the
    voxel size it learnt at: at native 1 mm with a random head it collapsed to background on
    MRIcrop (see the trainer's ``TrainConfig.transfer``, ``spacing_mm`` and ``head_init``)."""
    if transfer not in ("all", "encoder"):
        raise ValueError(f"transfer must be 'all' or 'encoder', not {transfer!r}")
    if not base.trainable:
        raise PackageError(f"{base.id}: a {base.runtime_kind() or 'locked'} model cannot be fine-tuned "
                           "(only models rebuilt from safetensors can)")
    card = base.card
    base_spec = base.architecture()
    in_channels = int((card.get("input") or {}).get("channels") or (base_spec.get("args") or {}).get("in_channels", 1))
    notes = []
    same = architecture in (None, "", base_spec.get("name"))
    spec = base_spec if same else _alternative_spec(card, architecture, in_channels)
    spec = _with_out_channels(spec, n_classes + 1)
    import importlib.util

    missing = [m for m in _REQUIRES.get(spec["name"], ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise PackageError(f"{spec['name']} cannot run here: it needs the {', '.join(missing)} package (install it "
                           "into medvision's environment)")
    try:
        head = _head_names(spec)
        torch.manual_seed(seed)
        net = build(spec)
    except ImportError as exc:  # monai's optional dependencies (SwinUNETR needs einops)
        raise PackageError(f"{spec['name']} cannot be built here: {str(exc).splitlines()[0]} (install the missing "
                           "package into medvision's environment)") from exc
    pretrained: list[str] = []
    if same and not from_scratch:
        base_state = base.state_dict()
        own = net.state_dict()
        fit = {k: v for k, v in base_state.items() if k in own and k not in head and own[k].shape == v.shape}
        if transfer == "encoder":
            prefixes = encoder_prefixes(net)
            if not prefixes:
                raise PackageError(f"{spec['name']}: its encoder is not known, so only transfer='all' is possible")
            fit = {k: v for k, v in fit.items() if _is_encoder(k, prefixes)}
            notes.append("pretrained encoder only: decoder and head start from random weights")
        net.load_state_dict(fit, strict=False)
        pretrained = sorted(fit)
        skipped = [k for k in own if k not in fit and k not in head and k in base_state and transfer == "all"]
        if skipped:
            notes.append(f"{len(skipped)} parameters did not fit the base weights and start random: "
                         f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
    elif not same:
        notes.append(f"{spec['name']} starts from scratch: no pretrained weights for it exist offline")
    softmax_in = bool((card.get("output") or {}).get("in_network")) if same else False
    if hasattr(net, "logits"):  # medvision's own networks: forward = softmax(logits)
        softmax_in = True
    return TrainNetwork(net, spec, head, pretrained, softmax_in, notes)


def logits_function(net: nn.Module):
    """What to call for class scores before the softmax (LinkNet3D.logits, or the network itself)."""
    return net.logits if hasattr(net, "logits") else net


def encoder_prefixes(net: nn.Module) -> tuple[str, ...]:
    return _ENCODERS.get(type(net).__name__, ())


def _is_encoder(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def encoder_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The encoder's parameters (empty for an architecture whose encoder is not known: nothing is frozen)."""
    prefixes = encoder_prefixes(net)
    return [p for n, p in net.named_parameters() if _is_encoder(n, prefixes)]


def head_and_decoder_parameters(net: nn.Module) -> list[nn.Parameter]:
    """Every parameter outside the encoder: decoder and output head."""
    prefixes = encoder_prefixes(net)
    return [p for n, p in net.named_parameters() if not _is_encoder(n, prefixes)]


def encoder_modules(net: nn.Module) -> list[nn.Module]:
    prefixes = encoder_prefixes(net)
    return [m for n, m in net.named_children() if n in prefixes]


def size_multiple(net: nn.Module) -> int:
    """Spatial sizes the network needs to be multiples of (its total downsampling)."""
    return 32 if type(net).__name__ in ("LinkNet3D", "SwinUNETR", "UNETR") else 16
