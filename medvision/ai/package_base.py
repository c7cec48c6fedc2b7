"""What a model package's code shares with the code that builds and runs its networks: the error and
the runtime kinds. It sits below :mod:`.package`, :mod:`.architectures` and :mod:`.importers.runtime`
(the package builds networks through both, and both raise :class:`PackageError`), so none of them
imports another to get these; :mod:`.package` offers them under its own name too."""

from __future__ import annotations

__all__ = ["RUNTIME_KINDS", "CODE_KINDS", "PackageError"]

#: architectures run from their own (sha256-checked) file instead of being rebuilt from safetensors: they run
#: but cannot be fine-tuned. TorchScript is read by ``torch.jit.load`` (TorchScript code and tensors, not
#: arbitrary Python objects) and ONNX by onnxruntime; see :mod:`medvision.ai.importers`.
RUNTIME_KINDS: dict[str, tuple[str, ...]] = {"torchscript": (".ts", ".pt"), "onnx": (".onnx",)}
#: runtime kinds that carry code (TorchScript methods run with the user's rights when loaded and run); ONNX
#: graphs run in onnxruntime, which executes no Python
CODE_KINDS = ("torchscript",)


class PackageError(Exception):
    """A model package that cannot be used (missing, damaged, tampered with, not understood)."""
