"""``medvision explain``: why a model labelled a region: a saliency map (Grad-CAM, integrated gradients,
occlusion) written as a float volume on the image's grid, with the randomisation check on request."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .cli_common import add_image_arguments, fail

__all__ = ["add_parser", "parse_box"]


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="a saliency map: what in the image made a model label a region")
    p.add_argument("input", help="the image: DICOM folder, zip or file; NIfTI/NRRD/MHA file")
    p.add_argument("--model", required=True, help="a segmentation model's id (see `medvision models list`)")
    p.add_argument("--label", help="the label of the model's proposal to explain (its name)")
    p.add_argument("--box", metavar="z0:z1,y0:y1,x0:x1",
                   help="a box of the image (voxel indices of its arrays, ends excluded): with --label, the label "
                        "inside it; alone, the label the model gives most there")
    p.add_argument("--method", choices=("gradcam", "ig", "occlusion"), default="gradcam",
                   help="gradcam: where the network's deepest decoder layer looked (fast, coarse); ig: integrated "
                        "gradients, each voxel's share of the score (signed); occlusion: the score's drop when a "
                        "patch is hidden (slow)")
    p.add_argument("--layer", help="gradcam: the layer (a module name of the network)")
    p.add_argument("-o", "--output", required=True, metavar="MAP.nii.gz|FOLDER",
                   help="the map: .nii.gz, .nii, .nrrd or .mha (with MAP.json saying what it is), or a new folder: a "
                        "derived DICOM series on the image's (DICOM input), each slice pointing at its source, so "
                        "that it goes to a PACS with the image")
    p.add_argument("--sanity", action="store_true", help="run the model-parameter randomisation check; exit 3 when "
                                                         "the map fails it")
    add_image_arguments(p, "the frame of a 4D series (1 = the first)")
    p.set_defaults(func=_cmd_explain)


def parse_box(text: str) -> tuple[slice, slice, slice]:
    """"z0:z1,y0:y1,x0:x1" -> slices; ValueError with the reason."""
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"--box {text}: give three ranges z0:z1,y0:y1,x0:x1")
    out = []
    for part in parts:
        a, sep, b = part.partition(":")
        if not sep:
            raise ValueError(f"--box {text}: {part!r} is not a range start:end")
        try:
            lo, hi = int(a), int(b)
        except ValueError as exc:
            raise ValueError(f"--box {text}: {part!r} is not a range of whole numbers") from exc
        if lo < 0 or hi <= lo:
            raise ValueError(f"--box {text}: {part!r} is empty or negative")
        out.append(slice(lo, hi))
    return out[0], out[1], out[2]


def _cmd_explain(args) -> int:
    from .ai.explain.job import ExplainError, ExplainOptions, explain_job
    from .ai.package import PackageError, Registry
    from .cli_common import derived_output_problem, load_input, run_with_progress, write_derived_dicom
    from .core.volume import Volume
    from .io.derived import write_synthetic_volume
    from .io.volumes import is_volume_file

    out = Path(args.output)
    as_dicom = not is_volume_file(out)
    problem = derived_output_problem(out)
    if problem:
        return fail(problem)
    try:
        box = parse_box(args.box) if args.box else None
        package = Registry().get(args.model)
        volume = load_input(args.input, args.series, args.quiet)
        frame = volume.frame(args.frame - 1) if volume.is_4d else volume
        if box is not None and any(s.start >= n for s, n in zip(box, frame.shape[-3:], strict=True)):
            return fail(f"--box {args.box}: outside the image ({' x '.join(map(str, frame.shape[-3:]))} voxels, "
                        "z, y, x)")
        options = ExplainOptions(method=args.method, label=args.label, box=box, layer=args.layer,
                                 sanity=args.sanity, device=args.device, frame=args.frame - 1)
        result = run_with_progress(explain_job(package, volume, options), args.quiet)
    except (ExplainError, PackageError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    what = {"gradcam": f"Grad-CAM at layer {result.layer}", "ig": "integrated gradients",
            "occlusion": "occlusion sensitivity"}[result.method]
    derivation = f"AI saliency map ({package.id} {package.version}): {what} for label {result.label!r}"
    if as_dicom:
        if write_derived_dicom(volume, frame, result.map, out, args.frame, derivation=derivation,
                               description=f"AI saliency map ({package.id} {package.version}, {result.method})"):
            return 2
    else:
        write_synthetic_volume(Volume(result.map, frame.affine, frame.frame_of_reference_uid, {}), out,
                               derivation=derivation, Source=str(args.input), Model=package.id,
                               ModelVersion=package.version, Method=result.method, Label=result.label,
                               Layer=result.layer, Sanity=result.check.summary() if result.check else None)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    inside = np.abs(result.map)
    print(f"{what} for {result.label!r} ({result.region_voxels} voxels on the model's grid) -> {out}: peak "
          f"{float(inside.max()):.3g}; {result.seconds.get('total', 0):.1f} s")
    if result.completeness_error is not None:
        print(f"completeness: the attributions sum to the score's change within "
              f"{100 * result.completeness_error:.1f} % ({result.steps} steps)")
    if result.check is not None:
        print(f"randomisation check: {result.check.summary()}")
        if not result.check.passed:
            return 3
    return 0
