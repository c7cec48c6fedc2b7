"""How the new head starts: a linear probe (:mod:`.probe`) fitted to the base's features on a few
training patches, kept by ``head_init="auto"`` only when it predicts the validation data better
than the class frequencies do (the head :mod:`.prepare` set). The check and the fit each get a
share of a time budget; without room for them the head stays at the class frequencies."""

from __future__ import annotations

import itertools
import time
from collections.abc import Generator

import torch

from ...core.jobs import Progress
from .budget import PROBE_SHARE, Budget
from .model import logits_function
from .prepare import Setup
from .probe import fit_head_probe
from .resume import RunState
from .sampling import PatchSampler

__all__ = ["PROBE_BATCHES", "init_head"]

#: batches of training patches the ``head_init="probe"`` head is fitted on (16 patches: 8-9 s on 2 CPU cores)
PROBE_BATCHES = 8


def init_head(setup: Setup, state: RunState, budget: Budget, use_amp: bool,
              progress) -> Generator[Progress, None, None]:
    """Job stage: a new run's linear probe (process 0 fits it, every process gets its head); sets
    ``state.head_used`` and ``state.head_note``."""
    if state.resumed or setup.head_init != "probe":
        return
    group = setup.group
    if group.main:
        yield progress("preparing", 0, 0, "fitting the new head to the base's features (a linear probe)")
        state.head_used, state.head_note = _probe(setup, budget, use_amp)
        setup.notes.append(state.head_note)
    if group.several:  # process 0's head in every process
        if not group.main:
            yield progress("preparing", 0, 0, "waiting for process 0's linear probe")
        state.head_used, state.head_note = group.broadcast((state.head_used, state.head_note))
        group.broadcast_module(setup.net)
        if not group.main:
            setup.notes.append(state.head_note)


def _probe(setup: Setup, budget: Budget, use_amp: bool) -> tuple[str, str]:
    """(the head training starts from, what to note of it)."""
    config, net, task = setup.config, setup.net, setup.task
    t_probe = time.perf_counter()
    probe_end = budget.part(PROBE_SHARE)  # (None without a time budget)
    checked = config.head_init == "auto" and bool(setup.val_regions)

    def fit_of_validation() -> float:
        return task.probabilities_fit(net, setup.val_regions, setup.val_patch, config.batch_size, setup.device,
                                      use_amp)

    if probe_end is not None and time.perf_counter() + (2 * budget.validation_s if checked else 0) >= probe_end:
        return "prior", _no_time(config.minutes)  # its check alone would take more than its share of the budget
    if checked:  # the head at the class frequencies, on the validation regions
        t_ce = time.perf_counter()
        prior_ce = fit_of_validation()
        budget.saw_validation(time.perf_counter() - t_ce)
        prior_head = {n: p.detach().clone() for n, p in net.named_parameters() if n in set(setup.tn.head)}
    fit_end = None if probe_end is None else probe_end - (budget.validation_s if checked else 0.0)
    if fit_end is not None and time.perf_counter() >= fit_end:
        return "prior", _no_time(config.minutes)
    batches = itertools.islice(_probe_batches(setup.sampler), PROBE_BATCHES)
    probe = fit_head_probe(net, logits_function(net), setup.tn.head, batches, task.n_classes + 1, seed=config.seed,
                           device=setup.device, deadline=fit_end)
    if probe is None:
        return "prior", ("the new head was not probed (it is not one module that maps each voxel's features to the "
                         "logits, or the fit did not improve on the class frequencies): it starts at those")
    short = f", cut short by the time budget after {probe['steps']} steps" if probe["stopped_early"] else ""
    fitted = (f"the new head fitted alone to the {'pretrained' if setup.fine_tune else 'random'} features of "
              f"{probe['patches']} training patches (a linear probe on {probe['voxels']} voxels at the "
              f"training loss: {probe['loss_before']:.3f} -> {probe['loss_after']:.3f}, "
              f"balanced accuracy {probe['accuracy']:.2f}, {time.perf_counter() - t_probe:.0f} s{short})")
    if not checked:
        return "probe", f"{fitted}; fine-tuning starts from it"
    probe_ce = fit_of_validation()
    versus = f"cross-entropy {probe_ce:.3f} against {prior_ce:.3f} nats per voxel"
    if probe_ce < prior_ce:
        return "probe", (f"{fitted}; on the validation data it predicts the labels better than the class "
                         f"frequencies do ({versus}), so fine-tuning starts from it")
    with torch.no_grad():  # the features do not carry the labels to data the probe was not fitted on
        for n, p in net.named_parameters():
            if n in prior_head:
                p.copy_(prior_head[n])
    return "prior", (f"{fitted}; on the validation data it predicts the labels worse than the class "
                     f"frequencies do ({versus}): the base's features do not tell these labels apart "
                     "beyond the training patches, so the new head starts at the class frequencies")


def _no_time(minutes: float) -> str:
    return (f"the new head was not probed: the time budget ({minutes:g} min) leaves no room for the linear probe "
            "and its check; it starts at the class frequencies")


def _probe_batches(sampler: PatchSampler):
    """Training patches for the probe from "epochs" 0, -1, -2 ... (ones training never draws)."""
    for k in itertools.count():
        yield from sampler.epoch(-k)
