"""Fine-tuning a model package on labelled cases (transfer learning), as a job.

* :mod:`.data`: the cases (images + labels merged into one label table), the split, normalisation
  and patch sampling with monai transforms.
* :mod:`.model`: the base network with a new output head, its encoder for the freeze schedule.
* :mod:`.trainer`: :class:`TrainConfig`, :func:`train_job` (the loop: DiceCE, AdamW, warm-up +
  cosine, freeze then unfreeze, validation by sliding windows, early stopping, checkpoints, resume).
* :mod:`.checkpoint`: the run's checkpoint (``torch.load(weights_only=True)``-loadable) and lineage.
* :mod:`.export`: the new model package (card with provenance + safetensors) in the user's models.
* :mod:`.crossval`: k-fold cross-validation, then the model on every case (``TrainConfig.folds``).
* :mod:`.distributed`: data-parallel training over the processes torchrun starts (several GPUs).

The trainer runs inside a training process (the GUI starts one; ``medvision train`` is one).
"""

from __future__ import annotations

__all__ = ["FINAL_RUN", "TrainConfig", "TrainResult", "TrainingData", "train_job"]

#: what a cross-validation calls its last run, the model trained on every case, in progress records
FINAL_RUN = "the model (all cases)"


def __getattr__(name: str):  # lazy: importing the package does not import torch
    if name in ("TrainConfig", "TrainResult", "train_job"):
        from . import trainer

        return getattr(trainer, name)
    if name == "TrainingData":
        from .data import TrainingData

        return TrainingData
    raise AttributeError(name)
