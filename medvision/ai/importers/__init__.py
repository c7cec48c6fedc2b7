"""Bring the field's model formats in as medvision packages: ``import_any(path) -> ModelPackage``.

- a medvision package folder (or a zip of one): returned as it is;
- a MONAI bundle, folder or ``.zip`` (``configs/inference.json|yaml`` + ``configs/metadata.json``, weights
  ``models/model.pt`` as a state_dict or ``models/model.ts``): its network, preprocessing, inferer,
  postprocessing and labels become the card; the state_dict becomes ``weights.safetensors``;
- a TorchScript file (``.ts``/``.pt``) or an ONNX file (``.onnx``), with a card the caller gives
  (``card=`` or a ``model.json`` beside the file): packaged as they are, run from their own file
  (``torch.jit.load``, onnxruntime); they run but cannot be fine-tuned;
- a state_dict (``.pt``/``.pth``) with a card naming its architecture: converted to safetensors.

Nothing of an imported model runs to import it. TorchScript carries code that runs with the user's
rights: it is imported only with ``trust_code`` (``--trust-code``), marked ``contains_code`` in its
card and in the Models dock, and loaded only when the user runs it. ONNX graphs are inspected (opsets,
operators, no external tensors) and run only in onnxruntime, which executes no Python. Ids and
versions are plain names (the card's schema); folders holding symbolic links are refused.
Nothing is ever unpickled: third-party weights are read with ``torch.load(..., weights_only=True)``
(tensors and plain containers only) and a file that needs more (a whole pickled ``nn.Module``) is
refused. Bundle configs are read as data: only plain numbers, lists and ``@`` references are
evaluated, never code. Zip members that would land outside the extraction folder are refused.
Every import is checked before it is handed back: the card against its schema, the weights opened
(sha256, safetensors header, shapes with ``strict=True``); a network medvision builds itself also runs
on a small zero input. The package is written to a staging folder under the user cache;
:meth:`Registry.install` copies it into the user's models.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from ..package import CARD, ModelPackage, PackageError, code_refusal, refuse_links
from .bundle import bundle_config, import_monai_bundle
from .files import (
    MINIMAL_CARD,
    extract_zip,
    import_onnx,
    import_state_dict,
    import_torchscript,
    is_torchscript,
    staging_folder,
)
from .runtime import OnnxNetwork, TorchScriptNetwork, runtime_network

__all__ = ["import_any", "import_monai_bundle", "import_torchscript", "import_onnx", "import_state_dict",
           "is_torchscript", "runtime_network", "TorchScriptNetwork", "OnnxNetwork", "MINIMAL_CARD"]


# ---- entry point ------------------------------------------------------------------------------
def import_any(path: str | os.PathLike, *, card: dict | str | os.PathLike | None = None,
               trust_code: bool = False) -> ModelPackage:
    """A checked package made from ``path`` (see the module's docstring), in a staging folder.

    Nothing of the model runs to import it. TorchScript (a file, a bundle's ``model.ts`` or a package's)
    carries code that runs with the user's rights when the model runs: it needs ``trust_code``."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise PackageError(f"{path}: no such file or folder")
    if path.is_dir():
        refuse_links(path)
        if (path / CARD).is_file():
            return _as_it_is(path, trust_code)
        if bundle_config(path) is not None:
            return import_monai_bundle(path, trust_code=trust_code)
        raise PackageError(f"{path}: neither a medvision model package ({CARD}) nor a MONAI bundle "
                           "(configs/metadata.json and configs/inference.json)")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return import_onnx(path, card=card)
    if zipfile.is_zipfile(path) and is_torchscript(path):
        return import_torchscript(path, card=card, trust_code=trust_code)
    if suffix == ".zip":
        staging = staging_folder("zip")
        try:
            root = _find_root(extract_zip(path, staging / "unpacked"))
            if (root / CARD).is_file():
                return _as_it_is(root, trust_code)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            return import_monai_bundle(root, source=path, name=path.stem if root.name == "unpacked" else None,
                                       trust_code=trust_code)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if suffix in (".pt", ".pth", ".ckpt", ".bin", ".ts"):
        return import_state_dict(path, card=card)
    raise PackageError(f"{path}: not a format medvision imports (a medvision package, a MONAI bundle folder or "
                       ".zip, TorchScript .ts/.pt, ONNX .onnx, or a state_dict .pt with a card)")



def _as_it_is(folder: Path, trust_code: bool) -> ModelPackage:
    """A medvision package folder, checked as an import is (schema, weights, code) but not copied."""
    package = ModelPackage.open(folder)
    if package.contains_code and not trust_code:
        raise PackageError(code_refusal(f"{package.id} ({folder})"))
    package.check()
    return package


def _find_root(folder: Path) -> Path:
    """The folder of an unpacked zip that holds the bundle or package (itself, or its one top folder)."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX")
    for c in candidates:
        if (c / CARD).is_file() or bundle_config(c) is not None:
            return c
    raise PackageError(f"{folder}: the zip holds neither a medvision package nor a MONAI bundle "
                       "(configs/metadata.json and configs/inference.json)")

