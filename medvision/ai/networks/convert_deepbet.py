"""Convert deepbet 1.0.2's TorchScript networks into the medvision package ``deepbet-t1-brain``.

Usage::

    python -m medvision.ai.networks.convert_deepbet SRC_DIR OUT_DIR

``SRC_DIR`` holds deepbet's ``model.pt`` and ``bbox_model.pt`` (the names in the wheel's
``data/models``; ``deepbet-1.0.2-model.pt`` and ``deepbet-1.0.2-bbox_model.pt`` are found too) and
its licence (``LICENSE`` or ``deepbet-LICENSE``). ``OUT_DIR`` is the package folder written:
``weights.safetensors`` (segmenter), ``localizer.safetensors`` (bounding-box network),
``model.json``, ``LICENSE`` (deepbet's, verbatim) and ``README.md``.

A one-time importer of a third-party format: the TorchScript files are read with
``torch.jit.load`` here only; medvision itself loads the safetensors into ``LinkNet3D``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from ...core.atomic import write_bytes, write_via
from ..package import sha256_of
from .deepbet import LinkNet3D

PACKAGE_ID = "deepbet-t1-brain"
VERSION = "1.0.2"
ARCHITECTURE = {
    "name": "deepbet.LinkNet3D",
    "args": {"in_channels": 1, "out_channels": 2, "channels": [16, 32, 64, 128]},
}
SOURCES = {
    "segmenter": ("model.pt", "deepbet-1.0.2-model.pt"),
    "localizer": ("bbox_model.pt", "deepbet-1.0.2-bbox_model.pt"),
    "license": ("LICENSE", "deepbet-LICENSE"),
}
MAX_ABS_DIFF = 1e-4
ATTRIBUTION = (
    "deepbet 1.0.2 by Lukas Fisch et al. (wwu-mmll, University of Münster), MIT licence. Paper: Fisch L, "
    "Zumdick S, Barkhau C, et al. deepbet: Fast brain extraction of T1-weighted MRI using Convolutional Neural "
    "Networks. Computers in Biology and Medicine 179 (2024) 108845, doi:10.1016/j.compbiomed.2024.108845."
)
DESCRIPTION = (
    "Brain extraction (skull stripping) of T1-weighted MRI: deepbet's two networks converted to safetensors. "
    "A localizer finds the brain on the whole image resized to 128^3; the segmenter then sees a box around it "
    "(10 % margin per side) resized to 256^3. Axes: the networks see the image in RAS canonical order, i.e. "
    "the array [x, y, z] that nibabel's as_closest_canonical gives, x increasing to the patient's right, "
    "y anterior, z superior. For a medvision Volume (array (z, y, x), LPS affine) that is "
    "volume.reoriented('RAS').array.transpose(2, 1, 0) (permutations and flips only, no resampling); "
    "the mask goes back the same way. Intensities: 0.5/99.5 % quantiles of the 128^3 localizer input "
    "scale the image to 0..1 (clipped), then each network input is standardised and mapped to "
    "0.226 * z + 0.449. Reference pipeline: medvision.ai.networks.deepbet_pipeline.brain_mask."
)


def _find(src: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (src / name).is_file():
            return src / name
    raise FileNotFoundError(f"none of {', '.join(names)} in {src}")


def _save_weights(module: torch.nn.Module, path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_via(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt",
                                                                      "architecture": ARCHITECTURE["name"]}))


def convert_network(path: Path, check_shape: tuple[int, int, int] = (96, 96, 96)) -> tuple[LinkNet3D, float]:
    """The eager network holding a deepbet TorchScript file's weights, and the max output difference."""
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": fine for a one-time importer
        warnings.simplefilter("ignore", DeprecationWarning)
        original = torch.jit.load(str(path), map_location="cpu").eval()
    eager = LinkNet3D(**ARCHITECTURE["args"]).eval()
    eager.load_state_dict(original.state_dict(), strict=True)
    x = torch.randn((1, 1, *check_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((original(x) - eager(x)).abs().max())
    if not diff < MAX_ABS_DIFF:
        raise RuntimeError(f"{path}: the eager network differs from the TorchScript one by {diff:g}")
    return eager, diff


def card(weights_sha256: str, localizer_sha256: str, created: str) -> dict:
    """The package's model.json."""
    return {
        "format": "medvision-model",
        "format_version": 1,
        "id": PACKAGE_ID,
        "version": VERSION,
        "name": "deepbet T1 brain extraction",
        "task": "segmentation",
        "modality": "MR",
        "sequence": "T1",
        "body_part": "brain",
        "dims": 3,
        "description": DESCRIPTION,
        "architecture": ARCHITECTURE,
        "weights": {"file": "weights.safetensors", "sha256": weights_sha256},
        "localizer": {
            "architecture": ARCHITECTURE,
            "weights": {"file": "localizer.safetensors", "sha256": localizer_sha256},
            "input_shape": [128, 128, 128],
            "margin": 0.1,
            "threshold": 0.5,
            "channel": 1,
        },
        "input": {
            "channels": 1,
            "orientation": "RAS",
            "resize_to": [256, 256, 256],
            "interpolation": "nearest-exact",
            "spacing_mm": None,
            "normalization": {
                "kind": "deepbet",
                "low_quantile": 0.005,
                "high_quantile": 0.995,
                "mean": 0.449,
                "std": 0.226,
                "quantiles_from": "localizer_input",
            },
        },
        "output": {"activation": "softmax", "in_network": True, "channel": 1, "threshold": 0.5},
        "postprocessing": {"largest_component": True, "fill_holes": True},
        "inference": {"mode": "whole", "sliding_window": None},
        "labels": [{"value": 1, "name": "brain", "color": [255, 160, 60, 255]}],
        # an adult brain (cerebrum, cerebellum, brain stem) measures about 0.9-1.7 L; wider bounds
        # so that only a result no head can have is flagged (a CT or a body MR given to the model)
        "plausibility": {"volume_ml": {"brain": [600, 2200]}, "extent_mm": {"brain": 220}},
        "license": "MIT",
        "license_file": "LICENSE",
        "attribution": ATTRIBUTION,
        "provenance": {
            "parent": None,
            "source": "deepbet 1.0.2 (PyPI wheel) data/models/model.pt and bbox_model.pt, TorchScript",
            "converted_by": "medvision.ai.networks.convert_deepbet",
            "created": created,
            "training_data": "as published by the deepbet authors",
            "metrics": {},
        },
    }


README = """\
# deepbet T1 brain extraction (`deepbet-t1-brain`)

Brain extraction (skull stripping) of T1-weighted MRI with the networks of **deepbet 1.0.2**
by Lukas Fisch et al. (https://github.com/wwu-mmll/deepbet), released under the MIT licence
(see `LICENSE`, deepbet's licence text, verbatim).

Paper: Lukas Fisch, Stefan Zumdick, Carlotta Barkhau, Daniel Emden, Jan Ernsting, Ramona Leenings,
Kelvin Sarink, Nils R. Winter, Benjamin Risse, Udo Dannlowski, Tim Hahn. *deepbet: Fast brain
extraction of T1-weighted MRI using Convolutional Neural Networks.* Computers in Biology and
Medicine 179 (2024) 108845, https://doi.org/10.1016/j.compbiomed.2024.108845

## What was converted, and how

- `weights.safetensors`: deepbet's segmenter (`data/models/model.pt` in the deepbet 1.0.2 wheel).
- `localizer.safetensors`: deepbet's bounding-box network (`data/models/bbox_model.pt`).

Both are TorchScript files of one architecture, a 3D LinkNet with instance normalisation.
`medvision.ai.networks.deepbet.LinkNet3D` rebuilds it as an eager PyTorch module whose parameter
names equal the TorchScript ones; `medvision.ai.networks.convert_deepbet` loaded each TorchScript
file, copied its `state_dict()` into `LinkNet3D` (`strict=True`), checked that both give the same
softmax output on a random input (largest absolute difference {seg_diff:.3g} for the segmenter,
{loc_diff:.3g} for the localizer; required < 1e-4) and saved the tensors as safetensors. No
weight was changed; the sha256 of each file is in `model.json`.

The pre- and post-processing (RAS canonical axes, 128^3 localizer, box with 10 % margin, 256^3
segmenter, deepbet's intensity normalisation, largest component, hole filling) are described in
`model.json` and implemented in `medvision.ai.networks.deepbet_pipeline.brain_mask`, which gives
the same masks as deepbet's own `BrainExtraction`.

Converted {created}.
"""


def convert(src: Path, out: Path, created: str | None = None) -> dict:
    """Write the package folder ``out`` from deepbet's files in ``src``; returns the card."""
    src, out = Path(src), Path(out)
    seg_path, loc_path, lic_path = (_find(src, SOURCES[k]) for k in ("segmenter", "localizer", "license"))
    segmenter, seg_diff = convert_network(seg_path)
    localizer, loc_diff = convert_network(loc_path)
    out.mkdir(parents=True, exist_ok=True)
    _save_weights(segmenter, out / "weights.safetensors")
    _save_weights(localizer, out / "localizer.safetensors")
    created = created or datetime.date.today().isoformat()
    doc = card(sha256_of(out / "weights.safetensors"), sha256_of(out / "localizer.safetensors"), created)
    write_bytes(out / "LICENSE", lic_path.read_bytes())
    write_bytes(out / "model.json", (json.dumps(doc, indent=2) + "\n").encode())
    write_bytes(out / "README.md", README.format(seg_diff=seg_diff, loc_diff=loc_diff, created=created).encode())
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medvision.ai.networks.convert_deepbet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("src", type=Path, help="folder with deepbet's model.pt, bbox_model.pt and LICENSE")
    parser.add_argument("out", type=Path, help="package folder to write (e.g. models/deepbet-t1-brain)")
    parser.add_argument("--created", help="ISO date for the card's provenance (default: today)")
    args = parser.parse_args(argv)
    try:
        doc = convert(args.src, args.out, args.created)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({doc['id']} {doc['version']}): weights {doc['weights']['sha256'][:12]}..., "
          f"localizer {doc['localizer']['weights']['sha256'][:12]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
