"""MeshNet: brainchop's fully convolutional network of dilated 3D convolutions, as an eager module.

MeshNet (Fedorov et al. 2017; the networks brainchop ships) keeps the image at full resolution:
a stack of 3^3 convolutions with growing then shrinking dilations (e.g. 1, 2, 4, 8, 16, 8, 4, 2, 1),
each followed by an activation (and, in some published variants, batch normalisation, or an instance
normalisation that brainchop applies by the layer's name: mindgrab), then a
1^3 convolution to the classes. There is no down-sampling, so any input size works and a voxel's
class depends on a cube of ``1 + (k - 1) * sum(dilations)`` voxels around it.

The layers follow a TensorFlow.js/Keras ``Conv3D(padding="same")``: symmetric zero padding of
``dilation * (k - 1) / 2`` each side. ``forward`` returns logits (no softmax); the class is their
argmax. Parameter names: ``layers.<i>.conv.weight`` / ``.bias`` (/ ``.norm.*``) and
``classifier.weight`` / ``.bias``; :mod:`medvision.ai.networks.convert_brainchop` fills them
from a tfjs model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MeshNet", "ACTIVATIONS", "INSTANCE_NORM_EPS", "receptive_field"]

#: brainchop's ``LayerNormInPlace`` epsilon (its variance is the biased one, as torch's instance norm)
INSTANCE_NORM_EPS = 1e-5

#: Keras activation names -> modules (Keras' ``gelu`` is the exact, erf-based one; ``elu`` has alpha 1)
ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "elu": lambda: nn.ELU(alpha=1.0, inplace=True),
    "gelu": lambda: nn.GELU(approximate="none"),
    "selu": lambda: nn.SELU(inplace=True),
    "linear": nn.Identity,
}


class _Block(nn.Module):
    """One dilated 3^3 convolution (zero padding that keeps the size), optional norm, activation."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, activation: str, bias: bool,
                 batch_norm: bool, eps: float, instance_norm: bool = False) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"MeshNet needs an odd kernel size, not {kernel}")
        if batch_norm and instance_norm:
            raise ValueError("a MeshNet layer has batch or instance normalisation, not both")
        self.conv = nn.Conv3d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=bias)
        if batch_norm:
            self.norm = nn.BatchNorm3d(cout, eps=eps)
        elif instance_norm:  # brainchop's LayerNormInPlace: each channel's own mean/variance, eps 1e-5, no affine
            self.norm = nn.InstanceNorm3d(cout, eps=INSTANCE_NORM_EPS, affine=False, track_running_stats=False)
        else:
            self.norm = nn.Identity()
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class MeshNet(nn.Module):
    """Dilated 3D convolutions at full resolution, then a 1^3 convolution to ``out_channels`` logits.

    Args:
        in_channels: image channels (1 for a T1).
        out_channels: classes, background included.
        channels: feature maps of every hidden layer.
        dilations: one 3^3 layer per entry, with that dilation.
        kernel_size: the hidden layers' kernel (3).
        activation: ``"relu"``, ``"elu"``, ``"gelu"``, ``"selu"`` or ``"linear"``.
        bias: whether the hidden convolutions have a bias (the classifier always has one).
        batch_norm: batch normalisation after each hidden convolution, before the activation.
        norm_eps: the batch normalisation's epsilon (Keras' default 1e-3).
        dropout: channel dropout after each hidden layer while training (0: none).
        instance_norm: per hidden layer (or for all), each output channel standardised over the
            input's voxels (its own mean and variance, eps 1e-5, no learnt scale) before the
            activation: what brainchop does after a convolution whose tfjs name ends in ``_gn``
            (mindgrab's GroupNorm with one channel per group, exported without a layer of its own).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 3, channels: int = 21,
                 dilations: Sequence[int] = (1, 2, 4, 8, 16, 8, 4, 2, 1), kernel_size: int = 3,
                 activation: str = "relu", bias: bool = True, batch_norm: bool = False, norm_eps: float = 1e-3,
                 dropout: float = 0.0, instance_norm: bool | Sequence[bool] = False) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown MeshNet activation {activation!r} (known: {', '.join(ACTIVATIONS)})")
        if not dilations:
            raise ValueError("MeshNet needs at least one dilated layer")
        flags = [bool(instance_norm)] * len(dilations) if isinstance(instance_norm, bool) else \
            [bool(f) for f in instance_norm]
        if len(flags) != len(dilations):
            raise ValueError(f"instance_norm has {len(flags)} flags for {len(dilations)} layers")
        blocks = []
        cin = in_channels
        for d, inorm in zip(dilations, flags, strict=True):
            blocks.append(_Block(cin, channels, kernel_size, int(d), activation, bias, batch_norm, norm_eps, inorm))
            cin = channels
        self.layers = nn.ModuleList(blocks)
        # channels-last weights on the CPU: 1.4x to 1.9x faster (see .layout), but slower with torch's instance
        # norm in the layers (mindgrab: 0.84x), which keeps the plain layout
        self.cpu_memory_format = None if any(flags) else torch.channels_last_3d
        self.drop = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv3d(channels, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = self.drop(block(x))
        return self.classifier(x)


def receptive_field(dilations: Sequence[int], kernel_size: int = 3) -> int:
    """The width in voxels of the input cube one output voxel depends on."""
    return 1 + (kernel_size - 1) * sum(int(d) for d in dilations)
