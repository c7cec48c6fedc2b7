"""deepbet's network as an eager PyTorch module: a 3D LinkNet with instance normalisation.

deepbet 1.0.2 (Fisch et al., MIT licence) ships its two networks -- the brain segmenter and the
bounding-box localizer -- as TorchScript files that share one architecture. This module rebuilds
that architecture so the weights can be loaded, inspected and fine-tuned like any other module.
The parameter names equal the TorchScript ``state_dict()`` names, so
``LinkNet3D().load_state_dict(torchscript_module.state_dict(), strict=True)`` works as is.

Shape of the network (``channels = (16, 32, 64, 128)``)::

    init   7^3 conv stride 2 + norm + ReLU + 3^3 max-pool stride 2       -> 1/4 resolution
    down0  two residual blocks (16)                                       -> 1/4
    down1..down3  two residual blocks, the first with stride 2            -> 1/8, 1/16, 1/32
    up0..up2  1^3 conv (C -> C/4), 3^3 transposed conv stride 2, 1^3 conv, added to the skip
    up3    the same with stride 1
    tp_conv1 (transposed conv stride 2, 16 -> 8), conv (8 -> 8), tp_conv2 (2^3 stride 2, 8 -> 2)

Every norm is ``InstanceNorm3d`` without affine parameters or running statistics; convolutions
have no bias except in the three head layers. ``forward`` returns softmax probabilities (as the
original does); ``logits`` gives the values before the softmax, for training losses. Spatial
sizes must be multiples of 32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LinkNet3D"]


def _norm_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.InstanceNorm3d(channels), nn.ReLU(inplace=True))


class _ResidualBlock(nn.Module):
    """Two 3^3 convolutions with a shortcut (a strided 1^3 conv when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            nn.InstanceNorm3d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_ch),
        )
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=stride, bias=False), nn.InstanceNorm3d(out_ch)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.double_conv(x) + shortcut)


class _Encoder(nn.Module):
    """One encoder stage: two residual blocks, the first one possibly strided."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.block1 = _ResidualBlock(in_ch, out_ch, stride)
        self.block2 = _ResidualBlock(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x))


class _Decoder(nn.Module):
    """LinkNet decoder stage: squeeze to a quarter of the channels, upsample, expand."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        mid = in_ch // 4
        self.conv1 = _norm_relu(nn.Conv3d(in_ch, mid, 1, bias=False), mid)
        self.tp_conv = _norm_relu(
            nn.ConvTranspose3d(mid, mid, 3, stride=stride, padding=1, output_padding=stride - 1, bias=False), mid
        )
        self.conv2 = _norm_relu(nn.Conv3d(mid, out_ch, 1, bias=False), out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.tp_conv(self.conv1(x)))


class LinkNet3D(nn.Module):
    """deepbet's 3D LinkNet (segmenter and localizer alike).

    Args:
        in_channels: image channels (1 for a T1 image).
        out_channels: classes of the softmax (2: background, brain).
        channels: feature channels of the four encoder stages.
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, channels: Sequence[int] = (16, 32, 64, 128)
    ) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.init = nn.Sequential(
            nn.Conv3d(in_channels, c0, 7, stride=2, padding=3, bias=False),
            nn.InstanceNorm3d(c0),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        self.down0 = _Encoder(c0, c0, stride=1)
        self.down1 = _Encoder(c0, c1, stride=2)
        self.down2 = _Encoder(c1, c2, stride=2)
        self.down3 = _Encoder(c2, c3, stride=2)
        self.up0 = _Decoder(c3, c2, stride=2)
        self.up1 = _Decoder(c2, c1, stride=2)
        self.up2 = _Decoder(c1, c0, stride=2)
        self.up3 = _Decoder(c0, c0, stride=1)
        half = c0 // 2
        self.tp_conv1 = _norm_relu(nn.ConvTranspose3d(c0, half, 3, stride=2, padding=1, output_padding=1), half)
        self.conv = _norm_relu(nn.Conv3d(half, half, 3, padding=1), half)
        self.tp_conv2 = nn.ConvTranspose3d(half, out_channels, 2, stride=2)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores before the softmax, shape ``(N, out_channels, D, H, W)``."""
        e0 = self.init(x)
        e1 = self.down0(e0)
        e2 = self.down1(e1)
        e3 = self.down2(e2)
        e4 = self.down3(e3)
        d = self.up0(e4) + e3
        d = self.up1(d) + e2
        d = self.up2(d) + e1
        d = self.up3(d) + e0
        return self.tp_conv2(self.conv(self.tp_conv1(d)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities over ``out_channels`` (channel 1 = brain for deepbet)."""
        return torch.softmax(self.logits(x), dim=1)
