"""Names of a training job's runs, shared with the window and the CLI without importing torch."""

from __future__ import annotations

__all__ = ["FINAL_RUN"]

#: what a cross-validation calls its last run, the model trained on every case, in progress records
FINAL_RUN = "the model (all cases)"
