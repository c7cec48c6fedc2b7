"""Core types (numpy only): Volume, jobs."""

from .jobs import Cancelled, Job, Progress, run_job
from .volume import Volume, affine_from_geometry, orientation_code

__all__ = ["Cancelled", "Job", "Progress", "Volume", "affine_from_geometry", "orientation_code", "run_job"]
