"""``medvision inpaint``: fill a region of an image with an inpainting model and write the result as a
new, derived image (never over the original), with a JSON sidecar that says so."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .cli_common import add_image_arguments, fail

__all__ = ["add_parser", "train_inpainting", "inpainting_base"]


def add_parser(sub) -> None:
    p = sub.add_parser("inpaint", help="fill a region of an image with an inpainting model; writes a new image")
    p.add_argument("input", help="the image: DICOM folder, zip or file; NIfTI/NRRD/MHA file")
    p.add_argument("--model", required=True, help="an inpainting model's id (see `medvision models list`), or "
                                                  "medvision-fill-3d: the built-in fill (no network; a smooth 3D fill "
                                                  "with the image's grain copied from nearby tissue)")
    grain = p.add_mutually_exclusive_group()
    grain.add_argument("--grain", dest="texture", action="store_const", const=True, default=None,
                       help="copy the image's grain (noise) into the fill from nearby tissue of the same brightness "
                            "(the built-in fill's default)")
    grain.add_argument("--smooth", dest="texture", action="store_const", const=False,
                       help="leave the fill smooth (the lowest error; it shows as a smooth patch)")
    p.add_argument("--mask", help="the region to fill: a label file on the image (NIfTI/NRRD/MHA, DICOM SEG); every "
                                  "non-zero voxel is filled (with --anomaly: the region to map, default the body)")
    p.add_argument("--anomaly", metavar="MAP.nii.gz", help="instead of filling a region, write an anomaly map: "
                   "|original - filled| of a grid of holes filled in turn, where the image is not what the model "
                   "expects (in units of the image's intensity range)")
    p.add_argument("--hole-mm", type=float, default=12.0, help="--anomaly: the holes' width (default 12 mm)")
    p.add_argument("-o", "--output", help="the filled image to write: a new folder (a derived DICOM "
                                                         "series; needs a DICOM input), or .nii.gz, .nii, .nrrd, .mha "
                                                         "(with OUT.json beside it saying what was done)")
    add_image_arguments(p, "the frame of a 4D series to fill (1 = the first)")
    p.set_defaults(func=_cmd_inpaint)


def _cmd_inpaint(args) -> int:
    from .ai.inpainting.builtin import BUILTIN_ID, find_inpainter
    from .ai.inpainting.infer import InpaintError, InpaintOptions, inpaint_job
    from .ai.package import PackageError, Registry
    from .cli_common import derived_output_problem, load_input, run_with_progress
    from .io.labels import load_labels
    from .io.volumes import is_volume_file

    if args.anomaly:
        return _cmd_anomaly(args)
    if not args.mask or not args.output:
        return fail("give the region to fill (--mask) and where to write the filled image (-o), or --anomaly MAP")
    out = Path(args.output)
    as_dicom = not is_volume_file(out)
    problem = derived_output_problem(out)
    if problem:
        return fail(problem)
    if out.resolve() == Path(args.input).resolve():
        return fail("the filled image is written as a new file, never over its original: give another -o")
    try:
        package = find_inpainter(args.model)
        if package.card.get("task") != "inpainting":
            others = [p.id for p in Registry().packages() if p.card.get("task") == "inpainting"] + [BUILTIN_ID]
            return fail(f"{package.id} is a {package.card.get('task')} model (medvision infer runs it); "
                        f"inpainting: {', '.join(others)}")
        volume = load_input(args.input, args.series, args.quiet)
        frame = volume.frame(args.frame - 1) if volume.is_4d else volume
        labels = load_labels(args.mask, reference=frame)
        if labels.placement == "resampled":
            print("note: the mask was on another grid and was resampled onto the image (nearest neighbour)",
                  file=sys.stderr)
        for warning in package.suitability(volume):
            print(f"warning: {warning}", file=sys.stderr)
        options = InpaintOptions(device=args.device, frame=args.frame - 1, texture=args.texture)
        result = run_with_progress(inpaint_job(package, volume, labels.array != 0, options), args.quiet)
    except InpaintError as exc:
        return fail(f"{args.mask}: {exc}")
    except (PackageError, RuntimeError, ValueError) as exc:
        return fail(str(exc))
    status = _write(args, package, volume, frame, result, labels.array != 0, out, as_dicom)
    if status:
        return status
    for note in result.notes:
        if not note.startswith("warning:"):  # (the warnings were said before the run)
            print(note)
    return 0


def _write(args, package, volume, frame, result, region, out: Path, as_dicom: bool) -> int:
    """Write the filled image (a derived DICOM series, or a volume file with its sidecar); 0, or 2 after saying why."""
    from .ai.inpainting.builtin import describe
    from .cli_common import write_derived_dicom

    filled = int(region.sum())
    grain = " (with the image's grain from nearby tissue)" if result.volume.metadata["derived"]["grain"] else ""
    derivation = (f"{describe(package)}: {filled} voxels of the region {Path(args.mask).name} filled{grain}; every "
                  "other voxel is the source image's")
    if as_dicom:
        if write_derived_dicom(volume, frame, result.volume.array, out, args.frame, description=describe(package),
                               derivation=derivation):
            return 2
        where = f"{out} (a derived DICOM series)"
    else:
        from .io.derived import write_synthetic_volume

        sidecar = write_synthetic_volume(result.volume, out, derivation=derivation, Source=str(args.input),
                                         Region=str(args.mask), Model=package.id, ModelVersion=package.version,
                                         InpaintedVoxels=filled)
        where = f"{out} (+ {sidecar.name})"
    if not args.quiet:
        change = float(abs(result.difference[region]).mean())
        print(f"{package.id} on {result.device}: {filled} voxels filled (mean change {change:.1f}); "
              f"{result.seconds['total']:.1f} s -> {where}")
    return 0


def _cmd_anomaly(args) -> int:
    from .ai.inpainting.builtin import describe, find_inpainter
    from .ai.inpainting.infer import InpaintError, InpaintOptions, anomaly_job
    from .ai.package import PackageError
    from .cli_common import load_input, run_with_progress
    from .core.volume import Volume
    from .io.derived import write_synthetic_volume
    from .io.labels import load_labels
    from .io.volumes import is_volume_file

    out = Path(args.anomaly)
    if not is_volume_file(out):
        return fail(f"{out}: give a .nii.gz, .nii, .nrrd or .mha file for the anomaly map")
    try:
        package = find_inpainter(args.model)
        volume = load_input(args.input, args.series, args.quiet)
        frame = volume.frame(args.frame - 1) if volume.is_4d else volume
        region = load_labels(args.mask, reference=frame).array != 0 if args.mask else None
        options = InpaintOptions(device=args.device, frame=args.frame - 1)
        amap, notes = run_with_progress(anomaly_job(package, volume, region, hole_mm=args.hole_mm, options=options),
                                        args.quiet)
    except InpaintError as exc:
        return fail(str(exc))
    except (PackageError, RuntimeError, ValueError) as exc:
        return fail(str(exc))
    write_synthetic_volume(Volume(amap, frame.affine, frame.frame_of_reference_uid, {}), out,
                           derivation=f"{describe(package, 'anomaly map')}: |original - filled| of "
                                      f"{args.hole_mm:g} mm holes, in units of the image's intensity range",
                           Source=str(args.input), Model=package.id, ModelVersion=package.version)
    for note in notes:
        print(note, file=sys.stderr)
    if not args.quiet:
        inside = amap[amap > 0]
        print(f"anomaly map -> {out}: 99th percentile {float(np.percentile(inside, 99)) if inside.size else 0:.3f} "
              "of the intensity range")
    return 0


def inpainting_base(model_id: str):
    """The inpainting package ``model_id`` names, or None (another task, or none: the segmentation setup
    says what is wrong)."""
    from .ai.package import PackageError, Registry

    try:
        package = Registry().get(model_id)
    except PackageError:
        return None
    return package if package.card.get("task") == "inpainting" else None


def train_inpainting(args, base) -> int:
    """``medvision train --base INPAINTING-MODEL``: fine-tune it on the datalist's or the project's images (no
    labels: random holes), measured on their held-out slices; registered unless it ends below its base."""
    import signal

    from .ai.inference.devices import pick_device
    from .ai.inpainting.finetune import InpaintFinetuneConfig, default_workdir, finetune_job, sources_sha256
    from .ai.package import PackageError
    from .cli_common import ProgressBar
    from .core.jobs import Cancelled, run_job
    from .io.errors import MedvisionIOError

    unsupported = [flag for flag, value in (("--epochs", args.epochs), ("--folds", getattr(args, "folds", None)),
                                            ("--from-scratch", args.from_scratch)) if value]
    if unsupported:
        return fail(f"{base.id} is an inpainting model: {', '.join(unsupported)} is for segmentation models "
                    "(an inpainting run takes --minutes and --steps)")
    try:
        entries, volumes = _finetune_images(args)
    except (ValueError, OSError, MedvisionIOError) as exc:
        return fail(str(exc))
    minutes = args.minutes if args.minutes else (1e6 if args.steps else 10.0)
    workdir = args.workdir or default_workdir(args.output)
    try:
        crop = int(str(args.patch).split(",")[0])  # (in-plane: the slices' crops)
    except ValueError:
        return fail(f"--patch {args.patch}: give a number of pixels")
    config = InpaintFinetuneConfig(new_id=args.output, workdir=workdir, minutes=minutes, max_steps=args.steps or 0,
                                   batch=args.batch_size, crop=max(32, crop), lr=args.lr, keep_worse=args.keep_worse,
                                   device=pick_device(args.device), name=args.name)
    print(f"{len(volumes)} images; {base.id} {base.version} fine-tuned on random holes, measured on the last "
          f"{config.held_out_share:.0%} of each image's slices", flush=True)
    stop = {"asked": False}

    def on_sigint(_signum, _frame) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        print("\nstopping: the last checkpoint is kept", file=sys.stderr, flush=True)

    bar = ProgressBar(args.quiet)

    def on_progress(record):
        if record.stage == "validation":
            if not args.quiet:
                bar.close()
                print(f"step {record.done}: {record.message}", flush=True)
        else:
            bar(record)
        return False if stop["asked"] else None

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = run_job(finetune_job(base, volumes, config, sources_sha256([p for p, _ in entries])), on_progress)
    except Cancelled:
        print("stopped: run the same command again to resume", flush=True)
        return 130
    except (PackageError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    for note in result.notes:
        print(note)
    print(f"held-out masked PSNR {result.final_psnr:.2f} dB (base {result.base_psnr:.2f} dB, the smooth fill alone "
          f"{result.coarse_psnr:.2f} dB) after {result.steps} steps in {result.minutes:.1f} min")
    if result.folder is None:
        return 3
    print(f"new model {args.output} -> {result.folder}")
    return 0


def _finetune_images(args):
    """The images of ``medvision train``'s --datalist or --workspace: ((path, series) entries, volumes);
    ValueError when there are none."""
    from .ai.inpainting.data import InpaintVolume
    from .ai.inpainting.finetune import image_entries
    from .io import load

    entries = image_entries(args.datalist, args.workspace)
    if not entries:
        raise ValueError("no images to fine-tune on (a project: mark the cases done first)")
    volumes = []
    for k, (path, series) in enumerate(entries):
        volume = load(path, series=series) if series else load(path)
        volumes.append(InpaintVolume.from_volume(volume, f"image-{k + 1:03d}"))
    return entries, volumes
