"""``medvision infer`` and ``medvision models``: local models from the command line.

    medvision infer --model ID INPUT -o OUT.nii.gz [--device cpu|cuda] [--tta] [--uncertainty U.nii.gz]
    medvision models list | show ID [--json] | import PATH [--card CARD.json] [--replace]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    p = sub.add_parser("infer", help="run a model on an image (DICOM folder/file, NIfTI, NRRD ...) and write "
                                     "its labels")
    p.add_argument("input", help="the image: DICOM folder, zip or file; NIfTI/NRRD/MHA file")
    p.add_argument("--model", required=True, help="model id (see `medvision models list`)")
    p.add_argument("-o", "--output", required=True, help="labels to write: .nii.gz/.nrrd (+ JSON table) or .dcm "
                                                         "(DICOM SEG; needs a DICOM input)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: "
                                                                                   "CUDA when present)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (flips), averaged")
    p.add_argument("--uncertainty", metavar="OUT.nii.gz", help="also write a voxel-wise uncertainty map")
    p.add_argument("--series", help="series when INPUT holds several")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser("models", help="list, show or import model packages")
    msub = p.add_subparsers(dest="models_command", required=True)
    q = msub.add_parser("list", help="the models this installation can run")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_models_list)
    q = msub.add_parser("show", help="a model's card")
    q.add_argument("id")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_models_show)
    q = msub.add_parser("import", help="import a model into the user's models: a medvision package (folder or "
                                       ".zip), a MONAI bundle (folder or .zip), TorchScript (.ts/.pt), ONNX "
                                       "(.onnx) or a state_dict (.pt/.pth) with a card")
    q.add_argument("path", help="the package, bundle or model file")
    q.add_argument("--card", metavar="CARD.json",
                   help="the card of a TorchScript, ONNX or state_dict file that has no <name>.json or model.json "
                        "beside it: id, labels, input orientation, spacing and normalization, output activation "
                        "(and, for a state_dict, its architecture); packages and bundles bring their own")
    q.add_argument("--replace", action="store_true", help="replace an installed package of the same version")
    q.set_defaults(func=_cmd_models_import)


def _fail(message: str) -> int:
    print(f"medvision: {message}", file=sys.stderr)
    return 2


def _cmd_infer(args) -> int:
    from .ai.engine import InferenceOptions, infer_job
    from .ai.package import PackageError, Registry
    from .cli import _run
    from .io.api import load_job
    from .io.labels import save_labels
    from .io.volumes import write_volume

    try:
        package = Registry().get(args.model)
        volume = _run(load_job(args.input, series=args.series) if args.series else load_job(args.input),
                      args.quiet)
        if isinstance(volume, list):
            volume = volume[0]
        for warning in package.suitability(volume):
            print(f"warning: {warning}", file=sys.stderr)
        options = InferenceOptions(device=args.device, tta=args.tta, uncertainty=bool(args.uncertainty))
        result = _run(infer_job(package, volume, options), args.quiet)
    except (PackageError, RuntimeError, ValueError) as exc:
        return _fail(str(exc))
    out = args.output
    if out.lower().endswith(".dcm"):
        from .io.seg import write_seg

        write_seg(result.labels, volume, out, series_description=f"{package.name} {package.version}")
    else:
        save_labels(result.labels, out)
    if args.uncertainty:
        from .core.volume import Volume

        write_volume(Volume(result.uncertainty, volume.affine, None, {}), args.uncertainty)
    if not args.quiet:
        counts = {la.name: int((result.labels.array == la.value).sum()) for la in result.labels.table}
        ml = result.labels.voxel_volume_ml()
        found = ", ".join(f"{n} {c * ml:.1f} mL" for n, c in counts.items())
        print(f"{package.id} on {result.device}: {found}; {result.seconds['total']:.1f} s "
              f"(inference {result.seconds['inference']:.1f} s) -> {out}")
        for note in result.notes:
            print(note)
    return 0


def _cmd_models_list(args) -> int:
    from .ai.package import Registry

    registry = Registry()
    packages = registry.packages()
    if args.json:
        print(json.dumps([{"id": p.id, "version": p.version, "name": p.name, "task": p.card.get("task"),
                           "modality": p.modality, "shipped": p.shipped, "folder": str(p.folder)}
                          for p in packages], indent=1))
    else:
        for p in packages:
            print(p.summary())
        for problem in registry.problems:
            print(f"unusable: {problem}", file=sys.stderr)
        if not packages:
            print("no models installed")
    return 0


def _cmd_models_show(args) -> int:
    from .ai.package import PackageError, Registry

    try:
        package = Registry().get(args.id)
    except PackageError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(package.card, indent=1))
        return 0
    card = package.card
    print(package.summary())
    print(f"  {card.get('description', '')}")
    print(f"  folder: {package.folder}")
    print(f"  architecture: {card['architecture'].get('name')}  weights sha256 {card['weights']['sha256']}")
    print(f"  input: {json.dumps(card.get('input', {}))}")
    print(f"  licence: {card.get('license', '?')}; {card.get('attribution', '')}")
    prov = card.get("provenance") or {}
    if prov:
        print(f"  provenance: {json.dumps(prov)}")
    return 0


def _cmd_models_import(args) -> int:
    from .ai.importers import import_any
    from .ai.package import PackageError, Registry

    package = None
    try:
        package = import_any(args.path, card=args.card)
        installed = Registry().install(package, replace=args.replace)
    except PackageError as exc:
        return _fail(str(exc))
    finally:
        if package is not None:
            _remove_staging(package.folder, args.path)
    print(f"imported {installed.summary()} -> {installed.folder}")
    return 0


def _remove_staging(folder: Path, source: str) -> None:
    """Remove the staging folder ``import_any`` wrote ``folder`` into (``<cache>/imports/<name>``), now copied
    into the user's models or refused; a folder elsewhere, such as the user's own package, is left alone."""
    from .paths import cache_dir

    imports = (cache_dir() / "imports").resolve()
    try:
        staging = imports / Path(folder).resolve().relative_to(imports).parts[0]
    except (ValueError, IndexError):
        return  # not staged: the user's own folder (or the imports folder itself)
    source_path = Path(source).resolve()
    if source_path == staging or staging in source_path.parents:
        return  # the user pointed at this folder themselves
    shutil.rmtree(staging, ignore_errors=True)
