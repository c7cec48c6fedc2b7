"""MONAI bundles (a folder, or the folder a bundle zip was unpacked to) as medvision packages.

The bundle's config is read as data (``@`` references and plain arithmetic, never code); its network,
preprocessing, inferer, postprocessing and labels are mapped onto a card, its state_dict becomes
``weights.safetensors`` (or its ``models/model.ts`` is kept as TorchScript)."""

from __future__ import annotations

import ast
import json
import operator
import os
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

from ...core.labels import PALETTE
from ..package import ModelPackage, PackageError, code_refusal, refuse_links, sha256_of
from .files import (
    finish_import,
    fitted_network,
    imported_by,
    is_torchscript,
    load_state_dict,
    save_safetensors,
    staged,
    utc_timestamp,
)

__all__ = ["import_monai_bundle", "bundle_config"]


def bundle_config(root: Path) -> Path | None:
    """The inference config of the MONAI bundle in ``root`` (None: ``root`` holds no bundle)."""
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        if (root / "configs" / name).is_file() and (root / "configs" / "metadata.json").is_file():
            return root / "configs" / name
    return None


def _read_config(path: Path) -> dict:
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            try:
                import yaml
            except ImportError as exc:
                raise PackageError(f"{path}: YAML bundle configs need PyYAML (pip install pyyaml), or convert "
                                   f"it to {path.with_suffix('.json').name}") from exc
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackageError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise PackageError(f"{path}: not a bundle config (a mapping was expected)")
    return data


class _Config:
    """A bundle config read as data: ``@id`` references and plain ``$`` arithmetic, never code."""

    _REF = re.compile(r"@([A-Za-z_]\w*(?:(?:::|#)\w+)*)")
    _OPS: ClassVar[dict] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                            ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
                            ast.Pow: operator.pow}

    def __init__(self, data: dict, path: Path) -> None:
        self.data = data
        self.path = path

    def lookup(self, ref: str, where: str):
        node: Any = self.data
        for part in re.split(r"::|#", ref):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise PackageError(f"{self.path.name}: {where} refers to @{ref}, which the config does not define")
        return node

    def value(self, v, where: str, depth: int = 0):
        """``v`` with references resolved to plain values; objects (``_target_``) and code are refused."""
        if depth > 32:
            raise PackageError(f"{self.path.name}: {where}: references loop")
        if isinstance(v, str) and v.startswith("@"):
            return self.value(self.lookup(v[1:], where), where, depth + 1)
        if isinstance(v, str) and v.startswith("$"):
            return self._expression(v[1:], where, depth)
        if isinstance(v, str) and v.startswith("%"):
            raise PackageError(f"{self.path.name}: {where}: macro {v!r} (another config file) is not understood")
        if isinstance(v, list | tuple):
            return [self.value(x, where, depth + 1) for x in v]
        if isinstance(v, dict):
            if "_target_" in v:
                raise PackageError(f"{self.path.name}: {where}: an object ({v['_target_']}) where medvision "
                                   "expects plain values is not understood")
            return {k: self.value(x, where, depth + 1) for k, x in v.items() if not str(k).startswith("_")}
        return v

    def _expression(self, text: str, where: str, depth: int):
        names: dict[str, Any] = {}

        def ref(m: re.Match) -> str:
            name = f"_ref{len(names)}"
            names[name] = self.value("@" + m.group(1), where, depth + 1)
            return name

        if len(text) > self.MAX_TEXT:
            raise PackageError(f"{self.path.name}: {where}: an expression of {len(text)} characters; medvision "
                               f"reads at most {self.MAX_TEXT}")
        try:
            tree = ast.parse(self._REF.sub(ref, text).strip(), mode="eval")
            if sum(1 for _ in ast.walk(tree)) > self.MAX_NODES:
                raise ValueError("too long")
            return self._eval(tree.body, names)
        except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError,
                MemoryError) as exc:
            raise PackageError(f"{self.path.name}: {where}: the expression ${text[:80]} is not understood ({exc}; "
                               "medvision evaluates only plain arithmetic on small numbers, lists and @references in "
                               "bundle configs, never code)") from exc

    #: bounds of what a config's ``$`` expression may compute: every step stays small and fast
    MAX_TEXT, MAX_NODES, MAX_INT_BITS, MAX_EXPONENT, MAX_ITEMS = 1000, 200, 128, 64, 10_000

    def _eval(self, node, names: dict):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
            return self._bounded(node.value)
        if isinstance(node, ast.Name) and node.id in names:
            return self._bounded(names[node.id])
        if isinstance(node, ast.Tuple | ast.List):
            return self._bounded([self._eval(e, names) for e in node.elts])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = self._eval(node.operand, names)
            if not _is_number(v):
                raise ValueError("not a number")
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in self._OPS:
            left, right = self._eval(node.left, names), self._eval(node.right, names)
            self._check_step(node.op, left, right)
            return self._bounded(self._OPS[type(node.op)](left, right))
        raise ValueError(f"{ast.dump(node)[:60]} is code")

    def _check_step(self, op, left, right) -> None:
        """Refuse a step before it runs when its result could be huge: sequences repeated (``'A' * 10**10``),
        powers with big exponents (``9**9**9``), arithmetic on anything but numbers (but ``+`` of lists or text)."""
        if isinstance(op, ast.Add) and isinstance(left, str | list) and type(left) is type(right):
            return
        if not (_is_number(left) and _is_number(right)):
            raise ValueError(f"{type(left).__name__} {type(op).__name__} {type(right).__name__} is not arithmetic")
        if isinstance(op, ast.Pow):
            if abs(right) > self.MAX_EXPONENT:
                raise ValueError(f"an exponent of {right} (at most {self.MAX_EXPONENT})")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * abs(right) > self.MAX_INT_BITS:
                raise ValueError(f"{left}**{right} is too large")

    def _bounded(self, value):
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int) and value.bit_length() > self.MAX_INT_BITS:
            raise ValueError("a number too large")
        if isinstance(value, str | list) and len(value) > self.MAX_ITEMS:
            raise ValueError(f"{len(value)} items or characters (at most {self.MAX_ITEMS})")
        return value


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _short(target: str) -> str:
    return str(target).rsplit(".", 1)[-1]


_IGNORED_PRE = {"LoadImage", "EnsureChannelFirst", "AddChannel", "EnsureType", "ToTensor", "CastToType",
                "ToDevice", "Identity", "CopyItems", "DeleteItems", "SelectItems", "ToNumpy", "ToMetaTensor"}
_NOTED_PRE = {"CropForeground", "SpatialPad", "DivisiblePad"}  # the inferer pads/crops anyway: close enough
_MAPPED_PRE = {"Orientation", "Spacing", "ScaleIntensityRange", "NormalizeIntensity", "ScaleIntensity",
               "ScaleIntensityRangePercentiles", "Resize"}
_INTERPOLATION = {"nearest": "nearest-exact", "nearest-exact": "nearest-exact", "bilinear": "trilinear",
                  "trilinear": "trilinear", "area": "area"}


def _transform_name(target: str, known: set[str]) -> str:
    name = _short(target)
    return name[:-1] if name.endswith("d") and name[:-1] in known else name


def _transforms(cfg: _Config, node, where: str) -> list[dict]:
    """The flat list of transform dicts of a Compose / list / @reference / "$@a + @b"."""
    if node is None:
        return []
    if isinstance(node, str) and node.startswith("@"):
        return _transforms(cfg, cfg.lookup(node[1:], where), where)
    if isinstance(node, str) and node.startswith("$") and re.fullmatch(r"\$\s*@[\w:#]+(\s*\+\s*@[\w:#]+)*\s*",
                                                                       node):
        return [t for ref in re.findall(r"@([\w:#]+)", node) for t in _transforms(cfg, cfg.lookup(ref, where),
                                                                                  where)]
    if isinstance(node, dict) and _short(node.get("_target_", "")) == "Compose":
        return _transforms(cfg, node.get("transforms"), where)
    if isinstance(node, dict) and "_target_" in node:
        return [node]
    if isinstance(node, list):
        return [t for item in node for t in _transforms(cfg, item, where)]
    raise PackageError(f"{cfg.path.name}: {where}: {str(node)[:80]!r} is not understood as a list of transforms")


def _applies_to(cfg: _Config, t: dict, key: str, where: str) -> bool:
    if "keys" not in t:
        return True  # an array transform
    keys = cfg.value(t["keys"], where)
    return key in ([keys] if isinstance(keys, str) else list(keys))


def _input_spec(cfg: _Config, transforms: list[dict], key: str, notes: list[str]) -> dict:  # noqa: C901 - one
    # branch per MONAI transform it understands: a table would hide what each one means
    spec: dict[str, Any] = {}
    unknown = []
    for t in transforms:
        name = _transform_name(t["_target_"], _IGNORED_PRE | _NOTED_PRE | _MAPPED_PRE)
        where = f"preprocessing {name}"
        if name in _IGNORED_PRE or t.get("_disabled_") is True or not _applies_to(cfg, t, key, where):
            continue
        if name in _NOTED_PRE:
            notes.append(f"bundle preprocessing {name} is not reproduced (sliding windows pad the image anyway)")
            continue

        def arg(k, default=None, t=t, where=where):
            return cfg.value(t.get(k, default), where)

        if name == "Orientation":
            code = str(arg("axcodes", ""))
            if len(code) != 3:
                raise PackageError(f"{cfg.path.name}: {where}: axcodes {code!r} is not understood")
            spec["orientation"] = code.upper()
        elif name == "Spacing":
            pixdim = arg("pixdim")
            pixdim = [pixdim] * 3 if isinstance(pixdim, int | float) else list(pixdim)
            if len(pixdim) != 3 or not all(isinstance(p, int | float) and p > 0 for p in pixdim):
                raise PackageError(f"{cfg.path.name}: {where}: pixdim {pixdim!r} is not understood "
                                   "(three spacings in mm expected)")
            spec["spacing_mm"] = [float(p) for p in pixdim]
        elif name == "Resize":
            spec["resize_to"] = [int(n) for n in arg("spatial_size")]
            spec["interpolation"] = _INTERPOLATION.get(str(arg("mode", "area")), "trilinear")
        elif name == "ScaleIntensityRange":
            b_min, b_max = arg("b_min"), arg("b_max")
            if (b_min, b_max) not in ((None, None), (0, 1)):
                raise PackageError(f"{cfg.path.name}: {where}: an output range [{b_min}, {b_max}] is not "
                                   "supported (medvision's CT window maps to [0, 1])")
            clip = bool(arg("clip", False))
            spec["normalization"] = {"kind": "ct", "low": float(arg("a_min")), "high": float(arg("a_max")),
                                     "clip": clip}
        elif name == "NormalizeIntensity":
            if arg("subtrahend") is not None or arg("divisor") is not None:
                raise PackageError(f"{cfg.path.name}: {where}: a fixed subtrahend/divisor is not supported")
            spec["normalization"] = {"kind": "zscore", "nonzero": bool(arg("nonzero", False))}
        elif name == "ScaleIntensity":
            if (arg("minv", 0.0), arg("maxv", 1.0)) != (0.0, 1.0) or arg("factor") is not None:
                raise PackageError(f"{cfg.path.name}: {where}: only a [0, 1] min-max scaling is supported")
            spec["normalization"] = {"kind": "minmax"}
        elif name == "ScaleIntensityRangePercentiles":
            if (arg("b_min"), arg("b_max")) != (0, 1) or not arg("clip", False) or arg("relative", False):
                raise PackageError(f"{cfg.path.name}: {where}: only percentiles mapped and clipped to [0, 1] are "
                                   "supported")
            spec["normalization"] = {"kind": "percentile", "low_quantile": float(arg("lower")) / 100,
                                     "high_quantile": float(arg("upper")) / 100}
        else:
            unknown.append(_short(t["_target_"]))
    if unknown:
        raise PackageError(f"{cfg.path.name}: preprocessing {', '.join(unknown)} is not understood by medvision's "
                           "importer (it maps Orientation, Spacing, Resize and intensity scaling)")
    spec.setdefault("normalization", {"kind": "none"})
    return spec


def _inference_spec(cfg: _Config) -> dict:
    node = cfg.data.get("inferer")
    if isinstance(node, str) and node.startswith("@"):
        node = cfg.lookup(node[1:], "inferer")
    if node is None or _short(node.get("_target_", "")) == "SimpleInferer":
        return {"mode": "whole"}
    name = _short(node.get("_target_", ""))
    if name not in ("SlidingWindowInferer", "SlidingWindowInfererAdapt"):
        raise PackageError(f"{cfg.path.name}: inferer {name} is not understood (SlidingWindowInferer or "
                           "SimpleInferer)")
    where = f"inferer {name}"
    roi = cfg.value(node.get("roi_size"), where)
    if not isinstance(roi, list) or len(roi) != 3 or not all(isinstance(n, int) and n > 0 for n in roi):
        raise PackageError(f"{cfg.path.name}: {where}: roi_size {roi!r} is not three sizes")
    return {"mode": "sliding_window", "sliding_window": {
        "roi_size": roi, "overlap": float(cfg.value(node.get("overlap", 0.25), where)),
        "blend": str(cfg.value(node.get("mode", "constant"), where)),
        "batch_size": int(cfg.value(node.get("sw_batch_size", 1), where))}}


def _output_spec(cfg: _Config, out_channels: int, notes: list[str]) -> tuple[dict, dict]:
    activation, argmax, threshold, post = None, False, None, {}
    for t in _transforms(cfg, cfg.data.get("postprocessing"), "postprocessing"):
        name = _short(t["_target_"]).removesuffix("d")
        where = f"postprocessing {name}"
        if name == "Activations":
            activation = ("softmax" if cfg.value(t.get("softmax", False), where) else
                          "sigmoid" if cfg.value(t.get("sigmoid", False), where) else activation)
        elif name == "AsDiscrete":
            argmax = argmax or bool(cfg.value(t.get("argmax", False), where))
            for k in ("threshold", "threshold_values", "logit_thresh"):
                v = cfg.value(t.get(k), where)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    threshold = float(v)
        elif name == "KeepLargestConnectedComponent":
            post["largest_component"] = True
        elif name == "FillHoles":
            post["fill_holes"] = True
        elif name not in ("Invert", "SaveImage", "CopyItems", "EnsureType", "ToDevice", "Lambda", "ToNumpy"):
            notes.append(f"bundle postprocessing {name} is not reproduced")
    if out_channels == 1:
        return {"activation": activation or "sigmoid", "in_network": False,
                "threshold": threshold if threshold is not None else 0.5, "channel": 0}, post
    if threshold is not None and not argmax and activation == "sigmoid":
        raise PackageError(f"{cfg.path.name}: the bundle thresholds {out_channels} sigmoid channels separately "
                           "(overlapping labels): not supported; medvision takes the argmax over channels")
    return {"activation": activation, "in_network": False}, post


def _labels(channel_def: dict, single: bool, channels: int) -> list[dict]:
    names = {int(k): str(v) for k, v in (channel_def or {}).items() if str(k).isdigit()}
    if single:
        first = names.get(0, "")
        pairs = [(1, names.get(1) if first.lower() in ("", "background", "bg") and names.get(1) else
                  first or "Label 1")]
    else:
        pairs = [(c, names.get(c) or f"Label {c}") for c in range(1, channels)]
    return [{"value": v, "name": n, "color": [*PALETTE[(v - 1) % len(PALETTE)], 255]} for v, n in pairs
            if n.lower() not in ("background", "bg")]


def _license(root: Path, meta: dict, staging: Path) -> tuple[str, str | None]:
    text = None
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "docs/LICENSE"):
        if (root / name).is_file():
            shutil.copyfile(root / name, staging / "LICENSE")
            text = (root / name).read_text(encoding="utf-8", errors="replace")
            break
    if meta.get("license"):
        return str(meta["license"]), "LICENSE" if text else None
    if text is None:
        return "not stated by the bundle", None
    if "Apache License" in text and "2.0" in text:
        return "Apache-2.0", "LICENSE"
    if "MIT License" in text:
        return "MIT", "LICENSE"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "see LICENSE")
    return first[:120], "LICENSE"


def import_monai_bundle(path: str | os.PathLike, *, source: str | os.PathLike | None = None,
                        name: str | None = None, trust_code: bool = False) -> ModelPackage:
    """A MONAI bundle folder (or the folder a bundle zip was unpacked to) as a checked package.

    A bundle whose network comes as TorchScript (``models/model.ts``) carries code: imported only with
    ``trust_code``, never loaded or run to import it. A bundle folder holding symbolic links is refused."""
    root = Path(path)
    config_path = bundle_config(root)
    if config_path is None:
        raise PackageError(f"{root}: not a MONAI bundle (configs/metadata.json and configs/inference.json needed)")
    refuse_links(root)
    try:
        meta = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackageError(f"{root / 'configs' / 'metadata.json'}: unreadable ({exc})") from exc
    cfg = _Config(_read_config(config_path), config_path)
    notes: list[str] = []

    net_def = cfg.data.get("network_def")
    if isinstance(net_def, str) and net_def.startswith("@"):
        net_def = cfg.lookup(net_def[1:], "network_def")
    if not isinstance(net_def, dict) or "_target_" not in net_def:
        raise PackageError(f"{config_path.name}: no network_def with a _target_: the network is not understood")
    target = str(net_def["_target_"])
    import monai.networks.nets as nets

    monai_name = _short(target) if target.count(".") == 0 or target.startswith("monai.networks.nets.") else None
    if monai_name is not None and not (hasattr(nets, monai_name) and monai_name[:1].isupper()):
        monai_name = None
    try:
        args = cfg.value({k: v for k, v in net_def.items() if not k.startswith("_")}, "network_def")
    except PackageError:
        if monai_name is not None or not (root / "models" / "model.ts").is_file():
            raise
        args = {}  # the bundle's own network, run from its TorchScript export
    dims = int(args.get("spatial_dims", 3))
    in_channels = int(args.get("in_channels", 1))
    if dims != 3:
        raise PackageError(f"{root.name}: a {dims}D network: medvision imports 3D bundles only")
    if in_channels != 1:
        raise PackageError(f"{root.name}: the network takes {in_channels} input channels (several images at once); "
                           "medvision feeds it one image")

    nd = meta.get("network_data_format") or {}
    inputs, outputs = nd.get("inputs") or {}, nd.get("outputs") or {}
    key = next(iter(inputs), "image")
    image_meta = inputs.get(key) or {}
    pred_meta = next(iter(outputs.values()), {}) if outputs else {}
    out_channels = int(args.get("out_channels", pred_meta.get("num_channels", 2)))

    input_spec = _input_spec(cfg, _transforms(cfg, cfg.data.get("preprocessing"), "preprocessing"), key, notes)
    inference = _inference_spec(cfg)
    output, post = _output_spec(cfg, out_channels, notes)
    labels = _labels(pred_meta.get("channel_def") or {}, out_channels == 1, out_channels)

    bundle = name or root.name
    bundle_id = re.sub(r"[^a-z0-9_.-]+", "_", bundle.lower()).strip("_") or "monai_bundle"
    with staged(bundle_id) as staging:
        card = _bundle_card(root, meta, staging, bundle, bundle_id, dict(
            target=target, monai_name=monai_name, args=args, input=input_spec, inference=inference, output=output,
            post=post, labels=labels, modality=str(image_meta.get("modality") or "").upper(), notes=notes,
            source=source, trust_code=trust_code))
        return finish_import(staging, card)


def _bundle_card(root: Path, meta: dict, staging: Path, bundle: str, bundle_id: str, found: dict) -> dict:
    monai_name, args, target = found["monai_name"], found["args"], found["target"]
    weights_pt, weights_ts = root / "models" / "model.pt", root / "models" / "model.ts"
    trainable = True
    if monai_name is not None and weights_pt.is_file():
        state = load_state_dict(weights_pt)
        architecture = {"name": f"monai.{monai_name}", "args": args}
        save_safetensors(fitted_network(architecture, state, root.name), staging / "weights.safetensors")
        weights = {"file": "weights.safetensors", "sha256": sha256_of(staging / "weights.safetensors")}
        source_weights = weights_pt
    elif weights_ts.is_file():
        if not is_torchscript(weights_ts):
            raise PackageError(f"{weights_ts}: not a TorchScript archive")
        if not found["trust_code"]:
            raise PackageError(code_refusal(f"{root.name}'s network (models/model.ts)"))
        architecture, trainable = {"name": "torchscript"}, False
        shutil.copyfile(weights_ts, staging / "model.ts")
        weights = {"file": "model.ts", "sha256": sha256_of(staging / "model.ts")}
        source_weights = weights_ts
    elif monai_name is None:
        raise PackageError(f"{root.name}: network {target} is the bundle's own code, which medvision does not run; "
                           "export the bundle to TorchScript (python -m monai.bundle ckpt_export) and import that")
    else:
        raise PackageError(f"{root.name}: no weights (models/model.pt or models/model.ts)")

    license_name, license_file = _license(root, meta, staging)
    if (root / "docs" / "README.md").is_file():
        shutil.copyfile(root / "docs" / "README.md", staging / "README.md")
    modality = found["modality"]
    description = str(meta.get("description") or meta.get("task") or "")
    if not trainable:
        description += " (TorchScript: contains code that runs with your rights; cannot be fine-tuned)"
    return {
        "format": "medvision-model", "format_version": 1,
        "id": bundle_id, "version": str(meta.get("version") or "0"),
        "name": str(meta.get("name") or bundle.replace("_", " ")),
        "task": "segmentation", "modality": {"MRI": "MR"}.get(modality, modality), "dims": 3,
        "description": description.strip(), "trainable": trainable, **({} if trainable else {"contains_code": True}),
        "architecture": architecture, "weights": weights,
        "input": found["input"], "inference": found["inference"], "output": found["output"],
        "postprocessing": found["post"], "labels": found["labels"],
        "license": license_name, **({"license_file": license_file} if license_file else {}),
        "attribution": "; ".join(str(meta[k]) for k in ("authors", "copyright") if meta.get(k)),
        "provenance": {
            "parent": None, "source": str(Path(found["source"] or root).resolve()), "format": "monai-bundle",
            "bundle": bundle, "bundle_version": meta.get("version"), "bundle_name": meta.get("name"),
            "monai_version": meta.get("monai_version"), "pytorch_version": meta.get("pytorch_version"),
            "source_weights": str(source_weights.relative_to(root)), "source_weights_sha256": sha256_of(source_weights),
            "data_source": meta.get("data_source"), "metrics": meta.get("eval_metrics"),
            "intended_use": meta.get("intended_use"), "references": meta.get("references"),
            "created": utc_timestamp(), "imported_by": imported_by(), "notes": found["notes"],
        },
    }

