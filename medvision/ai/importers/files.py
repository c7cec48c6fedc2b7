"""Single files (TorchScript, ONNX, state_dict) with the caller's card, and what every import shares:
staging folders under the user cache, safe zip extraction, weights read with ``weights_only=True``,
and the check every import passes before it is handed back (:func:`finish_import`)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import torch

from ...core.atomic import write_via
from ...core.labels import PALETTE
from ...paths import cache_dir
from ..package import CARD, CODE_KINDS, ModelPackage, PackageError, code_refusal, sha256_of, write_card
from .runtime import require_onnxruntime

__all__ = ["import_torchscript", "import_onnx", "import_state_dict", "is_torchscript", "MINIMAL_CARD",
           # what every import shares (the bundle importer and the package's import_any use them)
           "load_state_dict", "fitted_network", "save_safetensors", "finish_import", "staging_folder", "staged",
           "extract_zip", "utc_timestamp", "imported_by"]

log = logging.getLogger(__name__)

#: what a card for a bare TorchScript/ONNX/state_dict file must say at least (the rest has defaults)
MINIMAL_CARD = {
    "id": "my-model", "labels": [{"value": 1, "name": "spleen"}],
    "input": {"orientation": "RAS", "spacing_mm": [1.5, 1.5, 2.0],
              "normalization": {"kind": "ct", "low": -57, "high": 164}},
    "inference": {"mode": "sliding_window", "sliding_window": {"roi_size": [96, 96, 96], "overlap": 0.5}},
    "output": {"activation": "softmax"},
}
_NORMALIZATIONS = ("zscore", "percentile", "ct", "window", "minmax", "none", "deepbet")
_MAX_UNZIPPED = 16 << 30  # a bundle bigger than this unpacked is refused (zip bombs)


# ---- single files: TorchScript, ONNX, state_dict ---------------------------------------------
def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (a zip with code/ and constants.pkl), read without loading it."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def import_torchscript(path: str | os.PathLike, *, card: dict | str | os.PathLike | None = None,
                       trust_code: bool = False) -> ModelPackage:
    """A TorchScript file with the caller's card; runs but cannot be fine-tuned.

    TorchScript carries code that runs with the user's rights: it is imported only with ``trust_code``,
    marked in its card (``contains_code``), and never loaded or run to import it."""
    path = Path(path)
    if not is_torchscript(path):
        raise PackageError(f"{path}: not a TorchScript archive (export with torch.jit.script or torch.jit.trace "
                           "and torch.jit.save)")
    if not trust_code:
        raise PackageError(code_refusal(str(path)))
    return _import_file(path, "torchscript", "model.ts", _user_card(path, card, "TorchScript"))


def import_onnx(path: str | os.PathLike, *, card: dict | str | os.PathLike | None = None) -> ModelPackage:
    """An ONNX file with the caller's card (needs onnxruntime: the onnx extra); cannot be fine-tuned."""
    path = Path(path)
    require_onnxruntime()
    return _import_file(path, "onnx", "model.onnx", _user_card(path, card, "ONNX"))


def import_state_dict(path: str | os.PathLike, *, card: dict | str | os.PathLike | None = None) -> ModelPackage:
    """A state_dict file (read with ``weights_only=True``) with a card naming its architecture."""
    path = Path(path)
    state = load_state_dict(path)
    card = _user_card(path, card, "a state_dict", needs_architecture=True)
    with staged(card["id"]) as staging:
        save_safetensors(fitted_network(card["architecture"], state, path.name), staging / "weights.safetensors")
        card.update(weights={"file": "weights.safetensors", "sha256": sha256_of(staging / "weights.safetensors")},
                    trainable=card.get("trainable", True))
        card["provenance"] = {**(card.get("provenance") or {}), "source": str(path.resolve()),
                              "format": "state_dict", "source_sha256": sha256_of(path), "created": utc_timestamp(),
                              "imported_by": imported_by()}
        return finish_import(staging, card)


def _import_file(path: Path, kind: str, file_name: str, card: dict) -> ModelPackage:
    with staged(card["id"]) as staging:
        shutil.copyfile(path, staging / file_name)
        note = ("(TorchScript: contains code that runs with your rights; cannot be fine-tuned)" if kind == "torchscript"
                else "(ONNX: runs in onnxruntime, but cannot be fine-tuned)")
        if kind in CODE_KINDS:
            card["contains_code"] = True
        card.update(architecture={"name": kind}, trainable=False,
                    weights={"file": file_name, "sha256": sha256_of(staging / file_name)},
                    description=f"{card.get('description', '')} {note}".strip())
        card["provenance"] = {**(card.get("provenance") or {}), "source": str(path.resolve()), "format": kind,
                              "source_sha256": sha256_of(path), "created": utc_timestamp(),
                              "imported_by": imported_by()}
        return finish_import(staging, card)


def _user_card(path: Path, card, what: str, needs_architecture: bool = False) -> dict:  # noqa: C901 - where the
    # card comes from (dict, file, beside the model) and what each kind of file needs: a flat list of checks
    """The caller's card (a dict, a JSON file, or ``<name>.json``/``model.json`` beside ``path``), checked."""
    where = "the card"
    if card is None:
        for candidate in (path.with_suffix(".json"), path.parent / CARD):
            if candidate.is_file() and candidate != path:
                card = candidate
                break
    if card is None:
        raise PackageError(
            f"{path}: {what} file holds no description of its input and output. Give a card (card=FILE.json, or "
            f"{path.with_suffix('.json').name} or {CARD} beside it) with at least the input orientation, spacing "
            f"(or resize_to), intensity normalisation, the output activation and the labels, e.g. "
            f"{json.dumps(MINIMAL_CARD)}")
    if not isinstance(card, dict):
        where = str(card)
        try:
            card = json.loads(Path(card).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PackageError(f"{where}: unreadable card ({exc})") from exc
        if not isinstance(card, dict):
            raise PackageError(f"{where}: a card is a JSON object")
    card = json.loads(json.dumps(card))  # a copy, plain JSON
    inp, out, inf = card.get("input") or {}, card.get("output"), card.get("inference") or {}
    missing = []
    if not card.get("id"):
        missing.append("id")
    if not isinstance(card.get("labels"), list) or not card["labels"]:
        missing.append("labels")
    if not inp.get("orientation"):
        missing.append("input.orientation")
    if not (inp.get("spacing_mm") or inp.get("resize_to") or inp.get("native_spacing")):
        missing.append("input.spacing_mm (or input.resize_to, or input.native_spacing: true)")
    if (inp.get("normalization") or {}).get("kind") not in _NORMALIZATIONS:
        missing.append(f"input.normalization (kind: {'|'.join(_NORMALIZATIONS)})")
    if not isinstance(out, dict) or "activation" not in out:
        missing.append("output.activation (softmax, sigmoid or null)")
    if inf.get("mode") == "sliding_window" and not (inf.get("sliding_window") or {}).get("roi_size"):
        missing.append("inference.sliding_window.roi_size")
    if needs_architecture and not (card.get("architecture") or {}).get("name"):
        missing.append("architecture (name and args, e.g. monai.UNet)")
    if missing:
        raise PackageError(f"{where}: the card for {path.name} lacks {', '.join(missing)}; e.g. "
                           f"{json.dumps(MINIMAL_CARD)}")
    card["id"] = str(card["id"])
    for k, default in (("format", "medvision-model"), ("format_version", 1), ("version", "1.0"),
                       ("name", card["id"]), ("task", "segmentation"), ("dims", 3), ("modality", ""),
                       ("license", "not stated"), ("inference", {"mode": "whole"}), ("postprocessing", {})):
        card.setdefault(k, default)
    for i, label in enumerate(card["labels"]):
        if not isinstance(label, dict) or not isinstance(label.get("value"), int) or label["value"] < 1:
            raise PackageError(f"{where}: label {i} needs an integer value of 1 or more (and a name)")
        label.setdefault("name", f"Label {label['value']}")
        label.setdefault("color", [*PALETTE[(label["value"] - 1) % len(PALETTE)], 255])
    return card


# ---- weights ----------------------------------------------------------------------------------
def load_state_dict(path: Path) -> dict:
    """Tensors from a torch file, with ``weights_only=True`` only (never a fallback to unpickling)."""
    import pickle

    if is_torchscript(path):
        raise PackageError(f"{path}: a TorchScript archive, not a state_dict (import it as TorchScript)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PackageError(
            f"{path}: holds pickled Python objects, not only weights (e.g. a whole model saved with "
            f"torch.save(model)); medvision never unpickles code. Save model.state_dict(), or export TorchScript "
            f"or ONNX. ({str(exc).splitlines()[-1].strip()[:200]})") from exc
    except Exception as exc:
        raise PackageError(f"{path}: not a readable torch weights file ({str(exc).splitlines()[0][:200]})") from exc
    state = _tensors(obj)
    if state is None:
        raise PackageError(f"{path}: no state_dict of tensors found (looked at the top level and under "
                           "model/state_dict/network)")
    return state


def _tensors(obj, depth: int = 0) -> dict | None:
    if not isinstance(obj, dict) or not obj or depth > 2:
        return None
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    for key in ("model", "state_dict", "network", "net", "model_state_dict", "ema"):
        found = _tensors(obj.get(key), depth + 1)
        if found is not None:
            return found
    return None


def fitted_network(architecture: dict, state: dict, what: str):
    """The network of ``architecture`` with ``state`` loaded strictly (a "model."/"module." prefix stripped)."""
    from ..architectures import build

    net = build(architecture)
    want = set(net.state_dict())
    while set(state) != want:
        prefix = next((p for p in ("module.", "model.", "network.", "net.") if state and all(
            k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:4])[:400]
        raise PackageError(f"{what}: the weights do not fit its network {architecture['name']}"
                           f"({_brief(architecture.get('args'))}): {detail}") from exc
    return net


def _brief(args) -> str:
    return ", ".join(f"{k}={v}" for k, v in (args or {}).items())[:160]


def save_safetensors(net, path: Path) -> None:
    """``net``'s weights written (atomically) as safetensors."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    write_via(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


# ---- the check every import passes ------------------------------------------------------------
def finish_import(staging: Path, card: dict) -> ModelPackage:
    """The staged package, checked: the card against its schema, every part's weights opened (sha256,
    safetensors header and shapes, strict loading). A medvision-built network also runs on a zero input;
    TorchScript and ONNX are inspected, never run (TorchScript's code would run with the user's rights)."""
    write_card(staging, card)
    package = ModelPackage.open(staging)
    package.check()
    if package.runtime_kind() is not None:
        return _finish_runtime(package, staging)
    net = package.network()
    spec, inf = card.get("input") or {}, card.get("inference") or {}
    shape = ((inf.get("sliding_window") or {}).get("roi_size") if inf.get("mode") == "sliding_window" else None) \
        or spec.get("resize_to") or [32, 32, 32]
    x = torch.zeros((1, int(spec.get("channels", 1)), *[int(n) for n in shape]))
    try:
        with torch.inference_mode():
            out = net(x)
    except Exception as exc:
        raise PackageError(f"{package.id}: the imported network fails on a zero input of shape {tuple(x.shape)}: "
                           f"{str(exc).splitlines()[0][:300]}") from exc
    if not isinstance(out, torch.Tensor):
        raise PackageError(f"{package.id}: the network returns {type(out).__name__}, not one tensor")
    if tuple(out.shape[2:]) != tuple(x.shape[2:]) or out.shape[0] != 1:
        raise PackageError(f"{package.id}: the network maps {tuple(x.shape)} to {tuple(out.shape)}; a segmentation "
                           "network keeps the spatial shape")
    output = card.get("output") or {}
    channels = int(out.shape[1])
    if "threshold" in output:
        if not 0 <= int(output.get("channel", 0)) < channels:
            raise PackageError(f"{package.id}: output channel {output.get('channel')} of {channels}")
    elif channels < 2 or max((la["value"] for la in package.labels), default=0) >= channels:
        raise PackageError(f"{package.id}: the labels ({', '.join(str(la['value']) for la in package.labels)}) do "
                           f"not fit the network's {channels} output channels")
    log.info("imported %s %s into %s", package.id, package.version, staging)
    return package


def _finish_runtime(package: ModelPackage, staging: Path) -> ModelPackage:
    from .runtime import inspect_runtime

    info = inspect_runtime(package.runtime_kind(), package.verified_weights(), package.id)
    channels, output = info.get("channels"), package.card.get("output") or {}
    if channels:  # an ONNX graph that states its output channels
        if "threshold" in output and not 0 <= int(output.get("channel", 0)) < channels:
            raise PackageError(f"{package.id}: output channel {output.get('channel')} of {channels}")
        if "threshold" not in output and max((la["value"] for la in package.labels), default=0) >= channels:
            raise PackageError(f"{package.id}: the labels ({', '.join(str(la['value']) for la in package.labels)}) "
                               f"do not fit the network's {channels} output channels")
    log.info("imported %s %s into %s (inspected, not run)", package.id, package.version, staging)
    return package


# ---- staging, zips, small helpers --------------------------------------------------------------
def staging_folder(name: str) -> Path:
    """A new folder under ``<cache>/imports`` for an import named ``name`` (leftovers over a day old removed)."""
    root = cache_dir() / "imports"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():  # leftovers of imports more than a day old
        if old.is_dir() and time.time() - old.stat().st_mtime > 86400:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:40]}-", dir=root))


@contextmanager
def staged(name: str) -> Iterator[Path]:
    """A new staging folder, removed again when the import fails."""
    staging = staging_folder(name)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def extract_zip(path: Path, dest: Path) -> Path:
    """Unpack ``path`` into ``dest`` after checking every member stays inside it (no traversal, links)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            total = 0
            for info in members:
                name = info.filename.replace("\\", "/")
                parts = PurePosixPath(name).parts
                if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                    raise PackageError(f"{path}: member {info.filename!r} points outside the archive (path "
                                       "traversal); refusing the whole file")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise PackageError(f"{path}: member {info.filename!r} is a symbolic link; refusing the whole "
                                       "file")
                total += info.file_size
            if total > _MAX_UNZIPPED:
                raise PackageError(f"{path}: unpacks to {total >> 30} GiB; refusing it")
            base = dest.resolve()
            for info in members:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if not parts or parts[0] == "__MACOSX":
                    continue
                target = base.joinpath(*parts)
                if base not in target.resolve().parents:
                    raise PackageError(f"{path}: member {info.filename!r} points outside the archive")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(f"{path}: unreadable zip ({exc})") from exc
    return dest



def utc_timestamp() -> str:
    """Now, in UTC, to the second (ISO 8601): a card's ``created``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def imported_by() -> str:
    """A card's ``imported_by``: this medvision and its version."""
    from ... import __version__

    return f"medvision {__version__}"
