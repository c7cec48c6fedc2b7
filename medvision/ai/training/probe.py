"""A linear probe as the new head's start (``TrainConfig.head_init="probe"``).

The pretrained body is run once (inference mode) over a few training patches; the features that
reach the output head are kept for voxels drawn from every class, and the head alone is fitted to
them (full batch, Adam) at the loss fine-tuning will use, cross-entropy + soft Dice with each class
weighted back to its share of the patches. The fit is exact for a head that maps each voxel's
features to its own logits: a 1x1 convolution, or a transposed convolution whose kernel is its
stride (one linear map per kernel position). Fine-tuning then starts from a head that already
reads the base's features for the new labels (Kumar et al., "Fine-tuning can distort pretrained
features and underperform out-of-distribution", ICLR 2022: LP-FT), instead of from one that says
the class frequencies everywhere and first has to find each small structure by itself.

A class-balanced probe (every class weighted alike) was tried first: it marks a quarter of the
image as each small structure, and fine-tuning from it did worse on a structure the base has no
feature for (brain1's tumour, 0.13 against 0.39 from the class frequencies). The trainer checks the
fitted head on the validation data before keeping it (see ``trainer.train_job``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

__all__ = ["head_module", "fit_head_probe"]


def head_module(net: nn.Module, head: list[str]) -> nn.Module | None:
    """The one module that holds the head's parameters and nothing else (None when there is none)."""
    owners = {name.rsplit(".", 1)[0] if "." in name else "" for name in head}
    if len(owners) != 1:
        return None
    owner = owners.pop()
    if not owner:
        return None
    module = net.get_submodule(owner)
    if sorted(f"{owner}.{n}" for n, _ in module.named_parameters()) != sorted(head):
        return None
    return module


def _per_voxel(module: nn.Module) -> tuple[int, ...] | None:
    """The up-sampling factor per axis when ``module`` maps each input voxel's features linearly to
    its own output voxels (a 1x1 convolution; a transposed convolution whose kernel is its stride),
    else None."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        ok = all(k == 1 for k in module.kernel_size) and all(s == 1 for s in module.stride) \
            and all(p == 0 for p in module.padding) and module.groups == 1
        return (1,) * len(module.kernel_size) if ok else None
    if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
        ok = tuple(module.kernel_size) == tuple(module.stride) and all(p == 0 for p in module.padding) \
            and all(p == 0 for p in module.output_padding) and module.groups == 1 \
            and all(d == 1 for d in module.dilation)
        return tuple(module.stride) if ok else None
    return None


def fit_head_probe(net: nn.Module, logits: Callable[[torch.Tensor], torch.Tensor], head: list[str],
                   batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n_classes: int, *,
                   voxels_per_class: int = 20000, steps: int = 300, lr: float = 0.05, seed: int = 0,
                   device: str = "cpu", deadline: float | None = None) -> dict | None:
    """Fit the head of ``net`` alone to the features its body gives for ``batches`` (image, label),
    at the fine-tuning's own loss (cross-entropy + soft Dice over every class, background included)
    on the patches' voxels; the rest of the network is untouched. Up to ``voxels_per_class`` voxels
    of each of the ``n_classes`` classes are drawn (so that a small structure is seen well) and
    weighted back to the classes' frequencies in the patches. Returns ``{"patches", "voxels",
    "loss_before", "loss_after", "accuracy"}`` (balanced accuracy of the probe on its voxels), or
    None (nothing changed) when the head is not one module that maps each voxel's features to its own
    logits and gives the network's output, or when the fit did not lower the loss. ``deadline`` (a
    ``time.perf_counter()`` time): the patches not reached by then are left out (the first is always
    used) and the fit stops there (after its first step); ``"stopped_early"`` in the result says so."""
    module = head_module(net, head)
    factor = _per_voxel(module) if module is not None else None
    if factor is None:
        return None
    batches = [(x, y) for x, y in batches]
    if not batches:
        return None
    y = torch.cat([t.cpu() for _, t in batches])[:, 0].long()  # (B, *high): the voxels are chosen first,
    picked = _pick_voxels(y, n_classes, voxels_per_class, seed, factor)  # only their features are kept
    if picked is None:
        return None
    where, target, low, sub = picked
    found = _head_inputs(net, module, logits, batches, where, low, device, deadline)
    if found is None:
        return None
    x, n_patches = found
    stopped_early = n_patches < len(y)
    if stopped_early:
        reached = where[:, 0] < n_patches
        if not bool(reached.any()):
            return None
        x, where, target, sub = x[reached], where[reached], target[reached], sub[reached]
        y = y[:n_patches]
    fitted = _fit_head(module, x, target, sub, y, steps, lr, deadline)
    if fitted is None:
        return None
    cut = fitted.pop("cut")
    fitted.update(patches=int(n_patches), stopped_early=stopped_early or cut)
    return fitted


def _pick_voxels(y: torch.Tensor, n_classes: int, per_class: int, seed: int, factor: tuple[int, ...]):
    """Up to ``per_class`` voxels of each class: (their indices, classes, indices at the head's input, kernel
    positions inside each up-sampling block), or None when no class has a voxel."""
    dims = len(factor)
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(n_classes):
        where = torch.nonzero(y == c)  # (n, 1 + dims)
        if len(where):
            picks.append(where[torch.from_numpy(rng.choice(len(where), min(len(where), per_class), replace=False))])
    if not picks:
        return None
    where = torch.cat(picks)
    target = y[tuple(where.T)]
    low = [where[:, 1 + d] // factor[d] for d in range(dims)]
    sub = torch.zeros(len(where), dtype=torch.long)  # the kernel position inside the up-sampling block
    for d in range(dims):
        sub = sub * factor[d] + where[:, 1 + d] % factor[d]
    return where, target, low, sub


def _head_inputs(net: nn.Module, module: nn.Module, logits, batches, where, low, device: str,
                 deadline: float | None) -> tuple[torch.Tensor, int] | None:
    """The features reaching the head at the picked voxels, and the patches reached before ``deadline`` (the
    first always); None when the head's output is not the network's logits (something comes after it)."""
    seen: dict[str, torch.Tensor] = {}

    def keep_input(_m, args):
        seen["x"] = args[0].detach()

    def keep_output(_m, _args, out):
        seen["y"] = out.detach()

    dims = len(low)
    x = None
    first = 0
    was_training = net.training
    hooks = [module.register_forward_pre_hook(keep_input), module.register_forward_hook(keep_output)]
    try:
        net.eval()
        with torch.no_grad():
            for images, labels in batches:
                if first and deadline is not None and time.perf_counter() >= deadline:
                    break  # (the voxels of the patches not reached are left out by the caller)
                out = logits(images.to(device))
                if "x" not in seen or seen["y"].shape != out.shape or not torch.allclose(
                        seen["y"].float(), out.float(), atol=1e-4, rtol=1e-3):
                    return None  # something after the head: its output is not the logits
                f = seen.pop("x").float().cpu()
                seen.clear()
                mine = (where[:, 0] >= first) & (where[:, 0] < first + len(labels))
                if x is None:
                    x = torch.zeros(len(where), f.shape[1])
                x[mine] = f.permute(0, *range(2, 2 + dims), 1)[(where[mine, 0] - first, *(i[mine] for i in low))]
                first += len(labels)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return x, first


def _settled(losses: list[float], window: int = 20, tol: float = 1e-4) -> bool:
    """Whether the fit has converged: the loss went down by less than ``tol`` of itself over the last
    ``window`` steps (on the shipped bases most fits settle within 100 to 160 of the 300 steps)."""
    return len(losses) > window and losses[-window - 1] - losses[-1] < tol * max(abs(losses[-1]), 1e-3)


def _fit_head(module: nn.Module, x, target, sub, y, steps: int, lr: float, deadline: float | None) -> dict | None:
    """The head's weights fitted to (x, target) at DiceCELoss with each class weighted back to its share of
    ``y``; written into ``module`` only when the loss went down. Its figures, with ``cut``: the deadline
    stopped the fit."""
    # voxels grouped by their kernel position: one matrix product per position (the loss is a sum
    # over voxels, so their order does not matter)
    order = torch.argsort(sub, stable=True)
    x, target, sub = x[order], target[order], sub[order]
    weight, bias = module.weight, module.bias  # fitted on copies: the module changes only at the end
    transposed = isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d))
    if transposed:  # (C_in, C_out, *k)
        w = weight.detach().float().cpu().flatten(2).permute(2, 0, 1).contiguous()  # (k, C_in, C_out)
    else:  # (C_out, C_in, 1...)
        w = weight.detach().float().cpu().flatten(1).T[None].contiguous()
    w.requires_grad_(True)
    b = (bias.detach().float().cpu().clone() if bias is not None else torch.zeros(w.shape[-1])).requires_grad_(True)
    params = [w, b] if bias is not None else [w]
    k_out = w.shape[-1]
    drawn = torch.bincount(target, minlength=k_out).float()
    share = torch.bincount(y.ravel(), minlength=k_out)[:k_out].float()
    weights = share / share.sum() / drawn.clamp_min(1)  # each drawn voxel stands for its class's share
    # class-major (classes, voxels): a softmax over the few classes of each voxel is 20x faster on the CPU
    # along the first axis than along the last
    voxel_weight = weights[target][None]
    onehot = torch.nn.functional.one_hot(target, k_out).float().T
    xt = x.T.contiguous()

    counts = torch.bincount(sub, minlength=w.shape[0]).tolist()
    starts = np.cumsum([0, *counts[:-1]]).tolist()
    spans = [(k, a, a + n) for k, (a, n) in enumerate(zip(starts, counts, strict=True)) if n]

    def scores() -> torch.Tensor:  # (classes, voxels)
        return torch.cat([w[k].T @ xt[:, a:e] for k, a, e in spans], dim=1) + b[:, None]

    def loss_of() -> torch.Tensor:  # as monai's DiceCELoss over the patches (softmax, background included)
        s = scores()
        log_p = s - s.logsumexp(0, keepdim=True)
        p = log_p.exp() * voxel_weight
        dice = (2 * (p * onehot).sum(1) + 1e-5) / (p.sum(1) + (onehot * voxel_weight).sum(1) + 1e-5)
        # cross-entropy with class weights, as torch's: the weighted mean of -log p of the true class
        cross_entropy = -(voxel_weight[0] * log_p.gather(0, target[None])[0]).sum() / voxel_weight.sum()
        return cross_entropy + 1 - dice.mean()

    opt = torch.optim.Adam(params, lr=lr)
    with torch.no_grad():
        before = float(loss_of())
    done, cut, seen = 0, False, []
    for step in range(steps):
        if step and deadline is not None and time.perf_counter() >= deadline:
            cut = True
            break
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        seen.append(float(loss.detach()))
        if _settled(seen):
            break
        done = step + 1
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(loss_of())
        pred = scores().argmax(0)
        accuracy = float(np.mean([(pred[target == c] == c).float().mean() for c in target.unique()]))
    if not np.isfinite(after) or after > before:  # never start from a worse head than the one it had
        return None
    with torch.no_grad():
        if transposed:
            weight.copy_(w.detach().permute(1, 2, 0).reshape(weight.shape).to(weight))
        else:
            weight.copy_(w.detach()[0].T.reshape(weight.shape).to(weight))
        if bias is not None:
            bias.copy_(b.detach().to(bias))
    return {"voxels": int(len(target)), "loss_before": before, "loss_after": after, "accuracy": accuracy,
            "steps": done, "cut": cut}
