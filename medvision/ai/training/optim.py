"""How the weights move: AdamW over parameter groups (the encoder at ``lr * encoder_lr_factor``),
the learning rate set every step (:class:`WarmupCosine`), the freeze schedule (the encoder or
every pretrained layer held for ``freeze_epochs``, then warmed up again over one epoch), and the
step itself (autocast + GradScaler on CUDA only, gradients averaged over processes)."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .model import TrainNetwork, encoder_modules, encoder_parameters, head_and_decoder_parameters

__all__ = ["WarmupCosine", "Optimisation"]


class WarmupCosine:
    """Learning-rate factor: linear warm-up over ``warmup_epochs``, then a cosine decay to ``floor``
    at the horizon (the planned epochs; estimated from the time budget when only that is given)."""

    def __init__(self, warmup_epochs: float, floor: float = 0.02) -> None:
        self.warmup = float(warmup_epochs)
        self.floor = float(floor)
        self.steps = 0
        self.horizon: float | None = None

    def factor(self, position: float) -> float:
        warm = min(1.0, position / self.warmup) if self.warmup > 0 else 1.0
        if self.horizon is None or self.horizon <= self.warmup:
            return warm
        frac = min(1.0, max(0.0, (position - self.warmup) / (self.horizon - self.warmup)))
        return warm * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * frac)))

    def state_dict(self) -> dict:
        return {"kind": "warmup-cosine", "warmup_epochs": self.warmup, "floor": self.floor, "steps": self.steps,
                "horizon": -1.0 if self.horizon is None else float(self.horizon)}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state.get("steps", 0))
        h = float(state.get("horizon", -1.0))
        self.horizon = None if h < 0 else h


class Optimisation:
    """The optimiser, its learning-rate schedule and the freeze schedule of one run."""

    def __init__(self, config: TrainConfig, net: torch.nn.Module, tn: TrainNetwork, device: str,
                 notes: list[str]) -> None:
        fine_tune = bool(tn.pretrained)
        self.net = net
        self.part = config.freeze_part
        encoder = encoder_parameters(net)
        self.encoder = encoder
        pretrained = set(tn.pretrained)
        self.held = encoder if config.freeze_part == "encoder" else \
            [p for n, p in net.named_parameters() if n in pretrained]
        self.freeze_epochs = float(config.freeze_epochs) if fine_tune and self.held else 0.0
        self.encoder_factor = float(config.encoder_lr_factor) if fine_tune else 1.0
        if self.freeze_epochs:
            held_text = "every pretrained layer held: only the new head learns" if config.freeze_part == "body" \
                else "the encoder held"
            notes.append(f"for the first {self.freeze_epochs:g} epoch{'s' if self.freeze_epochs > 1 else ''} "
                         f"{held_text}; then all of it trains, what was held warmed up again over one epoch")
        groups = [{"params": encoder, "name": "encoder", "base_lr": config.lr * self.encoder_factor}] if encoder \
            else []
        rest = head_and_decoder_parameters(net)
        if self.freeze_epochs and config.freeze_part == "body":  # a held (pretrained) decoder warms up again
            held_ids = {id(p) for p in self.held}
            groups.append({"params": [p for p in rest if id(p) in held_ids], "name": "decoder", "base_lr": config.lr})
            rest = [p for p in rest if id(p) not in held_ids]
        groups.append({"params": rest, "name": "decoder+head", "base_lr": config.lr})
        for g in groups:
            g["lr"] = g["base_lr"]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.use_amp = bool(config.amp) and device == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.schedule = WarmupCosine(config.warmup_epochs)

    def frozen_at(self, position: float) -> bool:
        """Whether the held layers are held at ``position`` (epochs from the start, a fraction within one)."""
        return position < self.freeze_epochs

    def freeze(self, on: bool) -> None:
        """Hold the held layers still (``on``) or let them train; held norms and dropouts run as in inference."""
        for p in self.held:
            p.requires_grad_(not on)
        body = on and self.part == "body"
        self.net.train(not body)
        for m in encoder_modules(self.net) if on and not body else ():
            m.eval()

    def set_lr(self, position: float) -> None:
        """Every group's learning rate at ``position`` (what was held warms up again over one epoch)."""
        factor = self.schedule.factor(position)
        for g in self.optimizer.param_groups:
            extra = min(1.0, position - self.freeze_epochs) if g["name"] in ("encoder", "decoder") and \
                self.freeze_epochs else 1.0
            g["lr"] = g["base_lr"] * factor * max(0.0, extra)

    def step(self, loss: torch.Tensor, average_gradients) -> None:
        """Backward (scaled under autocast), gradients averaged over processes, the optimiser's step."""
        self.scaler.scale(loss).backward()
        average_gradients(self.net.parameters())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.steps += 1

    def learning_rates(self) -> dict[str, float]:
        return {g["name"]: float(g["lr"]) for g in self.optimizer.param_groups}

    def state(self) -> dict:
        """What a checkpoint keeps of it."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.use_amp else {}}

    def restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
