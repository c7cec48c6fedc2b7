"""Why a segmentation network labelled a region: attribution maps over its input, for one score.

The **score** (:class:`RegionScore`) is the mean logit of one class over a region of the network's
output (a label of its proposal, a component, a box). Networks whose card says the softmax runs inside
them give probabilities; their logits are recovered up to a constant per voxel as ``log p_c - mean_k
log p_k`` (the centred logit), which is what a softmax's input is up to that constant.

* :func:`gradcam`: class activation maps of one layer for the score, brought to the input's size
  (trilinear), the negative part dropped. By default each activation is weighted by its own gradient
  (HiResCAM, Draelos & Carin 2020: the first-order share of each place in the score); ``classic`` weights
  each channel by its mean gradient (Seg-Grad-CAM, Vinogradova et al. 2020), which can light places the
  score does not depend on. The default layer is the encoder's at a quarter of the input's size: a decoder
  layer of a segmentation network shows where the output is built (the region itself), not what was seen.
* :func:`integrated_gradients`: (x - x0) times the mean gradient along the straight path from a baseline
  x0 (Sundararajan et al. 2017), by the trapezoid rule with steps doubled until the attributions sum to the
  score's change within ``tolerance`` (completeness), or ``max_steps``.
* :func:`occlusion`: the score's drop when a patch of the input is set to the baseline value, patch by
  patch over the region's neighbourhood (a map of how much each place is needed)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["RegionScore", "gradcam", "integrated_gradients", "occlusion", "IGResult", "layer_named",
           "default_layer", "blurred", "scale_blind", "LogitsOf"]


@dataclass
class RegionScore:
    """The mean (centred) logit of class ``channel`` over ``region`` (a boolean (X, Y, Z) tensor on the
    network's output grid). ``probabilities``: the network outputs a softmax (its card's ``in_network``)."""

    channel: int
    region: torch.Tensor
    probabilities: bool = False

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """The score of each batch item of ``output`` (B, C, X, Y, Z): shape (B,)."""
        out = output.float()
        if self.probabilities:
            logs = torch.log(out.clamp(min=1e-12))
            out = logs - logs.mean(1, keepdim=True)
        elif out.shape[1] > 1:
            out = out - out.mean(1, keepdim=True)
        region = self.region.to(out.device)
        chosen = out[:, self.channel]
        return (chosen * region).flatten(1).sum(1) / region.sum().clamp(min=1)


class LogitsOf(torch.nn.Module):
    """A network whose ``forward`` gives probabilities, seen through its ``logits`` method (deepbet's): the
    values before its softmax, whose gradients do not vanish where it is sure. Layer names gain "net."."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(x)


def layer_named(net: torch.nn.Module, name: str) -> torch.nn.Module:
    modules = dict(net.named_modules())
    if name not in modules:
        raise ValueError(f"the network has no layer {name!r}")
    return modules[name]


#: names of skip projections (a strided 1x1 convolution beside a block), never a default layer
_SKIPS = ("residual", "downsample", "shortcut", "skip")


def default_layer(net: torch.nn.Module, x: torch.Tensor) -> str:
    """The encoder's last convolution at a quarter of the input's size per axis (else at half; skip
    projections left out), found by one forward pass; without one, the last convolution before the smallest
    feature map. Coarse enough to read as regions, fine enough to point at a structure."""
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))
             and not any(k in n.rsplit(".", 1)[-1] for k in _SKIPS)]
    sizes: list[tuple[str, int]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: sizes.append((n, int(o[0, 0].numel())))) for n, m in convs]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    if not sizes:
        raise ValueError("the network has no 3D convolution to explain at")
    smallest = min(s for _, s in sizes)
    first_small = min(i for i, (_, s) in enumerate(sizes) if s == smallest)
    encoder = sizes[:first_small]
    for share in (64, 8):  # a quarter of the input's size per axis, else a half
        at = [n for n, s in encoder if s == int(x[0, 0].numel()) // share]
        if at:
            return at[-1]
    return encoder[-1][0] if encoder else sizes[first_small][0]


def gradcam(net: torch.nn.Module, x: torch.Tensor, score: RegionScore, layer: str, classic: bool = False
            ) -> torch.Tensor:
    """The class activation map at ``layer`` for ``score`` (HiResCAM; ``classic``: Seg-Grad-CAM's channel
    weights): float32 (X, Y, Z) on the input's grid, >= 0, unnormalised."""
    module = layer_named(net, layer)
    saved: dict[str, torch.Tensor] = {}

    def keep(_m, _i, output):
        output.retain_grad()
        saved["a"] = output

    hook = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            s = score(net(x)).sum()
            s.backward()
    finally:
        hook.remove()
    acts, grads = saved["a"], saved["a"].grad
    if grads is None:
        raise ValueError(f"the score does not depend on layer {layer!r}")
    weights = grads.mean(dim=(2, 3, 4), keepdim=True) if classic else grads
    cam = F.relu((weights * acts).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)
    return cam[0, 0].float()


@dataclass
class IGResult:
    attributions: torch.Tensor  # (X, Y, Z), summed over the input channels
    completeness_error: float  # |sum(attributions) - (F(x) - F(x0))| / |F(x) - F(x0)|
    steps: int
    score_change: float


def _path_gradients(net, x, baseline, score, alphas: torch.Tensor, batch: int) -> torch.Tensor:
    """The gradients of the score at ``baseline + a (x - baseline)`` for each alpha, (len(alphas), C, X, Y, Z)."""
    out = []
    for k in range(0, len(alphas), batch):
        a = alphas[k:k + batch].view(-1, 1, 1, 1, 1).to(x.device)
        points = (baseline + a * (x - baseline)).detach().requires_grad_(True)
        with torch.enable_grad():
            s = score(net(points)).sum()
            (grad,) = torch.autograd.grad(s, points)
        out.append(grad.detach())
    return torch.cat(out)


def integrated_gradients(net: torch.nn.Module, x: torch.Tensor, baseline: torch.Tensor, score: RegionScore,
                         tolerance: float = 0.05, start_steps: int = 8, max_steps: int = 64, batch: int = 1,
                         progress: Callable[[int], None] | None = None) -> IGResult:
    """Integrated gradients from ``baseline`` to ``x`` (both (1, C, X, Y, Z)): steps doubled (reusing the
    points already computed) until the completeness error is within ``tolerance`` or ``max_steps``."""
    with torch.no_grad():
        change = float(score(net(x)).sum() - score(net(baseline)).sum())
    steps = start_steps
    alphas = torch.linspace(0, 1, steps + 1)
    grads = _path_gradients(net, x, baseline, score, alphas, batch)
    while True:
        weights = torch.full((steps + 1,), 1.0 / steps)
        weights[0] = weights[-1] = 0.5 / steps  # the trapezoid rule
        mean_grad = (grads * weights.view(-1, 1, 1, 1, 1).to(grads.device)).sum(0, keepdim=True)
        attr = ((x - baseline) * mean_grad)[0].sum(0)
        error = abs(float(attr.sum()) - change) / max(abs(change), 1e-12)
        if progress is not None:
            progress(steps)
        if error <= tolerance or steps >= max_steps:
            return IGResult(attr.detach().float().cpu(), error, steps, change)
        # the midpoints of the current intervals: twice the steps, the old points kept
        mids = (torch.arange(steps) + 0.5) / steps
        new = _path_gradients(net, x, baseline, score, mids, batch)
        merged = torch.empty((2 * steps + 1, *grads.shape[1:]), dtype=grads.dtype, device=grads.device)
        merged[0::2], merged[1::2] = grads, new
        grads, steps = merged, 2 * steps


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (1, C, X, Y, Z) blurred by a Gaussian of ``sigma`` voxels along each axis (edges replicated): a
    baseline that keeps the image's brightness and contrast but not its detail."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    out = x
    c = x.shape[1]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = -1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        out = F.conv3d(F.pad(out, pad, mode="replicate"), g.view(shape).repeat(c, 1, 1, 1, 1), groups=c)
    return out


def scale_blind(net: torch.nn.Module) -> bool:
    """Whether the network normalises each image's features by their own statistics (instance or group
    norm): blind to the input's scale, its output does not change along the straight path from a constant
    baseline until the very start, where the steps cannot see it."""
    return any(isinstance(m, (torch.nn.InstanceNorm3d, torch.nn.GroupNorm)) for m in net.modules())


def occlusion(net: torch.nn.Module, x: torch.Tensor, score: RegionScore, patch: tuple[int, int, int],
              box: tuple[slice, slice, slice], fill: float, progress: Callable[[int, int], None] | None = None
              ) -> torch.Tensor:
    """The score's drop when each ``patch`` of the input inside ``box`` (the region's neighbourhood, (X, Y,
    Z) slices) is set to ``fill``, patches side by side: float32 (X, Y, Z), 0 outside ``box``."""
    with torch.no_grad():
        base = float(score(net(x)).sum())
        out = torch.zeros(x.shape[2:], dtype=torch.float32)
        starts = [range(s.start, s.stop, p) for s, p in zip(box, patch, strict=True)]
        total = math.prod(len(r) for r in starts)
        done = 0
        for i in starts[0]:
            for j in starts[1]:
                for k in starts[2]:
                    cell = (slice(i, i + patch[0]), slice(j, j + patch[1]), slice(k, k + patch[2]))
                    hidden = x.clone()
                    hidden[(slice(None), slice(None), *cell)] = fill
                    out[cell] = base - float(score(net(hidden)).sum())
                    done += 1
                    if progress is not None:
                        progress(done, total)
    return out
