"""Frames -> stacks with patient-space geometry.

Rules (what scanners really produce):

* Frames are split into separate stacks when they cannot share one grid: different image size,
  orientation, pixel spacing, echo, enhanced-MF stack, or derived images (a scanner's trace/ADC
  image kept in its diffusion series) beside acquired ones.
* Within a stack, slices are sorted by their position along the slice normal (never by file name
  or InstanceNumber alone). Several frames at one position make a 4D series: they are put in
  acquisition order the way dcm2niix orders volumes (:mod:`.diffusion`: instance number and the
  vendors' volume counters for classic files, Dimension Index Values for enhanced objects).
* Non-uniform slice spacing is detected and reported; resampling onto a regular grid happens
  only when asked (:func:`plan_stacks` ``regularize=True``).
* Gantry tilt (slice positions not along the slice normal) is detected; by default each slice is
  shifted in-plane (linear interpolation) onto an orthogonal grid, as dcm2niix and 3D Slicer do,
  and the tilt angle is recorded. ``correct_tilt=False`` keeps the exact sheared grid instead.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from ..errors import NoImagesError
from .frames import Frame

log = logging.getLogger(__name__)

POSITION_TOL_MM = 0.01  # frames closer than this along the normal share a position
SPACING_TOL_MM = 0.05  # allowed deviation of a slice gap from the mean before spacing is non-uniform
TILT_TOL_DEG = 0.05


@dataclass
class StackPlan:
    """How to build one volume: frames[t][z], its affine, and what was found on the way."""

    frames: list[list[Frame]]
    affine: np.ndarray
    rows: int
    cols: int
    label: str = ""
    warnings: list[str] = field(default_factory=list)
    frame_axis: str | None = None
    frame_values: list[float] | None = None
    tilt_deg: float = 0.0
    # per-slice in-plane shift (rows, cols) in pixels that puts a tilted slice on the orthogonal grid
    slice_shifts: np.ndarray | None = None
    # positions along the normal when slices are to be resampled onto a regular grid
    resample_from: np.ndarray | None = None
    resample_to: np.ndarray | None = None
    # False when the files do not say how the image lies in the patient (no ImageOrientationPatient:
    # US, CR, secondary captures) or how big a pixel is (no spacing at all): no L/R labels, no ruler
    orientation_known: bool = True
    spacing_known: bool = True

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def n_slices(self) -> int:
        return len(self.resample_to) if self.resample_to is not None else len(self.frames[0])

    @property
    def shape(self) -> tuple[int, ...]:
        zyx = (self.n_slices, self.rows, self.cols)
        return (self.n_frames, *zyx) if self.n_frames > 1 else zyx

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.frames)


def _split_key(f: Frame) -> tuple:
    iop = tuple(np.round(f.iop, 3)) if f.iop is not None else None
    sp = tuple(np.round(f.pixel_spacing, 4)) if f.pixel_spacing is not None else None
    return (f.rows, f.cols, iop, sp, f.echo, f.stack_id, f.pixel.samples_per_pixel, f.derived)


def _describe_split(keys: list[tuple], key: tuple) -> str:
    """What sets this stack apart from the others of the series, in words."""
    def differs(*idx: int) -> bool:
        return len({tuple(k[i] for i in idx) for k in keys}) > 1

    parts = []
    if differs(0, 1):
        parts.append(f"{key[1]}x{key[0]}")
    if differs(2):
        parts.append("orientation " + (",".join(f"{v:g}" for v in key[2]) if key[2] else "unknown"))
    if differs(3):
        parts.append(f"spacing {key[3][0]:g}x{key[3][1]:g} mm" if key[3] else "no pixel spacing")
    if differs(4):
        parts.append(f"echo {key[4]:g}" if key[4] is not None else "no echo")
    if differs(5):
        parts.append(f"stack {key[5] or '-'}")
    if differs(6):
        parts.append(f"{key[6]} samples")
    if differs(7):
        parts.append(key[7] or "acquired")
    return ", ".join(parts)


def plan_stacks(frames: list[Frame], *, regularize: bool = False, correct_tilt: bool = True) -> list[StackPlan]:
    """Group frames into stacks and compute each stack's geometry; largest stack first."""
    if not frames:
        raise NoImagesError("no image frames to assemble")
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        groups[_split_key(f)].append(f)
    keys = list(groups)
    plans = []
    for key, members in groups.items():
        plan = _plan_one(members, regularize=regularize, correct_tilt=correct_tilt)
        if len(groups) > 1:
            plan.label = _describe_split(keys, key)
        plans.append(plan)
    plans.sort(key=lambda p: -p.size)
    if len(plans) > 1:
        others = "; ".join(f"{p.label} ({p.size} images)" for p in plans)
        for p in plans:
            p.warnings.append(f"the series holds {len(plans)} stacks that cannot share one grid: {others}")
    return plans


def _cluster_positions(d: np.ndarray) -> list[np.ndarray]:
    """Indices of frames grouped by position along the normal (ascending)."""
    order = np.argsort(d, kind="stable")
    clusters: list[list[int]] = []
    last = None
    for i in order:
        if last is None or d[i] - last > POSITION_TOL_MM:
            clusters.append([int(i)])
        else:
            clusters[-1].append(int(i))
        last = d[i]
    return [np.array(c) for c in clusters]


def _frame_axis(volumes: list[list[Frame]]) -> tuple[str, list[float] | None]:
    first = [v[0] for v in volumes]
    if any(f.b_value for f in first) or any(f.gradient is not None and np.any(f.gradient) for f in first):
        # diffusion: b-values repeat across directions; a b=0 image may omit its b-value (Canon)
        return "diffusion", [float(f.b_value or 0.0) for f in first]
    for attr, name in (("temporal_index", "time"), ("trigger_time", "cardiac phase")):
        values = [getattr(f, attr) for f in first]
        if all(v is not None for v in values) and len(set(values)) == len(values):
            return name, [float(v) for v in values]
    times = [f.acquisition_time for f in first]
    if all(t is not None for t in times) and len(set(times)) == len(times):
        known = cast(list[float], times)  # none is None
        return "time", [float(t - known[0]) for t in known]
    return "time", None


def _plan_one(frames: list[Frame], *, regularize: bool, correct_tilt: bool) -> StackPlan:
    f0 = frames[0]
    rows, cols = f0.rows, f0.cols
    warnings: list[str] = []
    spacing = f0.pixel_spacing
    if spacing is None:
        spacing = (1.0, 1.0)
        warnings.append("no PixelSpacing: 1 mm pixels assumed; distances and volumes are not reliable")
    elif f0.spacing_source != "PixelSpacing":
        warnings.append(f"no PixelSpacing: {f0.spacing_source} used (spacing at the detector, not in the patient)")
    have_geometry = f0.iop is not None and all(f.ipp is not None for f in frames)
    row_cos, col_cos, normal = _axes(f0)

    plan = StackPlan(frames=[], affine=np.eye(4), rows=rows, cols=cols, warnings=warnings,
                     orientation_known=f0.iop is not None, spacing_known=f0.pixel_spacing is not None)
    if not have_geometry:
        missing = "ImageOrientationPatient" if f0.iop is None else "ImagePositionPatient"
        warnings.append(f"{missing} missing: slices ordered by instance number, positions are not reliable")
        ordered = sorted(frames, key=Frame.volume_key)
        dz = f0.spacing_between_slices or f0.slice_thickness or 1.0
        origin = f0.ipp if f0.ipp is not None else np.zeros(3)
        plan.frames = [ordered]
        _set_affine(plan, row_cos, col_cos, normal * dz, origin, spacing)
        return plan

    volumes = _volumes_by_position(frames, normal, warnings)
    m = len(volumes)
    plan.frames = volumes
    mixed = _mixed_temporal(volumes)
    if mixed:
        warnings.append(mixed)
    if m > 1:
        plan.frame_axis, plan.frame_values = _frame_axis(volumes)

    stack = volumes[0]
    ipps = np.array([f.ipp for f in stack])
    dpos = np.array([float(p @ normal) for p in ipps])
    n = len(stack)
    if n == 1:
        dz = f0.spacing_between_slices or f0.slice_thickness or 1.0
        explicit = any(f.temporal_index is not None or f.trigger_time is not None or f.b_value or
                       (f.gradient is not None and np.any(f.gradient)) for f in volumes[0] + [v[0] for v in volumes])
        if m > 1 and not explicit:
            where = ", ".join(f"{v:g}" for v in ipps[0])
            warnings.append(f"all {m} images share one position ({where}) and say nothing of time, phase or "
                            f"diffusion: they are shown as {m} frames of one slice; if they are the slices of a "
                            "volume, their ImagePositionPatient values are wrong and no spacing can be known")
        _set_affine(plan, row_cos, col_cos, normal * dz, ipps[0], spacing)
        return plan
    off = _off_line(ipps, dpos, spacing)
    if off:
        warnings.append(off)

    slice_vec = _tilt(plan, ipps, dpos, (row_cos, col_cos, normal), spacing, correct_tilt)
    slice_vec = _gaps(plan, dpos, slice_vec, normal, regularize)
    _set_affine(plan, row_cos, col_cos, slice_vec, ipps[0], spacing)
    return plan


def _axes(f0: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit row and column directions of the first frame (x and y when it has no
    ImageOrientationPatient) and the slice normal."""
    if f0.iop is None:
        row_cos, col_cos = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    else:
        row_cos, col_cos = f0.iop[:3], f0.iop[3:]
        row_cos = row_cos / np.linalg.norm(row_cos)
        col_cos = col_cos / np.linalg.norm(col_cos)
    return row_cos, col_cos, np.cross(row_cos, col_cos)


def _volumes_by_position(frames: list[Frame], normal: np.ndarray, warnings: list[str]) -> list[list[Frame]]:
    """The frames as volumes (one list of slices per time point): grouped by position along the normal,
    each position's frames in volume order; positions with extra images lose them (said)."""
    d = np.array([float(f.ipp @ normal) for f in frames])
    clusters = _cluster_positions(d)
    counts = Counter(len(c) for c in clusters)
    per_position = [sorted((frames[i] for i in c), key=Frame.volume_key) for c in clusters]
    if len(counts) > 1:
        m = min(counts)
        dropped = sum(len(p) - m for p in per_position)
        warnings.append(
            f"positions hold different numbers of images ({dict(sorted(counts.items()))}); "
            f"{dropped} images at repeated positions were left out")
        per_position = [p[:m] for p in per_position]
    return [[pos[t] for pos in per_position] for t in range(len(per_position[0]))]


def _tilt(plan: StackPlan, ipps: np.ndarray, dpos: np.ndarray, axes, spacing, correct_tilt: bool) -> np.ndarray:
    """The step from slice to slice; a gantry tilt (the slices advance along a direction that is not
    the slice normal) is kept as a sheared grid or, with ``correct_tilt``, planned as in-plane shifts
    onto an orthogonal grid."""
    row_cos, col_cos, normal = axes
    n = len(ipps)
    warnings = plan.warnings
    mean_gap = (dpos[-1] - dpos[0]) / (n - 1)
    slice_vec = (ipps[-1] - ipps[0]) / (n - 1)
    cos_angle = float(np.clip(abs(slice_vec @ normal) / np.linalg.norm(slice_vec), -1, 1))
    tilt = float(np.degrees(np.arccos(cos_angle)))
    if tilt > TILT_TOL_DEG:
        plan.tilt_deg = tilt
        if correct_tilt:
            offsets = ipps - ipps[0] - np.outer(dpos - dpos[0], normal)
            plan.slice_shifts = np.stack([offsets @ col_cos / spacing[0], offsets @ row_cos / spacing[1]], axis=1)
            warnings.append(f"gantry tilt of {tilt:.2f} degrees: slices were shifted in-plane onto an "
                            "orthogonal grid (linear interpolation), as dcm2niix does")
            slice_vec = normal * mean_gap
        else:
            warnings.append(f"gantry tilt of {tilt:.2f} degrees: kept as a sheared grid (uncorrected)")
    return slice_vec


def _gaps(plan: StackPlan, dpos: np.ndarray, slice_vec: np.ndarray, normal: np.ndarray, regularize: bool
          ) -> np.ndarray:
    """The slice step after checking the gaps between slices: non-uniform gaps are said, and with
    ``regularize`` planned for resampling onto a regular grid at the median gap."""
    gaps = np.diff(dpos)
    mean_gap = (dpos[-1] - dpos[0]) / (len(dpos) - 1)
    warnings = plan.warnings
    if np.max(np.abs(gaps - mean_gap)) > SPACING_TOL_MM:
        text = (f"non-uniform slice spacing: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm "
                f"(mean {mean_gap:.3g} mm)")
        if regularize:
            step = float(np.median(gaps))
            n_out = int(np.floor((dpos[-1] - dpos[0]) / step + 1e-6)) + 1
            plan.resample_from = dpos - dpos[0]
            plan.resample_to = np.arange(n_out) * step
            slice_vec = slice_vec / np.linalg.norm(slice_vec) * step * np.sign(slice_vec @ normal)
            warnings.append(text + f"; resampled onto a regular {step:.3g} mm grid ({n_out} slices, linear)")
        else:
            warnings.append(text + "; the volume uses the mean spacing, so positions between the "
                                   "irregular slices are approximate (resample it: the warning button in the "
                                   "status bar, or --regularize on the command line)")
    return slice_vec


def _mixed_temporal(volumes: list[list[Frame]]) -> str:
    """A warning when the images put together as one volume of a series disagree on TemporalPositionIdentifier
    (one file's value changed): its frames may then sit in another volume than the one they were acquired in."""
    if len(volumes) < 2:
        return ""
    odd: list[tuple[int, Frame]] = []
    for t, vol in enumerate(volumes):
        values = [f.temporal_index for f in vol if f.temporal_index is not None]
        if values and (len(values) != len(vol) or len(set(values)) > 1):
            common = Counter(values).most_common(1)[0][0]
            odd.extend((t, f) for f in vol if f.temporal_index != common)
    if not odd:
        return ""
    t, f = odd[0]
    return (f"{len(odd)} image(s) disagree with the rest of their volume on TemporalPositionIdentifier (e.g. "
            f"{f.ref.name}: {f.temporal_index if f.temporal_index is not None else 'none'} in volume {t + 1}): the "
            "volumes may be mixed up at those positions")


def _off_line(ipps: np.ndarray, dpos: np.ndarray, spacing) -> str:
    """A warning when a slice lies off the straight line through the first and last slice positions (one
    slice's ImagePositionPatient moved in-plane): the volume places it in line with the others."""
    span = dpos[-1] - dpos[0]
    if abs(span) < 1e-6:
        return ""
    expected = ipps[0] + np.outer((dpos - dpos[0]) / span, ipps[-1] - ipps[0])
    miss = np.linalg.norm(ipps - expected, axis=1)
    tol = max(1.0, 0.5 * max(spacing))
    if miss.max() <= tol:
        return ""
    worst = int(np.argmax(miss))
    return (f"{int((miss > tol).sum())} slice(s) lie off the line of the others (slice {worst + 1} by "
            f"{miss[worst]:.3g} mm in-plane): the volume places them in line, so their content may be shifted; "
            "their ImagePositionPatient values disagree")


def _set_affine(plan: StackPlan, row_cos, col_cos, slice_vec, origin, spacing) -> None:
    affine = np.eye(4)
    affine[:3, 0] = row_cos * spacing[1]  # x: along a row, between columns
    affine[:3, 1] = col_cos * spacing[0]  # y: down a column, between rows
    affine[:3, 2] = slice_vec
    affine[:3, 3] = origin
    plan.affine = affine
