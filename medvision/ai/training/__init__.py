"""Fine-tuning a model package on labelled cases (transfer learning), as a job.

* :mod:`.data`: the cases (images + labels merged into one label table), the split, normalisation
  and patch sampling with monai transforms.
* :mod:`.model`: the base network with a new output head, its encoder for the freeze schedule.
* :mod:`.job`: :func:`train_job`, a hold-out run or a cross-validation.
* :mod:`.trainer`: one run in stages: :mod:`.prepare` (base, network, data, patches),
  :mod:`.optim` (AdamW, warm-up + cosine, freeze then unfreeze), :mod:`.resume` (identity,
  checkpoint, resume), :mod:`.head` (the linear probe), :mod:`.loop` (epochs, validation by sliding
  windows, early stopping, time budget), :mod:`.finish` (the package); :mod:`.task` is what is
  segmentation-specific (loss, metrics, head), :mod:`.progress` the typed progress records.
* :mod:`.config`: :class:`TrainConfig`, :class:`TrainResult`.
* :mod:`.checkpoint`: the run's checkpoint (``torch.load(weights_only=True)``-loadable) and lineage.
* :mod:`.export`: the new model package (card with provenance + safetensors) in the user's models.
* :mod:`.crossval`: k-fold cross-validation, then the model on every case (``TrainConfig.folds``).
* :mod:`.distributed`: data-parallel training over the processes torchrun starts (several GPUs).

The trainer runs inside a training process (the GUI starts one; ``medvision train`` is one).
"""

from __future__ import annotations

__all__ = ["FINAL_RUN", "TrainConfig", "TrainResult", "TrainingData", "train_job"]

from .runs import FINAL_RUN


def __getattr__(name: str):  # lazy: importing the package does not import torch
    if name in ("TrainConfig", "TrainResult"):
        from . import config

        return getattr(config, name)
    if name == "train_job":
        from .job import train_job

        return train_job
    if name == "TrainingData":
        from .data import TrainingData

        return TrainingData
    raise AttributeError(name)
