"""``medvision infer`` and ``medvision models``: local models from the command line.

    medvision infer --model ID INPUT -o OUT.nii.gz [--device cpu|cuda] [--tta] [--uncertainty U.nii.gz]
    medvision models list | show ID [--json] | import PATH [--card CARD.json] [--replace] [--trust-code]
    medvision train --base ID (--datalist FILE | --workspace DIR) -o NEW_ID [--epochs N | --minutes M] ...
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .cli_common import fail


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
    p.epilog = (f"Exit status {IMPLAUSIBLE_EXIT}: the labels were written but the result is implausible (a volume "
                "outside what the model's card says the structure can measure, or an image of another modality "
                "than the model's); the reasons are printed.")

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
    q.add_argument("--trust-code", action="store_true",
                   help="allow a model that contains code (TorchScript: a .ts/.pt file, a bundle's models/model.ts): "
                        "its code runs with your rights when you run the model; use only for sources you trust. "
                        "Nothing is loaded or run to import it")
    q.set_defaults(func=_cmd_models_import)
    add_train_parser(sub)


#: the exit status of ``infer`` when the result was written but is implausible (see medvision.ai.plausibility)
IMPLAUSIBLE_EXIT = 3


def _cmd_infer(args) -> int:
    from .ai.engine import InferenceOptions, infer_job
    from .ai.package import PackageError, Registry
    from .cli_common import load_input, run_with_progress
    from .io.labels import save_labels
    from .io.volumes import write_volume

    try:
        package = Registry().get(args.model)
        volume = load_input(args.input, args.series, args.quiet)
        warned = [f"warning: {w}" for w in package.suitability(volume)]
        for warning in warned:  # before a run that may take minutes
            print(warning, file=sys.stderr)
        options = InferenceOptions(device=args.device, tta=args.tta, uncertainty=bool(args.uncertainty))
        result = run_with_progress(infer_job(package, volume, options), args.quiet)
    except (PackageError, RuntimeError, ValueError) as exc:
        return fail(str(exc))
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
            if note not in warned:  # the suitability warnings were printed before the run
                print(note)
    for why in result.implausible:  # even with --quiet: the output must not be taken as it is
        print(f"IMPLAUSIBLE RESULT: {why}", file=sys.stderr)
    if result.implausible:
        print(f"medvision: check this result before using it; {out} was written as the model gave it",
              file=sys.stderr)
        return IMPLAUSIBLE_EXIT
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
        from .ai.inpainting.builtin import builtin_inpainters

        for method in builtin_inpainters():  # (no package: `medvision inpaint --model ID` takes it all the same)
            print(f"{method.id} {method.version} [inpainting, built in, no network]: {method.name}")
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
        return fail(str(exc))
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
    print(f"  labels ({len(package.labels)}):")
    for label in package.labels:
        print(f"    {label.get('value'):>5}  {label.get('name')}")
    return 0


def _cmd_models_import(args) -> int:
    from .ai.importers import import_any
    from .ai.package import PackageError, Registry

    package = None
    try:
        package = import_any(args.path, card=args.card, trust_code=args.trust_code)
        installed = Registry().install(package, replace=args.replace, trust_code=args.trust_code)
    except PackageError as exc:
        return fail(str(exc))
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


# ---- medvision train ------------------------------------------------------------------------------
def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model on labelled cases (a datalist or a project's finished cases) "
                                     "and install the result as a new model")
    p.add_argument("--base", required=True, help="the model to start from (see `medvision models list`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--datalist", metavar="FILE", help="MONAI-style datalist JSON: labels, training [{image, label}]")
    src.add_argument("--workspace", metavar="DIR", help="a project folder: its cases marked done or reviewed")
    p.add_argument("-o", "--output", required=True, metavar="NEW_ID", help="id of the new model")
    p.add_argument("--name", help="the new model's display name")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="epochs to train (default 50 unless --minutes; early stopping "
                                                   "may end sooner)")
    budget.add_argument("--minutes", type=float, help="time budget for the whole run (loading, the head's probe, "
                        "validation, writing the model): the last epoch is cut short to end within it")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--case-names", action="store_true",
                   help="name the training cases in the new model's card by their ids (file names, which often hold "
                        "patients' names); by default the card numbers them (case-001 ...) beside their hashes")
    p.add_argument("--from-scratch", action="store_true", help="random initial weights instead of the base's")
    p.add_argument("--transfer", choices=("encoder", "all"), default=None,
                   help="start from all the base's weights but the output head (the default) or from its "
                        "encoder only (decoder and head new; see README)")
    p.add_argument("--head-init", choices=("probe", "prior", "random"), default=None,
                   help="the new output head's start: fitted first to the base's features on training patches (a "
                        "linear probe; by default kept only when it predicts the validation data better than "
                        "the class frequencies), the class frequencies, or random (see README)")
    p.add_argument("--spacing", default=None, metavar="MM",
                   help="the voxel size to train (and run the new model) at: auto (the scale the base learnt at; "
                        "the default), native, or mm (one number or X,Y,Z)")
    p.add_argument("--patch", default="64", help="patch size: N or X,Y,Z (multiples of 32; default 64)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of decoder and head (default 1e-3)")
    p.add_argument("--freeze-epochs", type=float, default=None,
                   help="epochs (a fraction: of the first epoch) with --freeze-part held still (default: none)")
    p.add_argument("--freeze-part", choices=("encoder", "body"), default=None,
                   help="what --freeze-epochs holds: the encoder (the default), or every pretrained layer, so "
                        "that only the new head learns first (with --transfer all: a linear probe, then "
                        "fine-tuning)")
    p.add_argument("--encoder-lr-factor", type=float, default=None,
                   help="the encoder's learning rate as a share of --lr once unfrozen (default 1)")
    p.add_argument("--val-slab", metavar="AXIS-END", default=None,
                   help="a single case's validation slab, e.g. x-first or z-last (default: the one that leaves "
                        "every label on both sides)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="k-fold cross-validation for a few cases: K runs, each validated on its share of the cases "
                        "(every case once), then the model trained on all of them; the card records the folds' "
                        "Dice (default: hold out about 20 %% of the cases)")
    p.add_argument("--patience", type=int, default=10, help="early stopping patience in epochs (0: none)")
    p.add_argument("--patches-per-epoch", type=int, help="patches per epoch (default 4 per training case)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--architecture", help="another architecture the base card allows (e.g. monai.SwinUNETR)")
    p.add_argument("--labels", action="append", metavar="NAME=A,B", default=[],
                   help="train only these labels, merging the names listed into one (repeatable); "
                        "e.g. --labels hippocampus=hippo-L,hippo-R --labels caudate")
    p.add_argument("--steps", type=int, default=None,
                   help="an inpainting base: training steps (default: as many as --minutes allow, 10 minutes)")
    p.add_argument("--keep-worse", action="store_true",
                   help="an inpainting base: register the new model even when it fills the held-out slices worse "
                        "than its base")
    p.add_argument("--workdir", help="checkpoint folder (default: one per model and data in the cache); the same "
                                     "command again resumes from it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _triple(text: str, cast, what: str) -> tuple:
    """``N`` or ``X,Y,Z`` (or ``XxYxZ``) as three positive numbers; ``what``: the usage said otherwise."""
    try:
        parts = [cast(p) for p in str(text).replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) <= 0:
        raise ValueError(what)
    return tuple(parts)


def _patch(text: str) -> tuple[int, int, int]:
    return _triple(text, int, f"--patch {text}: give N or X,Y,Z")


def _spacing(text: str | None):
    """--spacing: None (not given: the config's default), "auto", "native", or mm."""
    if text is None or text in ("auto", "native"):
        return text
    values = _triple(text, float, f"--spacing {text}: give auto, native, or a voxel size in mm (MM or X,Y,Z)")
    return values[0] if len(set(values)) == 1 else values


def _duration(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _epoch_line(p: dict, total: int) -> str:
    dice = "n/a" if p.get("val_dice") is None else f"{p['val_dice']:.3f}"
    best = "n/a" if p.get("best_val_dice") is None else f"{p['best_val_dice']:.3f}"
    labels = "  ".join(f"{n} {'n/a' if d is None else f'{d:.3f}'}" for n, d in (p.get("per_label") or {}).items())
    loss = "n/a" if p.get("train_loss") is None else f"{p['train_loss']:.4f}"
    validation = f"val Dice {dice} (best {best} @{p.get('best_epoch')})  [{labels}]" if p.get("validated", True) \
        else "no validation"
    return (f"epoch {p['epoch']}{'/' + str(total) if total else ''}  loss {loss}  {validation}  lr {p.get('lr', 0):.2e}"
            f"{'  pretrained layers held' if p.get('frozen') else ''}  {p.get('seconds', 0):.1f} s  "
            f"ETA {_duration(p.get('eta_s'))}")


def _cmd_train(args) -> int:
    import signal

    from .ai.package import PackageError
    from .ai.training import distributed
    from .ai.training.data import TrainingDataError
    from .ai.training.job import train_job
    from .cli_common import ProgressBar
    from .core.jobs import Cancelled, run_job
    from .workspace.project import ProjectError

    main = os.environ.get("RANK", "0") in ("", "0")  # under torchrun: process 0 alone reports

    def say(*values, **kw) -> None:
        if main or kw.get("file") is sys.stderr:
            print(*values, **kw)

    try:
        data, config = _train_setup(args)
    except (TrainingDataError, ProjectError, ValueError) as exc:
        return fail(str(exc))
    say(f"{len(data.cases)} cases, labels: {', '.join(data.names)}", flush=True)
    for note in data.notes:
        say(f"note: {note}", flush=True)
    stop = {"asked": False}
    state = {"epoch": 0, "start": "", "run": ""}

    def on_sigint(_signum, _frame) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        say("\nstopping: the checkpoint of the last finished epoch is kept (Ctrl+C again to quit at once)",
              file=sys.stderr, flush=True)

    bar = ProgressBar(args.quiet or not main)

    def on_progress(record):
        run = getattr(record, "run", "")  # (a cross-validation's run)
        if run != state["run"]:  # a cross-validation's next run
            state.update(run=run, start="", epoch=0)
        if record.stage == "epoch" and isinstance(record.preview, dict):
            bar.close()
            state["epoch"] = record.done
            say((f"{run}: " if run else "") + _epoch_line(record.preview, record.total), flush=True)
        elif record.stage == "epoch" or (record.stage == "training" and record.done == 0 and record.message \
                and not state["start"]):
            bar.close()
            state["start"] = record.message
            say(record.message, flush=True)
        else:
            bar(record)
        return False if stop["asked"] else None

    previous = signal.signal(signal.SIGINT, on_sigint)
    finished = False
    try:
        result = run_job(train_job(config, data), on_progress)
        finished = True
    except Cancelled:
        where = f"in {state['run']} " if state["run"] else ""
        when = f"after epoch {state['epoch']}" if state["epoch"] else "before an epoch had finished"
        say(f"stopped {where}{when}: run the same command again to resume"
            + (" (the folds that finished are kept)" if config.folds else ""), flush=True)
        return 130
    except (PackageError, TrainingDataError, ValueError, RuntimeError) as exc:
        return fail((f"{state['run']}: " if state["run"] else "") + str(exc))
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
        distributed.end(finished)
    _report_training(result, data, say)
    return 0


def _train_setup(args):
    """The training data and settings of ``medvision train``'s arguments; anything wrong raises
    (TrainingDataError, ProjectError, ValueError) before a case is trained on."""
    from .ai.card_schema import is_safe_id
    from .ai.training.config import TrainConfig
    from .ai.training.data import TrainingData

    if not is_safe_id(args.output):  # the new package's folder name: said before any case is read
        raise ValueError(f"-o {args.output!r}: a model id takes letters, digits, '.', '_' and '-' only, starting "
                         "with a letter or digit, at most 100 characters and no '..'")
    groups = {}
    for item in args.labels:
        name, _, members = item.partition("=")
        groups[name.strip()] = [m.strip() for m in members.split(",") if m.strip()] or [name.strip()]
    patch, spacing = _patch(args.patch), _spacing(args.spacing)
    if args.datalist:
        data = TrainingData.from_datalist(args.datalist, label_groups=groups or None)
    else:
        data = TrainingData.from_project(args.workspace, label_groups=groups or None)
    optional = (("transfer", args.transfer), ("freeze_epochs", args.freeze_epochs), ("freeze_part", args.freeze_part),
                ("val_slab", args.val_slab), ("encoder_lr_factor", args.encoder_lr_factor),
                ("head_init", args.head_init), ("folds", args.folds), ("spacing_mm", spacing))
    config = TrainConfig(base=args.base, new_id=args.output, name=args.name, epochs=args.epochs, minutes=args.minutes,
                         device=args.device, from_scratch=args.from_scratch, patch_size=patch,
                         batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
                         workdir=args.workdir, architecture=args.architecture, case_names=args.case_names,
                         patches_per_epoch=args.patches_per_epoch, **{k: v for k, v in optional if v is not None})
    if config.folds:
        data.folds(config.folds, config.seed)  # too few cases: said before anything is loaded
    return data, config


def _report_training(result, data, say) -> None:
    """What ``medvision train`` prints once the new model is written."""
    dice = "n/a" if result.best_val_dice is None else f"{result.best_val_dice:.3f}"
    per_label = ", ".join(f"{n} {'n/a' if d is None else f'{d:.3f}'}" for n, d in result.per_label.items())
    cv = result.cross_validation
    if cv:
        for f in cv["per_fold"]:
            d = "n/a" if f["val_dice"] is None else f"{f['val_dice']:.3f}"
            say(f"fold {f['fold']}: validation {', '.join(f['validation_cases'])}: Dice {d} (epoch "
                f"{f['best_epoch']} of {f['epochs_run']})")
        sd = "" if cv["val_dice_sd"] is None else f" ± {cv['val_dice_sd']:.3f}"
        say(f"cross-validated Dice {dice}{sd} over {cv['folds']} folds: {per_label}")
        epochs = f"{result.epochs_run} epoch{'s' if result.epochs_run != 1 else ''}"
        say(f"the model: all {len(data.cases)} cases, {epochs} (the folds' median best epoch)")
    else:
        say(f"{result.stopped_because}; best validation Dice {dice} (epoch {result.best_epoch}): {per_label}")
    say(f"split: {result.split_description}")
    for note in result.notes:
        if note not in data.notes:  # (those were said first)
            say(f"note: {note}")
    say(f"new model {result.package_id} {result.version} -> {result.package_folder}")
