"""TorchScript and ONNX packages at run time: ``runtime_network`` (called by ``ModelPackage.network``)
and the small torch modules that put a loaded TorchScript archive or an onnxruntime session behind the
engine's hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..package import RUNTIME_KINDS, PackageError

__all__ = ["runtime_network", "TorchScriptNetwork", "OnnxNetwork"]


def runtime_network(kind: str, path: Path, device: str = "cpu", model_id: str = ""):
    """The network of a TorchScript or ONNX package from its (already sha256-checked) file.

    ``torch.jit.load`` reads TorchScript code and tensors, not arbitrary pickled Python objects; such a
    model runs but cannot be fine-tuned."""
    if kind == "torchscript":
        try:
            net = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # noqa: BLE001 - a damaged file says so
            raise PackageError(f"{model_id or path}: {path.name} is not loadable TorchScript ({exc})") from exc
        return TorchScriptNetwork(net).eval()
    if kind == "onnx":
        return OnnxNetwork(path.read_bytes(), model_id or path.name).eval()
    raise PackageError(f"{model_id or path}: unknown runtime kind {kind!r} (known: {', '.join(RUNTIME_KINDS)})")


def _onnxruntime():
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
        self._ort = _onnxruntime()
        self._model = model
        self._name = name
        self._sessions: dict[str, Any] = {}
        try:
            first = self._session("cpu").get_inputs()[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors name the problem
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

