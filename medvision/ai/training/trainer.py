"""One training run as a job, in stages (:func:`train_run`; :func:`.job.train_job` starts it): it
yields progress and returns a :class:`TrainResult` after writing the new model package.

The images are seen at the voxel size the base network learnt at (``spacing_mm="auto"``: the base
card's ``input.spacing_mm``, or for a base that sees a localizer's box resized to a fixed shape
-- deepbet: a ~200 mm box over 256 voxels -- :data:`LOCALIZER_BOX_SPACING_MM`): each training
region and validation context is resampled to it (trilinear; labels per class), and the new card
asks the engine for the same ``spacing_mm``. Every base weight but the output head's is reused
(``transfer="all"``). The new head is first fitted alone to the pretrained features of a few
training patches (:mod:`.probe`: a linear probe at the training loss, kept by ``head_init="auto"`` only when it
predicts the validation data better than the class frequencies do), so that
fine-tuning starts from a head that already reads the base's features for the new labels; a
network from scratch starts at the class frequencies (``"prior"``: softmax biases = log
frequencies, weights scaled down).

A base that sees images as brainchop does (a card with ``input.conform``: brainchop's MeshNet
packages) is fine-tuned on what it sees (:mod:`.conformed`): every case conformed to the 256^3
1 mm LIA cube, normalised and cropped by the pipeline's own functions, the labels carried onto the
cube; validation runs the network on the whole validation context at once (the slab and the
network's receptive field around it), as the engine runs the crop; the new card runs as the base
runs (``inference.mode = "brainchop"``), without the base's largest-component post-processing.

One epoch: random patches of the training regions (:class:`.sampling.PatchSampler`, centred on
the background and each label equally often), DiceCE loss (monai, softmax, one-hot targets),
AdamW with a linear warm-up then a cosine decay (set every step); a fine-tuning can first hold the
encoder still (``freeze_part="encoder"``) or every pretrained layer (``"body"``: with
``transfer="all"`` only the new head learns, a linear probe, then fine-tuning, "LP-FT") for
``freeze_epochs`` epochs (a fraction counts iterations; none by default), then trains them too,
warmed up again over one epoch (the encoder at ``lr * encoder_lr_factor``);
autocast + GradScaler on CUDA only. Then validation: sliding windows (monai, roi = patch) over each
validation region at the training voxel size, the probabilities mapped back onto the region's own
grid (as the engine does), Dice per label there (monai ``compute_dice``; a label absent from a
region's reference is left out of its mean), mean over labels. The best weights are kept; training
stops after ``epochs``, when ``minutes`` is used, or when the validation Dice has not improved for
``patience`` epochs. ``minutes`` covers the whole run, from its start to the package written
(:mod:`.budget`): the probe gets a share of it, and the last epoch stops early enough for its
validation, its checkpoint and the package to fit.

Started by torchrun in several processes (several GPUs), the run is data-parallel
(:mod:`.distributed`): each process draws its share of an epoch's patches, the gradients are
averaged every step, process 0 alone validates, checkpoints and writes the package.

After every epoch the checkpoint (:mod:`.checkpoint`) is written before the epoch's progress
record is yielded, so closing the job at any yield keeps every finished epoch; the same config
(base, new id, data hash) in the same work folder resumes from it. Progress records: stage
``"training"`` (done = iteration in the epoch) about every 20 iterations, stage ``"epoch"`` (done =
epoch, total = epochs or 0) with ``preview`` = ``{epoch, train_loss, val_dice, per_label, lr,
seconds, eta_s, best_val_dice, best_epoch, frozen}``.
"""

from __future__ import annotations

from ...core.jobs import Job
from ..package import Registry
from .budget import Budget
from .config import DEFAULT_EPOCHS, LOCALIZER_BOX_SPACING_MM, Run, TrainConfig, TrainResult, training_spacing
from .data import TrainingData
from .finish import anonymous_cases, fold_result, write_model
from .head import init_head
from .loop import train_epochs
from .optim import Optimisation, WarmupCosine
from .prepare import prepare
from .progress import Reporter
from .resume import mark_finished, open_run
from .task import init_head_from_priors
from .validation import estimate_validation_s

__all__ = ["TrainConfig", "TrainResult", "train_run", "DEFAULT_EPOCHS", "WarmupCosine", "training_spacing",
           "init_head_from_priors", "LOCALIZER_BOX_SPACING_MM", "anonymous_cases"]


def train_run(config: TrainConfig, data: TrainingData, registry: Registry | None = None,
              run: Run | None = None) -> Job[TrainResult]:
    """One training run, stage by stage: on ``run.split`` when given (a cross-validation's fold or final
    model), else on ``data.split``."""
    budget = Budget(config.minutes)  # (the whole run counts: loading, probe, validation, the package)
    progress = Reporter(run)
    setup = yield from prepare(config, data, registry, run, progress)
    opt = Optimisation(config, setup.net, setup.tn, setup.device, setup.notes)
    start, state = yield from open_run(config, setup, opt, data.data_hash(), run, progress)
    if start == "reuse":
        return fold_result(setup, state)
    group, net = setup.group, setup.net
    if budget.limited and group.main:  # what the end of an epoch will cost, before it was measured
        budget.saw_checkpoint(6 * sum(p.numel() * p.element_size() for p in net.parameters()) / 200e6)
        if setup.val_regions:
            budget.saw_validation(estimate_validation_s(net, setup.val_regions, setup.patch, config.batch_size,
                                                        setup.device, opt.use_amp, whole=setup.val_patch is None))
    yield from init_head(setup, state, budget, opt.use_amp, progress)
    yield from train_epochs(setup, opt, state, budget, run, progress)
    group.check_same(net)
    if run is not None and not run.export:  # a cross-validation's fold: its figures, no package
        if group.main:
            mark_finished(state.workdir, stopped_because=state.stopped)
        net.to("cpu")
        return group.broadcast(fold_result(setup, state))  # (process 0's figures: it validated)
    if not group.main:  # process 0 writes the package
        net.to("cpu")
        return group.broadcast(None)
    yield progress("writing the package", 0, 0, config.new_id)
    result = write_model(setup, opt, state, data, run)
    net.to("cpu")
    return group.broadcast(result)
