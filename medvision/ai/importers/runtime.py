"""TorchScript and ONNX packages at run time: ``runtime_network`` (called by ``ModelPackage.network``)
and the small torch modules that put a loaded TorchScript archive or an onnxruntime session behind the
engine's hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..package_base import RUNTIME_KINDS, PackageError

__all__ = ["runtime_network", "inspect_runtime", "inspect_torchscript", "inspect_onnx", "TorchScriptNetwork",
           "OnnxNetwork", "require_onnxruntime"]

#: ONNX operator domains medvision accepts: the standard ones and onnxruntime's own contrib operators (native
#: code shipped with onnxruntime); a custom domain would need a library of someone else's code
ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def runtime_network(kind: str, path: Path, device: str = "cpu", model_id: str = ""):
    """The network of a TorchScript or ONNX package from its (already sha256-checked) file.

    ``torch.jit.load`` reads TorchScript code and tensors, not arbitrary pickled Python objects; such a
    model runs but cannot be fine-tuned."""
    if kind == "torchscript":
        try:
            net = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise PackageError(f"{model_id or path}: {path.name} is not loadable TorchScript ({exc})") from exc
        return TorchScriptNetwork(net).eval()
    if kind == "onnx":
        return OnnxNetwork(path.read_bytes(), model_id or path.name).eval()
    raise PackageError(f"{model_id or path}: unknown runtime kind {kind!r} (known: {', '.join(RUNTIME_KINDS)})")


def inspect_runtime(kind: str, path: Path, model_id: str = "") -> dict:
    """What a TorchScript or ONNX file holds, read without loading or running it (see the two below)."""
    if kind == "torchscript":
        return inspect_torchscript(path, model_id)
    if kind == "onnx":
        return inspect_onnx(path, model_id)
    raise PackageError(f"{model_id or path}: unknown runtime kind {kind!r} (known: {', '.join(RUNTIME_KINDS)})")


def inspect_torchscript(path: Path, model_id: str = "") -> dict:
    """A TorchScript archive's layout, read as a zip: never ``torch.jit.load`` (loading runs its code)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            bad = zf.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(f"{model_id or path}: {path.name} is not a TorchScript archive ({exc})") from exc
    if bad is not None:
        raise PackageError(f"{model_id or path}: {path.name} is damaged (member {bad} fails its CRC)")
    if not (any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)
            and any(n.endswith("/data.pkl") for n in names)):
        raise PackageError(f"{model_id or path}: {path.name} is not a TorchScript archive (no code/, data.pkl and "
                           "constants.pkl)")
    return {"members": len(names), "code": sorted(n for n in names if "/code/" in n and n.endswith(".py"))}


def inspect_onnx(path: Path, model_id: str = "") -> dict:
    """An ONNX graph checked without running it: the onnx checker, every operator in a known domain (and
    known to that domain), no tensor stored outside the file, a 5D image in and a 5D map out.

    Needs the ``onnx`` package (the onnx extra); without it onnxruntime opens the graph (no Python runs
    there) and its inputs and outputs are read."""
    name = model_id or str(path)
    try:
        import onnx
    except ImportError:
        session = OnnxNetwork(path.read_bytes(), name)._session("cpu")
        return _onnx_io(name, [i.shape for i in session.get_inputs()], [o.shape for o in session.get_outputs()])
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise PackageError(f"{name}: {path.name} is not a valid ONNX model ({str(exc).splitlines()[0][:300]})"
                           ) from exc
    graphs = [model.graph]
    external = [t.name for g in graphs for t in g.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise PackageError(f"{name}: {path.name} keeps tensors in other files ({', '.join(external[:3])}); "
                           "medvision imports self-contained ONNX files only")
    domains = {o.domain for o in model.opset_import} | {n.domain for n in _onnx_nodes(model)}
    foreign = sorted(d for d in domains if d not in ONNX_DOMAINS and d not in {f.domain for f in model.functions})
    if foreign:
        raise PackageError(f"{name}: {path.name} uses operators of {', '.join(foreign)}, which need code from "
                           "outside onnxruntime; medvision does not load such libraries")
    local = {(f.domain, f.name) for f in model.functions}
    unknown = sorted({n.op_type for n in _onnx_nodes(model) if (n.domain, n.op_type) not in local
                      and n.domain in ("", "ai.onnx", "ai.onnx.ml") and not onnx.defs.has(n.op_type, n.domain)})
    if unknown:
        raise PackageError(f"{name}: {path.name} uses operators ONNX does not define: {', '.join(unknown[:5])}")

    def dims(value_info):
        shape = value_info.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]

    info = _onnx_io(name, [dims(v) for v in model.graph.input if v.name not in
                           {t.name for t in model.graph.initializer}], [dims(v) for v in model.graph.output])
    info["opsets"] = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    return info


def _onnx_nodes(model):
    yield from model.graph.node
    for function in model.functions:
        yield from function.node


def _onnx_io(name: str, inputs: list, outputs: list) -> dict:
    if len(inputs) != 1 or not outputs:
        raise PackageError(f"{name}: the ONNX graph takes {len(inputs)} inputs and gives {len(outputs)} outputs; "
                           "medvision feeds one image and reads one map")
    if len(inputs[0]) != 5 or len(outputs[0]) != 5:
        raise PackageError(f"{name}: the ONNX graph maps a {len(inputs[0])}D input to a {len(outputs[0])}D output; "
                           "a 3D segmentation network maps (batch, channels, x, y, z) to the same")
    channels = outputs[0][1]
    return {"input": inputs[0], "output": outputs[0], "channels": channels if isinstance(channels, int) else None}


def require_onnxruntime():
    """The onnxruntime module, or a :class:`PackageError` asking for the onnx extra when it is not installed."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise PackageError("ONNX models need onnxruntime: install the onnx extra (pip install 'medvision[onnx]')"
                           ) from exc
    return onnxruntime


class TorchScriptNetwork(torch.nn.Module):
    """A loaded TorchScript module behind a plain module (one leaf to the engine's progress/cancel hooks,
    which ScriptModules do not accept): ``to``/``train``/``eval`` are passed on; no trainable parameters."""

    def __init__(self, script) -> None:
        super().__init__()
        self._holder = (script,)  # not a registered submodule

    @property
    def script(self):
        return self._holder[0]

    def to(self, *args, **kwargs):
        self.script.to(*args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.script.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.script(x)


class OnnxNetwork(torch.nn.Module):
    """A torch module around an onnxruntime session: torch tensors in, torch tensors out.

    The session is made per device type on first use (CUDA provider for CUDA tensors when
    onnxruntime has it, else the CPU); a model exported with a fixed batch of 1 gets one item at a time."""

    def __init__(self, model: bytes, name: str = "onnx") -> None:
        super().__init__()
        self._ort = require_onnxruntime()
        self._model = model
        self._name = name
        self._sessions: dict[str, Any] = {}
        try:
            first = self._session("cpu").get_inputs()[0]
        except Exception as exc:
            raise PackageError(f"{name}: not a usable ONNX model ({exc})") from exc
        self.input_name = first.name
        self.fixed_batch = first.shape[0] if first.shape and isinstance(first.shape[0], int) else None

    def _session(self, device_type: str):
        if device_type not in self._sessions:
            providers = ["CPUExecutionProvider"]
            if device_type == "cuda" and "CUDAExecutionProvider" in self._ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self._sessions[device_type] = self._ort.InferenceSession(self._model, providers=providers)
        return self._sessions[device_type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        session = self._session(x.device.type)
        arr = x.detach().float().cpu().numpy()
        step = self.fixed_batch or arr.shape[0]
        outs = [session.run(None, {self.input_name: arr[i:i + step]})[0] for i in range(0, arr.shape[0], step)]
        return torch.from_numpy(np.concatenate(outs)).to(x.device)

