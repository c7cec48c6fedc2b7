"""Model packages and the registry that finds them.

A package is a folder: ``model.json`` (the card: what the model is for, how its input is prepared,
its architecture, its labels, the sha256 of its weights, licence and provenance) and the weights as
safetensors. Weights are never unpickled. A weight file whose hash does not match its card is
refused. Shipped packages live in the repository's ``models/``; packages users import or fine-tune
go to ``<user data dir>/models``; the :class:`Registry` lists both (a user package with the same id
as a shipped one shadows it only with a higher version).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.atomic import write_text
from ..paths import data_dir
from .card_schema import card_problem, is_safe_id, is_safe_version
from .package_base import CODE_KINDS, RUNTIME_KINDS, PackageError

__all__ = ["CARD", "RUNTIME_KINDS", "CODE_KINDS", "CODE_WARNING", "code_refusal", "refuse_links", "PackageError",
           "ModelPackage", "Registry", "sha256_of", "shipped_dir", "user_dir"]

log = logging.getLogger(__name__)

CARD = "model.json"
FORMAT = "medvision-model"
CODE_WARNING = "contains code: runs with your rights"


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def shipped_dir() -> Path:
    """The packages that come with medvision (the repository's ``models/``)."""
    return Path(os.environ.get("MEDVISION_SHIPPED_MODELS", Path(__file__).resolve().parents[2] / "models"))


def user_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _version_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in str(version).replace("-", ".").split("."))


@dataclass
class ModelPackage:
    """A package folder and its card (read and checked for shape; weights are checked on load)."""

    folder: Path
    card: dict[str, Any]
    shipped: bool = False

    @classmethod
    def open(cls, folder: str | os.PathLike, *, shipped: bool = False) -> ModelPackage:
        folder = Path(folder)
        path = folder / CARD
        if not path.is_file():
            raise PackageError(f"{folder}: not a model package (no {CARD})")
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PackageError(f"{path}: unreadable model card ({exc})") from exc
        if not isinstance(card, dict) or card.get("format", FORMAT) != FORMAT:
            raise PackageError(f"{path}: not a medvision model card")
        problem = card_problem(card)
        if problem is not None:
            raise PackageError(f"{path}: {problem}")
        return cls(folder, card, shipped)

    # ---- card -------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self.card["id"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def name(self) -> str:
        return str(self.card.get("name") or self.id)

    @property
    def modality(self) -> str:
        return str(self.card.get("modality") or "")

    @property
    def dims(self) -> int:
        return int(self.card.get("dims", 3))

    @property
    def labels(self) -> list[dict]:
        return list(self.card.get("labels") or [])

    def summary(self) -> str:
        names = [str(la.get("name")) for la in self.labels]
        # a parcellation's hundred names would fill the screen: the first few and how many in all
        labels = ", ".join(names) if len(names) <= 8 else (
            ", ".join(names[:6]) + f" ... ({len(names)} labels: medvision models show {self.id})")
        where = "shipped" if self.shipped else "user"
        code = f"; {CODE_WARNING.upper()}" if self.contains_code else ""
        return (f"{self.id} {self.version}  {self.name}  [{self.card.get('task', '?')}, "
                f"{self.modality or 'any modality'}, {self.dims}D; labels: {labels}; {where}; "
                f"licence {self.card.get('license', '?')}{code}]")

    # ---- weights ----------------------------------------------------------------------------
    def architecture(self, part: str = "weights") -> dict[str, Any]:
        return dict(self.card["architecture"] if part == "weights" else self.card[part]["architecture"])

    def runtime_kind(self, part: str = "weights") -> str | None:
        """``"torchscript"`` or ``"onnx"`` for models run from their own file, else None (safetensors)."""
        name = str(self.architecture(part).get("name", ""))
        return name if name in RUNTIME_KINDS else None

    def parts(self) -> list[str]:
        """``"weights"`` and every other part of the card with its own weights (a localizer, a pre-model)."""
        return ["weights"] + [k for k, v in self.card.items() if k != "weights" and isinstance(v, dict)
                              and isinstance(v.get("weights"), dict)]

    @property
    def contains_code(self) -> bool:
        """True when a part is TorchScript: code that runs with the user's rights when the model runs."""
        return any(self.runtime_kind(part) in CODE_KINDS for part in self.parts())

    def check(self) -> None:
        """Every part's weights opened and checked without running anything: the sha256 of the card, a
        safetensors header with the tensors the architecture needs (strict), a TorchScript archive's
        layout (never loaded: loading runs its code), an ONNX graph's opsets and operators."""
        for part in self.parts():
            path = self.verified_weights(part)
            kind = self.runtime_kind(part)
            if kind is not None:
                from .importers.runtime import inspect_runtime

                inspect_runtime(kind, path, self.id)
                continue
            try:
                self.network(part)
            except PackageError:
                raise
            except Exception as exc:
                raise PackageError(f"{self.id}: its network ({part}) cannot be built from the card: "
                                   f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}") from exc

    @property
    def trainable(self) -> bool:
        return self.runtime_kind() is None and bool(self.card.get("trainable", True))

    def weights_path(self, part: str = "weights") -> Path:
        spec = self.card[part]["weights"] if part != "weights" else self.card["weights"]
        path = (self.folder / spec["file"]).resolve()
        if self.folder.resolve() not in path.parents:
            raise PackageError(f"{self.folder / CARD}: weights must lie inside the package folder")
        return path

    def verified_weights(self, part: str = "weights") -> Path:
        """The weights file of ``part`` ("weights" or e.g. "localizer"), after checking its sha256."""
        spec = self.card["weights"] if part == "weights" else self.card[part]["weights"]
        path = self.weights_path(part)
        if not path.is_file():
            raise PackageError(f"{self.id}: weights file {path.name} is missing from {self.folder}")
        kind = self.runtime_kind(part)
        if kind is not None:
            if not path.name.lower().endswith(RUNTIME_KINDS[kind]):
                raise PackageError(f"{self.id}: a {kind} model's file must end with "
                                   f"{' or '.join(RUNTIME_KINDS[kind])}, not {path.name}")
        elif not str(path).endswith(".safetensors"):
            raise PackageError(f"{self.id}: {path.name} is not a safetensors file (medvision never unpickles "
                               "weights; import other formats with `medvision models import`)")
        digest = sha256_of(path)
        if digest != str(spec["sha256"]).lower():
            raise PackageError(f"{self.id}: {path.name} does not match its card (sha256 {digest[:12]}... instead of "
                               f"{str(spec['sha256'])[:12]}...): the file was changed or damaged; refusing to use it")
        return path

    def state_dict(self, part: str = "weights", device: str = "cpu") -> dict:
        from safetensors.torch import load_file

        kind = self.runtime_kind(part)
        if kind is not None:
            raise PackageError(f"{self.id}: a {kind} model has no state_dict: it runs but cannot be fine-tuned")
        path = self.verified_weights(part)
        try:
            return load_file(str(path), device=device)
        except Exception as exc:
            raise PackageError(f"{self.id}: {path.name} is not readable safetensors ({exc})") from exc

    def network(self, part: str = "weights", device: str = "cpu"):
        """The eager network of ``part`` with its verified weights, in eval mode, on ``device``.

        TorchScript and ONNX packages (:data:`RUNTIME_KINDS`) are loaded from their verified file
        (``torch.jit.load``, or an onnxruntime session behind a small module) instead."""
        import torch

        from .architectures import build

        kind = self.runtime_kind(part)
        if kind is not None:
            from .importers.runtime import runtime_network

            return runtime_network(kind, self.verified_weights(part), device, self.id)
        spec = self.architecture(part)
        state = self.state_dict(part)
        try:  # built without memory or random initialisation: the weights are assigned as loaded
            with torch.device("meta"):
                net = build(spec)
            lazy = True
        except Exception:  # noqa: BLE001 - a network that cannot be built on the meta device
            net, lazy = build(spec), False
        try:
            net.load_state_dict(state, strict=True, assign=lazy)
        except RuntimeError as exc:
            raise PackageError(f"{self.id}: the weights do not fit its architecture {spec.get('name')}: "
                               f"{str(exc).splitlines()[0]}") from exc
        if lazy and any(t.is_meta for t in (*net.parameters(), *net.buffers())):  # buffers outside the weights
            net = build(spec)
            net.load_state_dict(state, strict=True)
        return net.eval().to(device)

    def suitability(self, volume) -> list[str]:
        """Why this model may not be made for ``volume`` (modality, dimensionality): warnings."""
        out = []
        meta = volume.metadata
        modality = meta.get("modality")
        if self.modality and modality and modality != self.modality:
            guessed = " (guessed from its intensities)" if meta.get("modality_guessed") else ""
            out.append(f"{self.name} was made for {self.modality} images; this one is {modality}{guessed}")
        if self.dims == 3 and min(volume.shape[-3:]) < 8:
            out.append(f"{self.name} is a 3D model; this image has only {min(volume.shape[-3:])} slices")
        if volume.is_4d:
            out.append("this is a 4D series: the model runs on the frame shown")
        return out


class Registry:
    """Every usable package: shipped ones and the user's; newest version of each id wins."""

    def __init__(self, folders: list[Path] | None = None) -> None:
        self.folders = folders if folders is not None else [shipped_dir(), user_dir()]
        self.problems: list[str] = []

    def packages(self) -> list[ModelPackage]:
        found: dict[str, ModelPackage] = {}
        self.problems = []
        for i, root in enumerate(self.folders):
            if not root.is_dir():
                continue
            for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if not (folder / CARD).exists():
                    continue
                try:
                    pkg = ModelPackage.open(folder, shipped=i == 0)
                except PackageError as exc:
                    self.problems.append(str(exc))
                    log.warning("%s", exc)
                    continue
                old = found.get(pkg.id)
                if old is None or _version_key(pkg.version) > _version_key(old.version):
                    found[pkg.id] = pkg
        return sorted(found.values(), key=lambda p: p.id)

    def get(self, model_id: str) -> ModelPackage:
        for pkg in self.packages():
            if pkg.id == model_id:
                return pkg
        known = ", ".join(p.id for p in self.packages()) or "none"
        raise PackageError(f"no model {model_id!r} (known: {known})")

    def install(self, package: ModelPackage, *, replace: bool = False, trust_code: bool = False) -> ModelPackage:
        """Copy a checked package folder into the user's models (copy, then rename; a replaced version is
        moved aside first and removed last, so a failed copy leaves it in place).

        Refused before anything is written: an id or version that is not one plain folder name, a folder
        holding symbolic links, weights that fail :meth:`ModelPackage.check`, and, unless ``trust_code``,
        a package that contains code (TorchScript)."""
        if not (is_safe_id(package.id) and is_safe_version(package.version)):
            raise PackageError(f"{package.folder}: id {package.id!r} or version {package.version!r} is not a plain "
                               "name (letters, digits, '.', '_', '-'; no '..' or '/')")
        if package.contains_code and not trust_code:
            raise PackageError(code_refusal(package.id))
        refuse_links(package.folder)
        package.check()
        root = user_dir().resolve()
        dest = root / f"{package.id}-{package.version}"
        if dest.parent != root or dest.is_symlink():
            raise PackageError(f"{package.id} {package.version}: would be written outside {root}; refusing it")
        if dest.exists() and not replace:
            raise PackageError(f"{package.id} {package.version} is already installed ({dest})")
        if dest.exists() and not (dest / CARD).is_file():
            raise PackageError(f"{dest} exists and is not a model package: medvision leaves it alone")
        tmp, old = dest.with_name(f".{dest.name}.tmp"), dest.with_name(f".{dest.name}.old")
        for leftover in (tmp, old):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            shutil.copytree(package.folder, tmp, symlinks=True)
            if dest.exists():
                os.replace(dest, old)
            os.replace(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not dest.exists():
                os.replace(old, dest)
            raise PackageError(f"{package.id} {package.version}: could not be copied into {root} ({exc})") from exc
        shutil.rmtree(old, ignore_errors=True)
        return ModelPackage.open(dest)


def code_refusal(what: str) -> str:
    return (f"{what} is TorchScript: it contains code that runs with your rights when the model runs (and even "
            "when it is loaded). Import it only if you trust where it came from, with --trust-code (medvision "
            "models import PATH --trust-code); medvision does not load or run it to import it")


def refuse_links(folder: str | os.PathLike) -> None:
    """Refuse a folder that holds a symbolic link: a link could pull in any file of the system. (The folder
    itself may be the user's own link: it is the one they chose.)"""
    folder = Path(folder)
    for base, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            if os.path.islink(os.path.join(base, name)):
                link = Path(base, name)
                raise PackageError(f"{folder}: {link.relative_to(folder)} is a symbolic link (to "
                                   f"{os.readlink(link)}); medvision refuses links in packages and bundles")


def write_card(folder: str | os.PathLike, card: dict) -> Path:
    """Write ``card`` as the folder's model.json (atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(folder / CARD, json.dumps(card, indent=1))
