"""Volume preparation for the 3D view (numpy only: may run on a worker thread): the volume block-averaged
down to the rendered grid size and reoriented to the closest LPS axis order, ready for
:func:`medvision.ui.views.vtk_support.image_data`.

The sampling factors are shared with the label surfaces (:func:`~medvision.ui.views.label_surfaces.downsample_factors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.jobs import Job, Progress, run_job
from ...core.volume import Volume
from .label_surfaces import downsample_factors

__all__ = ["DEFAULT_MAX_DIM", "SYNC_VOXELS", "PreparedVolume", "needs_worker", "prepare_job", "prepare_volume"]

#: longest axis of the grid that is rendered; larger volumes are block-averaged down to it
DEFAULT_MAX_DIM = 256
#: volumes with more voxels than this are prepared on a worker thread (block-averaging costs
#: ~2.6 ns a source voxel here: 0.4 s for 512x512x600 int16, 16 ms for 512x512x20)
SYNC_VOXELS = 8 * 1024 * 1024


@dataclass
class PreparedVolume:
    """A 3D grid ready for VTK: C-contiguous ``(z, y, x)`` in its native dtype, index axes
    pointing L, P, S (closest), so that the direction matrix has a positive determinant."""

    array: np.ndarray
    spacing: np.ndarray  # (3,) mm along x, y, z
    origin: np.ndarray  # (3,) LPS of voxel (0, 0, 0)
    direction: np.ndarray  # (3, 3) columns: index axes in LPS
    factors: tuple[int, int, int]  # downsampling stride along x, y, z
    source_shape: tuple[int, int, int]  # (z, y, x) before preparation
    modality: str
    percentiles: tuple[float, float]  # 5th and 99.5th

    @property
    def affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = self.direction * self.spacing
        affine[:3, 3] = self.origin
        return affine

    def corners(self) -> np.ndarray:
        """The eight LPS corners of the grid's voxel-centre box, shape (8, 3)."""
        z, y, x = self.array.shape
        idx = np.array([[i, j, k] for i in (0, x - 1) for j in (0, y - 1) for k in (0, z - 1)], float)
        return idx @ (self.direction * self.spacing).T + self.origin


def needs_worker(volume: Volume) -> bool:
    """True when preparing ``volume`` takes long enough (> ~20 ms) to belong on a worker thread."""
    return int(np.prod(volume.shape)) > SYNC_VOXELS


def prepare_job(volume: Volume, max_dim: int = DEFAULT_MAX_DIM) -> Job[PreparedVolume]:
    """Block-average ``volume`` so no axis exceeds ``max_dim`` voxels (the result keeps the source
    dtype: int16 stays int16) and flip or permute its axes to the closest LPS order (VTK 9.7's
    GPU mapper draws nothing for a direction matrix with a negative determinant).

    Block means (not strides) so that thin bright structures (ribs, the table) do not alias into
    stripes; one slab of output slices at a time, yielding progress (the job can be cancelled).
    """
    if volume.is_4d:
        volume = volume.frame(0)
    arr = volume.array
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"the 3D view cannot show {arr.dtype} voxels")
    fx, fy, fz = downsample_factors(volume.shape, max_dim)
    if (fx, fy, fz) == (1, 1, 1):
        grid, affine = arr, volume.affine
    else:
        nz, ny, nx = (n // f for n, f in zip(arr.shape, (fz, fy, fx), strict=True))
        count = fx * fy * fz
        if arr.dtype.kind == "f":
            acc = np.float64 if arr.dtype.itemsize > 4 else np.float32
        else:
            acc = np.int32 if arr.dtype.itemsize <= 2 else np.int64
        grid = np.empty((nz, ny, nx), dtype=arr.dtype)
        block = np.empty((ny, nx), dtype=acc)
        step = max(1, nz // 20)
        for k in range(nz):
            if k % step == 0:
                yield Progress("Preparing the 3D view", k, nz)
            block.fill(0)
            for plane in arr[k * fz:(k + 1) * fz]:  # strided adds: much faster than a multi-axis sum
                for dy in range(fy):
                    for dx in range(fx):
                        block += plane[dy:ny * fy:fy, dx:nx * fx:fx]
            grid[k] = block / count if arr.dtype.kind == "f" else (block + count // 2) // count
        # block (0, 0, 0) is centred on index ((f - 1) / 2, ...)
        scale = np.diag([fx, fy, fz, 1.0])
        scale[:3, 3] = [(fx - 1) / 2, (fy - 1) / 2, (fz - 1) / 2]
        affine = volume.affine @ scale
    small = Volume(grid, affine, metadata={}).reoriented("LPS")
    grid, origin, spacing, direction = small.array, small.origin, small.spacing, small.direction
    for axis in range(3):  # VTK needs two samples along each axis: a single slice becomes a thin slab
        if grid.shape[2 - axis] == 1:
            grid = np.repeat(grid, 2, axis=2 - axis)
            origin = origin - 0.5 * direction[:, axis] * spacing[axis]
    grid = np.ascontiguousarray(grid)
    sample = grid.ravel()[:: max(1, grid.size // 262144)]
    if grid.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    lo, hi = (float(v) for v in np.percentile(sample, [5, 99.5])) if sample.size else (0.0, 1.0)
    yield Progress("Preparing the 3D view", 1, 1)
    return PreparedVolume(
        array=grid, spacing=spacing, origin=origin, direction=direction, factors=(fx, fy, fz),
        source_shape=volume.shape, modality=str(volume.metadata.get("modality") or "").upper(),
        percentiles=(lo, hi),
    )


def prepare_volume(volume: Volume, max_dim: int = DEFAULT_MAX_DIM) -> PreparedVolume:
    """:func:`prepare_job` run to completion in the calling thread."""
    return run_job(prepare_job(volume, max_dim))

