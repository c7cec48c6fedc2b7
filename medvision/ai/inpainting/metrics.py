"""How well a hole is filled, on intensities scaled by the voided image (:func:`.data.intensity_range`),
clipped to [0, 1] as the BraTS 2023 inpainting challenge measures: PSNR, MAE and SSIM inside the hole,
the texture ratio (high-frequency energy of the fill against the true tissue's: a blurry fill is well
below 1) and through-plane consistency."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["masked_psnr", "masked_mae", "hole_ssim", "texture_ratio", "through_plane_ratio"]


def _clipped(*arrays) -> list[torch.Tensor]:
    return [torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).float().clamp(0, 1)
            for a in arrays]


def masked_psnr(pred, truth, mask) -> float:
    """PSNR (dB, data range 1) over the voxels of ``mask``; inf when equal there, nan for an empty mask."""
    pred, truth = _clipped(pred, truth)
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask) > 0.5
    if not m.any():
        return math.nan
    mse = float(((pred - truth)[m] ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def masked_mae(pred, truth, mask) -> float:
    pred, truth = _clipped(pred, truth)
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask) > 0.5
    return float((pred - truth)[m].abs().mean()) if m.any() else math.nan


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def hole_ssim(pred2d, truth2d, mask2d) -> float:
    """The SSIM map (Gaussian window 11, sigma 1.5, data range 1) averaged over the hole of one slice."""
    pred, truth = _clipped(pred2d, truth2d)
    m = torch.as_tensor(np.asarray(mask2d)) > 0.5
    if not m.any():
        return math.nan
    x, y = pred[None, None], truth[None, None]
    w = _gaussian()
    pad = w.shape[-1] // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), w)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(ssim[0, 0][m].mean())


def _laplacian(t: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    return F.conv2d(F.pad(t[None, None], (1, 1, 1, 1), mode="replicate"), k)[0, 0]


def texture_ratio(pred2d, truth2d, mask2d) -> float:
    """Variance of the Laplacian inside the hole, the fill's over the true tissue's (1: the same
    texture; a blurry fill is well below 1); nan where the truth is flat there."""
    pred, truth = _clipped(pred2d, truth2d)
    m = torch.as_tensor(np.asarray(mask2d)) > 0.5
    if int(m.sum()) < 4:
        return math.nan
    vt = float(_laplacian(truth)[m].var())
    return float(_laplacian(pred)[m].var()) / vt if vt > 1e-8 else math.nan


def through_plane_ratio(pred3d, truth3d, mask3d) -> float:
    """Mean absolute change from slice to slice inside the hole (where both slices are in it), the
    fill's over the true image's: near 1 a fill as consistent across slices as the anatomy."""
    pred, truth = _clipped(pred3d, truth3d)
    m = torch.as_tensor(np.asarray(mask3d)) > 0.5
    both = m[1:] & m[:-1]
    if not both.any():
        return math.nan
    dp = (pred[1:] - pred[:-1]).abs()[both].mean()
    dt = (truth[1:] - truth[:-1]).abs()[both].mean()
    return float(dp / dt) if float(dt) > 1e-8 else math.nan
