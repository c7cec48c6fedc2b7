"""The public entry points: ``load(path) -> Volume`` and ``save(volume, path)``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..core.jobs import Job, Progress, run_job
from ..core.volume import Volume
from .dicom.files import FileRef
from .dicom.index import DicomIndex
from .dicom.series import load_series_job
from .routing import choose_series, is_dicom_collection
from .volumes import is_volume_file, read_volume, write_volume

log = logging.getLogger(__name__)


def load_job(
    path: str | os.PathLike,
    *,
    series: str | int | None = None,
    stack: int | None = 0,
    regularize: bool = False,
    correct_tilt: bool = True,
    index: DicomIndex | None = None,
    philips_scaling: str = "precise",
) -> Job[list[Volume]]:
    """Job form of :func:`load`: yields progress, returns a list of volumes (one unless
    ``stack=None`` asks for every stack of the series). ``philips_scaling``: "precise" (Philips'
    floating-point values, as dcm2niix writes them) or "display" (RescaleSlope/Intercept)."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    if os.path.isfile(path) and is_volume_file(path):
        yield Progress("reading", 0, 1, path)
        volume = read_volume(path)
        yield Progress("reading", 1, 1, path)
        return [volume]
    damaged: list[str] = []
    if os.path.isfile(path) and not is_dicom_collection(path):
        refs = [FileRef(path)]
    else:
        own = index is None
        index = index or DicomIndex()
        try:
            result = yield from index.scan(path)
        finally:
            if own:
                index.close()
        refs = choose_series(result, series).files
        damaged = [p for p in result.problems if ": not a DICOM file (" not in p and "empty Study/Series" not in p]
    volumes = yield from load_series_job(refs, regularize=regularize, correct_tilt=correct_tilt, stack=stack,
                                         philips_scaling=philips_scaling)
    if damaged:  # files whose header could not be read belong to no series: said with every volume
        note = (f"{len(damaged)} damaged files in {path} were left out (they may belong to this series): "
                + "; ".join(damaged[:5]) + (" ..." if len(damaged) > 5 else ""))
        for v in volumes:
            v.metadata["warnings"] = [note, *v.metadata.get("warnings", [])]
    return volumes


def load(
    path: str | os.PathLike,
    *,
    series: str | int | None = None,
    stack: int = 0,
    regularize: bool = False,
    correct_tilt: bool = True,
    index: DicomIndex | None = None,
    philips_scaling: str = "precise",
) -> Volume:
    """Load an image: a DICOM series folder, a zip or DICOMDIR, one DICOM file, NIfTI, NRRD, MHA...

    A folder holding several image series raises :class:`MultipleSeriesError` listing them unless
    ``series`` (a Series Instance UID, a series number, or ``"@N"`` from that list) picks one. A
    series whose images form several stacks (orientations, echoes) loads its largest stack
    (``stack=0``) and says so in ``volume.metadata["warnings"]``; pass ``stack=1``... for the others.
    """
    volumes = run_job(load_job(path, series=series, stack=stack, regularize=regularize,
                               correct_tilt=correct_tilt, index=index, philips_scaling=philips_scaling))
    return volumes[0]


def load_all(path: str | os.PathLike, **kwargs) -> list[Volume]:
    """Every stack of the chosen series (or the one volume of a NIfTI/NRRD file)."""
    return run_job(load_job(path, stack=None, **kwargs))


def save(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a volume as NIfTI (.nii/.nii.gz), NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd), atomically."""
    return write_volume(volume, path)
