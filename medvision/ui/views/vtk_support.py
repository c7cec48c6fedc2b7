"""VTK plumbing for the 3D view: OpenGL window choice, volume preparation, presets, the scene.

Importing this module imports VTK (only the modules the 3D view needs, not the ``vtk`` umbrella),
so only :mod:`medvision.ui.views.view3d` imports it, and the main window imports that after it is shown.
VTK objects of the scene are created and rendered in the GUI thread only; :func:`prepare_job` (numpy
only) and :func:`~medvision.ui.views.label_surfaces.label_surfaces_job` (numpy and a VTK filter on its own
data, in :mod:`medvision.ui.views.label_surfaces`) may run on a worker.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from ...core.jobs import Job, Progress, run_job
from ...core.volume import Volume

log = logging.getLogger(__name__)


def _headless_qt() -> bool:
    """True when there is no X display to put a GLX context on (offscreen Qt, or no DISPLAY)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    try:
        from PySide6.QtGui import QGuiApplication

        if QGuiApplication.instance() is not None:
            platform = QGuiApplication.platformName()
    except ImportError:  # pragma: no cover - PySide6 is a dependency of the ui layer
        pass
    return not os.environ.get("DISPLAY") or platform.split(":")[0] in ("offscreen", "minimal", "eglfs", "vnc")


if sys.platform.startswith("linux") and _headless_qt():
    # Without X, VTK 9's wheel falls back to EGL anyway but warns first; ask for EGL directly.
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

_t0 = time.perf_counter()
import vtkmodules.vtkRenderingOpenGL2  # noqa: E402  (OpenGL overrides of the rendering classes)
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: E402,F401  (GPU ray cast mapper)
from vtkmodules.util.misc import calldata_type  # noqa: E402
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy  # noqa: E402
from vtkmodules.vtkCommonCore import VTK_STRING, vtkPoints, vtkUnsignedCharArray  # noqa: E402
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPiecewiseFunction, vtkPolyData  # noqa: E402
from vtkmodules.vtkRenderingCore import (  # noqa: E402
    vtkActor,
    vtkColorTransferFunction,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkRenderWindow,
    vtkVolume,
    vtkVolumeProperty,
)
from vtkmodules.vtkRenderingVolume import vtkGPUVolumeRayCastMapper  # noqa: E402

from .label_surfaces import LabelMesh, downsample_factors, mesh_polydata  # noqa: E402

#: seconds spent importing the VTK modules (reported in the log)
IMPORT_SECONDS = time.perf_counter() - _t0
log.debug("VTK modules imported in %.0f ms", IMPORT_SECONDS * 1000)

#: longest axis of the grid that is rendered; larger volumes are block-averaged down to it
DEFAULT_MAX_DIM = 256
#: volumes with more voxels than this are prepared on a worker thread (block-averaging costs
#: ~2.6 ns a source voxel here: 0.4 s for 512x512x600 int16, 16 ms for 512x512x20)
SYNC_VOXELS = 8 * 1024 * 1024


# ---- volume preparation (numpy only: may run on a worker) ------------------------------------
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


def image_data(prepared: PreparedVolume) -> vtkImageData:
    """A vtkImageData sharing ``prepared.array``'s memory (no copy, native dtype), placed in LPS."""
    z, y, x = prepared.array.shape
    image = vtkImageData()
    image.SetDimensions(x, y, z)
    image.SetSpacing(*(float(s) for s in prepared.spacing))
    image.SetOrigin(*(float(o) for o in prepared.origin))
    image.SetDirectionMatrix(*(float(v) for v in prepared.direction.ravel()))
    scalars = numpy_to_vtk(prepared.array.ravel(), deep=False)  # keeps a reference to the array
    scalars.SetName("values")
    image.GetPointData().SetScalars(scalars)
    return image


# ---- presets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A transfer function: colour points ``(value, r, g, b)``, opacity points ``(value, alpha per
    mm)``, compositing or maximum-intensity projection, and shading."""

    name: str
    colors: tuple[tuple[float, float, float, float], ...]
    opacities: tuple[tuple[float, float], ...]
    mip: bool = False
    shade: bool = True
    ambient: float = 0.2
    diffuse: float = 0.9
    specular: float = 0.3
    specular_power: float = 15.0


CT_PRESETS: tuple[Preset, ...] = (
    Preset("CT bone",
           colors=((-1000, 0, 0, 0), (150, 0.73, 0.25, 0.30), (400, 0.91, 0.82, 0.55), (1200, 1, 1, 0.95)),
           opacities=((-1000, 0), (150, 0), (300, 0.25), (700, 0.7), (3000, 0.8))),
    Preset("CT soft tissue",
           colors=((-1000, 0, 0, 0), (-150, 0.55, 0.25, 0.15), (-50, 0.88, 0.60, 0.29), (40, 0.80, 0.32, 0.25),
                   (200, 0.95, 0.85, 0.75), (600, 1, 1, 0.95)),
           opacities=((-1000, 0), (-400, 0), (-150, 0), (-50, 0.01), (20, 0.03), (80, 0.08), (250, 0.5),
                      (3000, 0.7)),
           ambient=0.3, diffuse=0.8, specular=0.1),
    Preset("CT lung",
           colors=((-1000, 0.3, 0.3, 1), (-600, 0.85, 0.55, 0.45), (-400, 0.9, 0.7, 0.6), (0, 1, 0.9, 0.8),
                   (3000, 1, 1, 1)),
           opacities=((-1000, 0), (-900, 0), (-800, 0.02), (-600, 0.08), (-400, 0.1), (-390, 0), (3000, 0)),
           ambient=0.3, diffuse=0.8, specular=0.1),
    Preset("CT angio (contrast)",
           colors=((-1000, 0, 0, 0), (140, 0.62, 0, 0.02), (170, 0.91, 0.45, 0), (215, 0.97, 0.81, 0.61),
                   (420, 0.91, 0.91, 1), (3000, 1, 1, 1)),
           opacities=((-1000, 0), (140, 0), (170, 0.5), (215, 0.6), (420, 0.8), (3000, 0.8))),
    Preset("CT MIP", colors=((-100, 0, 0, 0), (1000, 1, 1, 1)), opacities=((-1000, 0), (-100, 0), (1000, 1)),
           mip=True, shade=False),
)


def mr_presets(lo: float, hi: float) -> tuple[Preset, ...]:
    """MR (and other modalities) presets, their ramps placed between the 5th and 99.5th percentiles."""
    span = max(hi - lo, 1e-6)

    def at(f: float) -> float:
        return lo + f * span

    default = Preset(
        "MR default",
        colors=((at(0), 0, 0, 0), (at(0.1), 0.17, 0, 0), (at(0.25), 0.40, 0.15, 0.08), (at(0.5), 0.78, 0.61, 0.38),
                (at(0.8), 0.85, 0.84, 0.79), (at(1.0), 1, 1, 1)),
        opacities=((at(0), 0), (at(0.15), 0), (at(0.3), 0.05), (at(0.6), 0.15), (at(1.0), 0.3)),
        ambient=0.25, diffuse=0.8, specular=0.2,
    )
    mip = Preset("MR MIP", colors=((at(0), 0, 0, 0), (at(1.0), 1, 1, 1)),
                 opacities=((at(0), 0), (at(0.05), 0), (at(1.0), 1)), mip=True, shade=False)
    return default, mip


def presets_for(prepared: PreparedVolume | None) -> list[Preset]:
    """The presets offered for a volume: CT's in HU for CT, percentile-placed ones otherwise."""
    if prepared is None:
        return []
    if prepared.modality == "CT":
        return list(CT_PRESETS)
    return list(mr_presets(*prepared.percentiles))


def default_preset(prepared: PreparedVolume) -> str:
    return "CT bone" if prepared.modality == "CT" else "MR default"


def apply_preset(preset: Preset, prop: vtkVolumeProperty, mapper: vtkGPUVolumeRayCastMapper) -> None:
    colors = vtkColorTransferFunction()
    for value, r, g, b in preset.colors:
        colors.AddRGBPoint(value, r, g, b)
    opacity = vtkPiecewiseFunction()
    for value, alpha in preset.opacities:
        opacity.AddPoint(value, alpha)
    prop.SetColor(colors)
    prop.SetScalarOpacity(opacity)
    prop.SetInterpolationTypeToLinear()
    prop.SetShade(bool(preset.shade))
    prop.SetAmbient(preset.ambient)
    prop.SetDiffuse(preset.diffuse)
    prop.SetSpecular(preset.specular)
    prop.SetSpecularPower(preset.specular_power)
    if preset.mip:
        mapper.SetBlendModeToMaximumIntensity()
    else:
        mapper.SetBlendModeToComposite()


# ---- camera sides and quality levels ---------------------------------------------------------
#: view direction -> (the side of the patient the camera is on, view up), in LPS
VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "A": ((0, -1, 0), (0, 0, 1)),
    "P": ((0, 1, 0), (0, 0, 1)),
    "L": ((1, 0, 0), (0, 0, 1)),
    "R": ((-1, 0, 0), (0, 0, 1)),
    "S": ((0, 0, 1), (0, -1, 0)),
    "I": ((0, 0, -1), (0, -1, 0)),
}
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative, positive) along LPS x, y, z
#: quality levels, finest first: (image sample distance in pixels, sample distance in half voxels).
#: The view climbs them while frames take longer than their budget and steps back when the finer
#: level is predicted (cost ~ 1 / (isd^2 * factor)) to fit.
STILL_LEVELS = ((1.0, 1.0), (1.0, 1.5), (1.0, 2.0), (1.5, 2.0), (2.0, 2.0))
DRAG_LEVELS = ((1.5, 2.0), (2.0, 2.0), (2.5, 2.0), (3.0, 2.0), (3.0, 3.0), (4.0, 3.0), (4.0, 4.0), (5.0, 4.0),
                (6.0, 4.0), (8.0, 4.0))


def _cost(level: tuple[float, float]) -> float:
    return 1.0 / (level[0] ** 2 * level[1])


def adapt_level(levels: tuple[tuple[float, float], ...], index: int, ms: float, budget: float | None) -> int:
    """The quality level for the next frame after one at ``levels[index]`` took ``ms``."""
    if budget is None:
        return 0
    if ms > budget and index + 1 < len(levels):
        return index + 1
    if index > 0 and ms * _cost(levels[index - 1]) / _cost(levels[index]) < 0.8 * budget:
        return index - 1
    return index


def view_letters(vector: np.ndarray) -> str:
    """Patient-direction letters of a screen direction, strongest first (e.g. ``"L"``, ``"SA"``)."""
    order = np.argsort(-np.abs(vector))
    out = [_LETTERS[i][1 if vector[i] > 0 else 0] for i in order[:2] if abs(vector[i]) > 0.35]
    return "".join(out)


# ---- the scene -----------------------------------------------------------------------------------
#: crosshair axis colours: each line takes the colour of the slice plane it is normal to
#: (3D Slicer's: axial red, coronal green, sagittal yellow)
CURSOR_COLOURS = ((230, 210, 80), (100, 200, 100), (230, 80, 80))  # along L-R, A-P, S-I


class Scene:
    """The offscreen render window and what it shows: the volume, label surfaces, and the
    linked cursor (drawn on an overlay layer so it is never hidden inside the volume)."""

    def __init__(self) -> None:
        errors: list[str] = []  # the observer holds the list, not the scene (no reference cycle)
        self.errors = errors

        @calldata_type(VTK_STRING)
        def on_error(obj, _event, message) -> None:  # an observer keeps VTK from printing to stderr
            text = f"{obj.GetClassName()}: {str(message or '').strip()}"
            log.warning("VTK: %s", text)
            errors.append(text)

        self.window = vtkRenderWindow()
        self.window.AddObserver("ErrorEvent", on_error)
        self.window.SetOffScreenRendering(1)
        self.window.SetNumberOfLayers(2)
        self.window.SetSize(64, 64)
        self.window.SetMultiSamples(0)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0, 0, 0)
        self.renderer.SetLayer(0)
        self.overlay = vtkRenderer()
        self.overlay.SetLayer(1)
        self.overlay.InteractiveOff()
        self.overlay.SetActiveCamera(self.renderer.GetActiveCamera())
        self.window.AddRenderer(self.renderer)
        self.window.AddRenderer(self.overlay)
        self.window.Initialize()
        if self.errors or not self.window.SupportsOpenGL():
            reason = self.errors[-1] if self.errors else "no usable OpenGL context"
            raise RuntimeError(reason.strip().splitlines()[-1])
        self.mapper = vtkGPUVolumeRayCastMapper()
        self.mapper.AddObserver("ErrorEvent", on_error)
        self.mapper.AutoAdjustSampleDistancesOff()
        self.property = vtkVolumeProperty()
        self.volume = vtkVolume()
        self.volume.SetMapper(self.mapper)
        self.volume.SetProperty(self.property)
        self.cursor = _cursor_actor()
        self.cursor.VisibilityOff()
        self.overlay.AddActor(self.cursor)
        self.prepared: PreparedVolume | None = None
        self.base_sample_distance = 1.0
        #: label value -> (its actor, the mesh it shows)
        self.label_actors: dict[int, tuple[vtkActor, LabelMesh]] = {}

    @property
    def camera(self):
        return self.renderer.GetActiveCamera()

    @property
    def window_class(self) -> str:
        return self.window.GetClassName()

    def set_volume(self, prepared: PreparedVolume | None) -> None:
        self.prepared = prepared
        if prepared is None:
            self.renderer.RemoveVolume(self.volume)
            self.mapper.RemoveAllInputs()
            self.volume.ReleaseGraphicsResources(self.window)  # the 3D texture
            return
        self.mapper.SetInputData(image_data(prepared))
        self.base_sample_distance = float(0.5 * np.mean(prepared.spacing))
        self.set_quality()
        if not self.renderer.HasViewProp(self.volume):
            self.renderer.AddVolume(self.volume)

    def set_label_meshes(self, meshes: dict[int, LabelMesh]) -> None:
        """Show these label surfaces: an actor per label; actors of meshes already shown are kept,
        those of other meshes are made (hidden until :meth:`set_label_display`) or dropped."""
        for value, (actor, mesh) in list(self.label_actors.items()):
            if meshes.get(value) is not mesh:
                self.renderer.RemoveActor(actor)
                actor.ReleaseGraphicsResources(self.window)
                del self.label_actors[value]
        for value, mesh in meshes.items():
            if value in self.label_actors:
                continue
            mapper = vtkPolyDataMapper()
            mapper.SetInputData(mesh_polydata(mesh))
            mapper.ScalarVisibilityOff()
            actor = vtkActor()
            actor.SetMapper(mapper)
            prop = actor.GetProperty()
            prop.SetInterpolationToGouraud()
            prop.SetAmbient(0.1)
            prop.SetDiffuse(0.9)
            prop.SetSpecular(0.15)
            prop.SetSpecularPower(20.0)
            actor.VisibilityOff()
            self.renderer.AddActor(actor)
            self.label_actors[value] = (actor, mesh)

    def set_label_display(self, colours: dict[int, tuple[int, int, int, int]], opacity: float) -> None:
        """Colour (RGBA 0-255; alpha times ``opacity`` is the surface's opacity) of each label shown;
        labels not in ``colours`` are hidden."""
        for value, (actor, _mesh) in self.label_actors.items():
            colour = colours.get(value)
            alpha = 0.0 if colour is None else opacity * (colour[3] if len(colour) > 3 else 255) / 255.0
            if alpha <= 0.0:
                actor.VisibilityOff()
                continue
            prop = actor.GetProperty()
            prop.SetColor(*(c / 255.0 for c in colour[:3]))
            prop.SetOpacity(min(alpha, 1.0))
            actor.VisibilityOn()

    def set_quality(self, image_sample_distance: float = 1.0, sample_factor: float = 1.0) -> None:
        """Cast a ray every ``image_sample_distance`` pixels, sampling every ``sample_factor`` half
        voxels along it (1, 1: full quality)."""
        self.mapper.SetImageSampleDistance(image_sample_distance)
        self.mapper.SetSampleDistance(self.base_sample_distance * sample_factor)

    def set_cursor(self, lps: np.ndarray | None) -> None:
        if lps is None or self.prepared is None:
            self.cursor.VisibilityOff()
            return
        size = 0.06 * float(np.linalg.norm(np.ptp(self.prepared.corners(), axis=0)))
        self.cursor.SetScale(size, size, size)
        self.cursor.SetPosition(*(float(v) for v in lps))
        self.cursor.VisibilityOn()

    def reset_clipping(self) -> None:
        boxes = [self.volume.GetBounds()] if self.prepared is not None else []
        boxes += [actor.GetBounds() for actor, _mesh in self.label_actors.values() if actor.GetVisibility()]
        if self.cursor.GetVisibility():
            boxes.append(self.cursor.GetBounds())
        if boxes:
            box = np.array(boxes, float).reshape(-1, 3, 2)
            bounds = [float(v) for v in np.stack([box[:, :, 0].min(axis=0), box[:, :, 1].max(axis=0)], axis=1).ravel()]
        else:
            bounds = [-1, 1, -1, 1, -1, 1]
        self.renderer.ResetCameraClippingRange(*bounds)

    def render(self, width: int, height: int) -> np.ndarray:
        """Render at ``width`` x ``height`` pixels; the frame as ``(height, width, 3)`` uint8, top row first."""
        if tuple(self.window.GetSize()) != (width, height):
            self.window.SetSize(width, height)
        self.reset_clipping()
        self.window.Render()
        pixels = vtkUnsignedCharArray()
        self.window.GetPixelData(0, 0, width - 1, height - 1, 1, pixels, 0)
        frame = vtk_to_numpy(pixels).reshape(height, width, 3)
        return np.ascontiguousarray(frame[::-1])

    def world_to_display(self, lps: np.ndarray) -> tuple[float, float]:
        """Pixel position (x right, y down) of an LPS point in the last rendered frame."""
        self.renderer.SetWorldPoint(*(float(v) for v in lps), 1.0)
        self.renderer.WorldToDisplay()
        x, y, _ = self.renderer.GetDisplayPoint()
        return x, self.window.GetSize()[1] - 1 - y

    def close(self) -> None:
        self.window.Finalize()


def _cursor_actor() -> vtkActor:
    """Three unit-length coloured line segments through the origin, along x, y and z."""
    points = vtkPoints()
    lines = vtkCellArray()
    colours = vtkUnsignedCharArray()
    colours.SetNumberOfComponents(3)
    colours.SetName("colours")
    for axis in range(3):
        for sign in (-0.5, 0.5):
            p = [0.0, 0.0, 0.0]
            p[axis] = sign
            points.InsertNextPoint(*p)
        lines.InsertNextCell(2)
        lines.InsertCellPoint(2 * axis)
        lines.InsertCellPoint(2 * axis + 1)
        colours.InsertNextTuple3(*CURSOR_COLOURS[axis])
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(lines)
    poly.GetCellData().SetScalars(colours)
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(poly)
    mapper.SetColorModeToDirectScalars()
    mapper.SetScalarModeToUseCellData()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetLineWidth(3)
    actor.GetProperty().LightingOff()
    return actor
