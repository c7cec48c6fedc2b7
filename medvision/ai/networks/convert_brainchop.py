"""Convert brainchop's pretrained MeshNet models (TensorFlow.js layers format) into medvision packages.

Usage::

    python -m medvision.ai.networks.convert_brainchop SRC_DIR MODELS_DIR [--only ID ...]

``SRC_DIR`` is a copy of brainchop's ``public/models`` (one folder per model with ``model.json``,
its ``.bin`` weights, ``labels.json``/``colormap.json``) with brainchop's ``LICENSE``.
For each model of :data:`MODELS` it writes ``MODELS_DIR/<id>/``: ``weights.safetensors``
(and ``pre_model.safetensors`` where brainchop runs a brain-mask model first), ``model.json``,
``LICENSE`` (brainchop's MIT text, verbatim) and ``README.md``.

The tfjs topology (Keras ``Conv3D`` layers with ``padding="same"``, ``Activation`` layers, optional
``BatchNormalization``) is read into :class:`~medvision.ai.networks.meshnet.MeshNet`'s arguments;
the float32 weights are read from the ``.bin`` files in the order of the weights manifest, the
kernels moved from Keras' ``(kd, kh, kw, in, out)`` to PyTorch's ``(out, in, kd, kh, kw)``.
Nothing else is changed. ``benchmarks/bench_brainchop.py`` shows the result equals TensorFlow.js.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ...core.atomic import write_bytes, write_via
from ..package import sha256_of
from .meshnet import MeshNet

__all__ = ["read_tfjs", "convert_model", "convert", "MODELS", "ConversionError"]

ATTRIBUTION = (
    "brainchop by Mohamed Masoud, Pratyush Reddy, Farfalla Hu, Sergey Plis et al. (neuroneural/brainchop, "
    "TReNDS center), MIT licence. Paper: Masoud M, Hu F, Plis S. Brainchop: In-browser MRI volumetric "
    "segmentation and rendering. Journal of Open Source Software 8(83) (2023) 5098, doi:10.21105/joss.05098. "
    "MeshNet: Fedorov A, et al. End-to-end learning of brain tissue segmentation from imperfect labeling. "
    "IJCNN 2017, doi:10.1109/IJCNN.2017.7966333."
)


class ConversionError(ValueError):
    """A tfjs model this converter does not understand (not a MeshNet, quantised weights...)."""


#: brainchop's run settings (brainchop-parameters.js, the web app's inferenceModelsList) per package
MODELS: dict[str, dict] = {
    "brainchop-mindgrab": {
        "source": "mindgrab",
        "brainchop_entry": 16,
        "name": "brainchop MindGrab brain extraction (omnimodal)",
        "description": "Brain extraction (skull stripping) with brainchop's MindGrab MeshNet (15 channels, 25 "
                       "dilated layers, each channel standardised after every convolution as brainchop does for its "
                       "'_gn' layers, GELU), which its authors made for T1, T2, FLAIR, DWI, EPI, MRA, PDw, CT and "
                       "PET alike.",
        "modality": "",
        "sequence": "",
        "normalization": {"kind": "minmax"},
        "crop": {"threshold": 0.5, "padding": 20},
        "labels": {1: "brain mask"},
        "plausibility": {"volume_ml": {"brain mask": [600, 2200]}, "extent_mm": {"brain mask": 220}},
        "checked": ["MNI152 T1 resampled to 1.75 mm, 1 x 1 x 3, 1 x 1 x 5 and 0.78 x 0.78 x 6.5 mm (slab-averaged): "
                    "1898-1915 mL",
                    "brain1_image (0.78 x 0.78 x 6.5 mm post-contrast T1): 1859 mL"],
    },
    "brainchop-gwm": {
        "source": "model20chan3cls",
        "brainchop_entry": 2,
        "name": "brainchop grey and white matter (T1)",
        "description": "Grey and white matter of a T1-weighted MRI with brainchop's 'Tissue GWM (High Acc)' MeshNet "
                       "(20 channels, 9 dilated layers, ELU): cerebral and cerebellar grey matter together, white "
                       "matter together.",
        "modality": "MR",
        "sequence": "T1",
        "normalization": {"kind": "quantile", "low_quantile": 0.05, "high_quantile": 0.95},
        "crop": {"threshold": 0.2, "padding": 0},
        # adult brains: grey matter about 0.5-0.9 L, white matter 0.35-0.65 L; this model counts deep grey matter
        # and the brain stem as white matter (1.0 L on the MNI152 template), so wider bounds
        "plausibility": {"volume_ml": {"Grey Matter": [350, 1200], "White Matter": [250, 1100]}},
        "checked": ["MNI152 T1 (1 mm): grey matter 736 mL, white matter 1001 mL; Dice against the template's "
                    "probability maps (> 0.5) 0.735 and 0.753",
                    "the same T1 resampled to 1.75 mm, 1 x 1 x 3, 1 x 1 x 5 and 0.78 x 0.78 x 6.5 mm (slab-averaged): "
                    "grey matter 684-717 mL, white matter 1032-1057 mL: slice thickness alone does not break it",
                    "FAILS on brain1_image, a post-contrast 2D T1 (0.78 x 0.78 x 6.5 mm, bright fat and vessels): "
                    "grey matter 4 mL, white matter 0.4 mL, also with the intensities clipped at the 95th to 99th "
                    "percentile; medvision flags the result as implausible"],
    },
    "brainchop-subcortical-18": {
        "source": "model30chan18cls",
        "brainchop_entry": 4,
        "name": "brainchop 17 brain structures (T1)",
        "description": "Cerebral white matter and cortex, lateral and inferior lateral ventricles, cerebellar white "
                       "matter and cortex, thalamus, caudate, putamen, pallidum, third and fourth ventricles, brain "
                       "stem, hippocampus, amygdala, accumbens area and ventral diencephalon (left and right together: "
                       "FreeSurfer's aseg labels) with brainchop's 'Subcortical + GWM (High Mem, Fast)' MeshNet (30 "
                       "channels, 9 dilated layers, ELU); its authors call it robust to scan quality, including "
                       "clinical scans.",
        "modality": "MR",
        "sequence": "T1",
        "normalization": {"kind": "minmax"},
        "crop": {"threshold": 0.2, "padding": 0},
        # both hemispheres together, adult ranges widened (FreeSurfer norms: thalamus ~14 mL, caudate ~7,
        # putamen ~10, hippocampus ~8, lateral ventricles 7-60 and more with age)
        "plausibility": {"volume_ml": {
            "Cerebral-White-Matter": [250, 850], "Cerebral-Cortex": [300, 900], "Lateral-Ventricle": [2, 200],
            "Cerebellum-Cortex": [60, 180], "Cerebellum-White-Matter": [10, 60], "Thalamus": [6, 25],
            "Caudate": [3, 16], "Putamen": [4, 20], "Pallidum": [1, 8], "Hippocampus": [3, 14],
            "Amygdala": [1, 7], "Brain-Stem": [10, 45]}},
        "checked": ["MRIcrop (hand-drawn labels): Dice caudate 0.76, lateral ventricles 0.80, hippocampus 0.32",
                    "FAILS on brain1_image, a post-contrast 2D T1 (0.78 x 0.78 x 6.5 mm): cortex 316 mL, cerebral "
                    "white matter 179 mL, most deep structures absent; medvision flags the result as implausible"],
    },
    "brainchop-dkt-104": {
        "source": "model21_104class",
        "brainchop_entry": 14,
        "name": "brainchop 104 brain regions, Desikan-Killiany (T1)",
        "description": "104 regions of a T1-weighted MRI: FreeSurfer's aparc+aseg, the Desikan-Killiany cortical "
                       "atlas on each hemisphere plus subcortical structures, with brainchop's 'Aparc+Aseg 104 "
                       "(High Mem, Fast)' MeshNet (21 channels, 8 dilated layers, ReLU). As brainchop runs it, a "
                       "light grey/white-matter network (model5_gw_ae, 5 channels) first finds the brain on the "
                       "whole conformed image; the atlas network then sees only the box around it.",
        "modality": "MR",
        "sequence": "T1",
        "normalization": {"kind": "minmax"},
        "crop": {"threshold": 0.0, "padding": 0},
        "pre_model": {"source": "model5_gw_ae", "brainchop_entry": 1, "normalization": {"kind": "minmax"}},
        # per hemisphere; FreeSurfer adults: cerebral white matter 200-330 mL a side (the MNI template, larger,
        # 438/444 with this model), thalamus 6-9 mL, brain stem about 20 mL; the two sides within 1.5 times
        "plausibility": {
            "volume_ml": {"Left-Cerebral-White-Matter": [120, 550], "Right-Cerebral-White-Matter": [120, 550],
                          "Left-Thalamus-Proper*": [3, 13], "Right-Thalamus-Proper*": [3, 13],
                          "Brain-Stem": [10, 45]},
            "symmetry": {"max_ratio": 1.5, "pairs": [
                ["Left-Cerebral-White-Matter", "Right-Cerebral-White-Matter"], ["ctx-lh-*", "ctx-rh-*"],
                ["Left-Thalamus-Proper*", "Right-Thalamus-Proper*"]]}},
        "checked": ["MNI152 T1 (1 mm): cerebral white matter 438/444 mL (left/right), cortex 234/252 mL, thalamus "
                    "9.1/8.7 mL, brain stem 25 mL",
                    "FAILS on brain1_image, a post-contrast 2D T1 (0.78 x 0.78 x 6.5 mm): left white matter 697 mL "
                    "against 202 mL on the right, right thalamus absent; medvision flags the result as implausible"],
    },
}


def _layers(topology: dict) -> list[dict]:
    config = (topology.get("model_config") or topology).get("config")
    layers = config.get("layers") if isinstance(config, dict) else config
    if not isinstance(layers, list):
        raise ConversionError("the tfjs topology has no layer list")
    return layers


def _read_weights(folder: Path, doc: dict) -> dict[str, np.ndarray]:
    """The manifest's float32 tensors by name, read from the ``.bin`` files."""
    tensors: dict[str, np.ndarray] = {}
    for group in doc["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if spec.get("dtype", "float32") != "float32" or spec.get("quantization"):
                raise ConversionError(f"{folder}: {spec['name']} is not plain float32")
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            arr = np.frombuffer(data, "<f4", count, offset).reshape(spec["shape"])
            tensors[spec["name"]] = arr
            offset += 4 * count
        if offset != len(data):
            raise ConversionError(f"{folder}: the weights files hold {len(data)} bytes, the manifest {offset}")
    return tensors


def _chain(folder: Path, doc: dict) -> tuple[list[dict], dict | None]:
    """The topology as MeshNet layers: the hidden convolutions (with their activation and norm) and the last one."""
    hidden: list[dict] = []
    pending = None
    for layer in _layers(doc["modelTopology"]):
        kind, cfg = layer["class_name"], layer["config"]
        if kind == "InputLayer":
            continue
        if kind == "Conv3D":
            if cfg.get("padding") != "same" or list(cfg.get("strides", [1, 1, 1])) != [1, 1, 1]:
                raise ConversionError(f"{folder}: {cfg['name']}: only stride-1 'same' convolutions are MeshNet's")
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise ConversionError(f"{folder}: {cfg['name']}: channels_first models are not supported")
            entry = {"name": cfg["name"], "filters": cfg["filters"], "kernel": cfg["kernel_size"],
                     "dilation": cfg["dilation_rate"], "bias": bool(cfg.get("use_bias", True)),
                     "activation": cfg.get("activation", "linear"), "norm": None}
            if pending is not None:
                hidden.append(pending)
            pending = entry
        elif kind == "Activation" and pending is not None and pending["activation"] == "linear":
            pending["activation"] = cfg["activation"]
        elif kind == "BatchNormalization" and pending is not None:
            pending["norm"] = {"name": cfg["name"], "eps": float(cfg.get("epsilon", 1e-3))}
        elif kind in ("Dropout", "SpatialDropout3D"):
            continue
        else:
            raise ConversionError(f"{folder}: layer {cfg.get('name')} ({kind}) is not part of a MeshNet")
    return hidden, pending


def _arguments(folder: Path, hidden: list[dict], output: dict | None, tensors: dict[str, np.ndarray]) -> dict:
    """MeshNet's constructor arguments for the chain (refusing what is not a MeshNet)."""
    if output is None or not hidden or output["kernel"] != [1, 1, 1]:
        raise ConversionError(f"{folder}: the model does not end with a 1x1x1 classifier after dilated layers")
    kernels = {tuple(h["kernel"]) for h in hidden}
    acts = {h["activation"] for h in hidden}
    widths = {h["filters"] for h in hidden}
    if len(kernels) != 1 or len(acts) != 1 or len(widths) != 1 or any(len(set(h["dilation"])) != 1 for h in hidden):
        raise ConversionError(f"{folder}: the hidden layers differ in kernel, width, activation or dilation per axis")
    kernel = next(iter(kernels))
    if len(set(kernel)) != 1:
        raise ConversionError(f"{folder}: anisotropic kernels are not supported")
    norms = {h["norm"] is not None for h in hidden}
    if len(norms) != 1:
        raise ConversionError(f"{folder}: batch normalisation on some layers only")
    in_channels = int(tensors[f"{hidden[0]['name']}/kernel"].shape[3])
    args = {"in_channels": in_channels, "out_channels": int(output["filters"]), "channels": int(next(iter(widths))),
            "dilations": [int(h["dilation"][0]) for h in hidden], "kernel_size": int(kernel[0]),
            "activation": next(iter(acts)), "bias": hidden[0]["bias"], "batch_norm": next(iter(norms))}
    if args["batch_norm"]:
        args["norm_eps"] = hidden[0]["norm"]["eps"]
    # brainchop standardises each channel after a convolution whose name ends in "_gn" (mindgrab's
    # GroupNorm, one channel per group, exported as a name and no layer); the classifier never
    flags = [str(h["name"]).endswith("_gn") for h in hidden]
    if str(output["name"]).endswith("_gn"):
        raise ConversionError(f"{folder}: {output['name']}: a normalised classifier is not MeshNet's")
    if any(flags):
        if args["batch_norm"]:
            raise ConversionError(f"{folder}: both batch normalisation and '_gn' layers")
        args["instance_norm"] = True if all(flags) else flags
    return args


def _state_dict(hidden: list[dict], output: dict, args: dict, tensors: dict[str, np.ndarray],
                folder: Path) -> dict[str, torch.Tensor]:
    """The PyTorch state dict (Keras kernels in PyTorch order); every tfjs weight must be used."""
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        used.add(name)
        return torch.from_numpy(np.array(tensors[name], dtype=np.float32))

    state: dict[str, torch.Tensor] = {}
    for i, h in enumerate(hidden):
        state[f"layers.{i}.conv.weight"] = take(f"{h['name']}/kernel").permute(4, 3, 0, 1, 2).contiguous()
        if h["bias"]:
            state[f"layers.{i}.conv.bias"] = take(f"{h['name']}/bias")
        if h["norm"] is not None:
            n = h["norm"]["name"]
            state[f"layers.{i}.norm.weight"] = take(f"{n}/gamma")
            state[f"layers.{i}.norm.bias"] = take(f"{n}/beta")
            state[f"layers.{i}.norm.running_mean"] = take(f"{n}/moving_mean")
            state[f"layers.{i}.norm.running_var"] = take(f"{n}/moving_variance")
            state[f"layers.{i}.norm.num_batches_tracked"] = torch.tensor(0)
    state["classifier.weight"] = take(f"{output['name']}/kernel").permute(4, 3, 0, 1, 2).contiguous()
    state["classifier.bias"] = take(f"{output['name']}/bias") if output["bias"] else torch.zeros(args["out_channels"])
    unused = sorted(set(tensors) - used)
    if unused:
        raise ConversionError(f"{folder}: weights not used by the MeshNet: {', '.join(unused[:5])}")
    return state


def read_tfjs(folder: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """A tfjs MeshNet folder -> (MeshNet arguments, PyTorch state dict, sha256 of model.json + weights)."""
    folder = Path(folder)
    doc = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    tensors = _read_weights(folder, doc)
    hidden, output = _chain(folder, doc)
    args = _arguments(folder, hidden, output, tensors)
    state = _state_dict(hidden, output, args, tensors, folder)
    MeshNet(**args).load_state_dict(state, strict=True)  # the names and shapes fit
    digest = sha256_of(folder / "model.json")
    return args, state, digest


def _label_table(folder: Path, names: dict[int, str] | None) -> list[dict]:
    cmap = json.loads((folder / "colormap.json").read_text(encoding="utf-8"))
    if names is None:
        if (folder / "labels.json").is_file():
            names = {int(k): str(v) for k, v in json.loads((folder / "labels.json").read_text("utf-8")).items()}
        else:
            names = dict(enumerate(cmap["labels"]))
    out = []
    for value in sorted(names):
        if value == 0:
            continue
        color = [int(cmap[c][value]) if value < len(cmap[c]) else 200 for c in ("R", "G", "B")]
        out.append({"value": value, "name": names[value], "color": [*color, 255]})
    return out


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    tensors = {k: v.contiguous() for k, v in state.items()}
    write_via(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt",
                                                                      "architecture": "meshnet.MeshNet"}))


def convert_model(package_id: str, src: Path, out: Path, created: str) -> dict:
    """Write the package ``out`` for ``package_id`` (a key of :data:`MODELS`) from brainchop's ``src``."""
    spec = MODELS[package_id]
    folder = src / spec["source"]
    args, state, source_sha = read_tfjs(folder)
    out.mkdir(parents=True, exist_ok=True)
    _save(state, out / "weights.safetensors")
    sources = {spec["source"]: source_sha}
    card = {
        "format": "medvision-model",
        "format_version": 1,
        "id": package_id,
        "version": "1.0",
        "name": spec["name"],
        "task": "segmentation",
        "modality": spec["modality"],
        "sequence": spec["sequence"],
        "body_part": "brain",
        "dims": 3,
        "description": spec["description"] + " Run as brainchop runs it (medvision.ai.networks.brainchop_pipeline): "
                       "the image conformed to 256^3 1 mm LIA uint8, normalised, cropped, the network, the largest "
                       "connected component of all labels, the labels back on the image's own grid by nearest "
                       "neighbour.",
        "architecture": {"name": "meshnet.MeshNet", "args": args},
        "weights": {"file": "weights.safetensors", "sha256": sha256_of(out / "weights.safetensors")},
        "input": {
            "channels": 1,
            "conform": {"shape": [256, 256, 256], "spacing_mm": 1.0, "orientation": "LIA",
                        "interpolation": "trilinear", "intensity": "uint8"},
            "normalization": spec["normalization"],
            "crop": spec["crop"],
            "axes": "conformed index [i, j, k] (brainchop's transposed [k, j, i] tensor)",
        },
        "inference": {"mode": "brainchop"},
        "output": {"activation": "softmax", "in_network": False},
        "postprocessing": {"largest_component_of_all_labels": True, "connectivity": 26},
        "labels": _label_table(folder, spec.get("labels")),
    }
    if spec.get("pre_model"):
        pre = spec["pre_model"]
        pre_args, pre_state, pre_sha = read_tfjs(src / pre["source"])
        _save(pre_state, out / "pre_model.safetensors")
        sources[pre["source"]] = pre_sha
        card["pre_model"] = {
            "architecture": {"name": "meshnet.MeshNet", "args": pre_args},
            "weights": {"file": "pre_model.safetensors", "sha256": sha256_of(out / "pre_model.safetensors")},
            "normalization": pre["normalization"],
            "mask": "argmax > 0 on the whole conformed image",
            "source": pre["source"],
        }
    if spec.get("plausibility"):
        card["plausibility"] = spec["plausibility"]
    card.update({
        "license": "MIT",
        "license_file": "LICENSE",
        "attribution": ATTRIBUTION,
        "provenance": {
            "parent": None,
            "source": f"brainchop public/models/{spec['source']} (TensorFlow.js layers model)",
            "source_sha256": sources,
            "brainchop_settings": f"brainchop-parameters.js inferenceModelsList id {spec['brainchop_entry']}",
            "converted_by": "medvision.ai.networks.convert_brainchop",
            "created": created,
            "training_data": "as published by the brainchop authors",
            "metrics": {},
        },
    })
    lic = src / "LICENSE"
    write_bytes(out / "LICENSE", lic.read_bytes())
    write_bytes(out / "model.json", (json.dumps(card, indent=1) + "\n").encode())
    write_bytes(out / "README.md", _readme(card, spec).encode())
    return card


def _readme(card: dict, spec: dict) -> str:
    pre = card.get("pre_model")
    labels = ", ".join(la["name"] for la in card["labels"][:20]) + (" ..." if len(card["labels"]) > 20 else "")
    norm = card["input"]["normalization"]
    crop = card["input"]["crop"]
    lines = [
        f"# {card['name']} (`{card['id']}`)",
        "",
        card["description"],
        "",
        f"Labels: {labels}.",
        "",
        "## Source and licence",
        "",
        f"The network is brainchop's `{spec['source']}` (https://github.com/neuroneural/brainchop, "
        "`public/models`), released under the MIT licence (`LICENSE`, brainchop's text, verbatim). " + ATTRIBUTION,
        "",
        "## What was converted, and how",
        "",
        f"`medvision.ai.networks.convert_brainchop` read the TensorFlow.js layers model (`model.json` and its "
        f"float32 `.bin` weights) into medvision's eager PyTorch MeshNet (`meshnet.MeshNet`: "
        f"{len(card['architecture']['args']['dilations'])} dilated 3^3 convolutions with "
        f"{card['architecture']['args']['channels']} channels, dilations {card['architecture']['args']['dilations']}, "
        f"{card['architecture']['args']['activation']}, then a 1^3 classifier), moving each kernel from Keras' "
        "(kd, kh, kw, in, out) to PyTorch's (out, in, kd, kh, kw); no weight was changed. The sha256 of the "
        "source `model.json` and of the safetensors are in `model.json`. `benchmarks/bench_brainchop.py` runs "
        "TensorFlow.js itself on the same inputs and compares the classes.",
        "",
        "## How it runs (as brainchop runs it)",
        "",
        f"brainchop-parameters.js entry {spec['brainchop_entry']}: the image conformed to 256^3 1 mm voxels (LIA, "
        f"trilinear, uint8), normalised by {norm['kind']}"
        + (f" ({norm['low_quantile']}/{norm['high_quantile']} quantiles, not clipped)" if norm["kind"] == "quantile"
           else " (not clipped)") + ", "
        + (f"the pre-model `{pre['source']}` run on the whole cube and its mask (argmax > 0) giving the box the "
           "network sees" if pre else
           (f"the box of the voxels above {crop['threshold']} x the maximum" if crop["threshold"] > 0
            else "the box of the voxels above 0"))
        + f", padded by {crop['padding']} zero voxels; the argmax; the largest 26-connected component of all "
        "labels together; the labels back on the image's own grid by nearest neighbour "
        "(`medvision.ai.networks.brainchop_pipeline`).",
        "",
        "## Checked on (benchmarks/bench_brainchop.py), and where it fails",
        "",
        *(f"- {line}" for line in spec.get("checked", [])),
        "",
        "Every result is checked against the card's `plausibility` section (adult volume ranges"
        + (", left/right symmetry" if "symmetry" in card.get("plausibility", {}) else "")
        + (", extents" if "extent_mm" in card.get("plausibility", {}) else "")
        + "); a result outside it is shown in red and the CLI exits with status 3.",
        "",
        f"Converted {card['provenance']['created']}.",
        "",
    ]
    return "\n".join(lines)


def convert(src: Path, out_dir: Path, only: list[str] | None = None, created: str | None = None) -> list[dict]:
    created = created or datetime.date.today().isoformat()
    cards = []
    for package_id in only or list(MODELS):
        if package_id not in MODELS:
            raise ConversionError(f"unknown package {package_id!r} (known: {', '.join(MODELS)})")
        cards.append(convert_model(package_id, Path(src), Path(out_dir) / package_id, created))
    return cards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medvision.ai.networks.convert_brainchop",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path, help="brainchop's models folder (one subfolder per model) with LICENSE")
    parser.add_argument("out", type=Path, help="where the package folders go (e.g. models)")
    parser.add_argument("--only", nargs="*", help="package ids to convert (default: all)")
    parser.add_argument("--created", help="ISO date for the cards' provenance (default: today)")
    args = parser.parse_args(argv)
    try:
        cards = convert(args.src, args.out, args.only, args.created)
    except (OSError, ConversionError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for card in cards:
        print(f"wrote {args.out / card['id']}: {card['architecture']['args']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
