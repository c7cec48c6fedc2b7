"""VTK plumbing for the 3D view: the OpenGL window choice, the VTK image of a prepared volume, a preset's
transfer functions on the volume property, the quality levels, and the scene.

Importing this module imports VTK (only the modules the 3D view needs, not the ``vtk`` umbrella),
so only :mod:`medvision.ui.views.view3d` imports it, and the main window imports that after it is shown.
VTK objects of the scene are created and rendered in the GUI thread only; the volume's preparation
(:func:`~medvision.ui.views.volume_prep.prepare_job`, numpy only, in :mod:`medvision.ui.views.volume_prep`)
and :func:`~medvision.ui.views.label_surfaces.label_surfaces_job` (numpy and a VTK filter on its own
data, in :mod:`medvision.ui.views.label_surfaces`) may run on a worker.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

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

from .label_surfaces import LabelMesh, mesh_polydata  # noqa: E402
from .volume_prep import PreparedVolume  # noqa: E402
from .volume_presets import Preset  # noqa: E402

__all__ = ["IMPORT_SECONDS", "image_data", "apply_preset", "STILL_LEVELS", "DRAG_LEVELS", "adapt_level",
           "CURSOR_COLOURS", "Scene"]


#: seconds spent importing the VTK modules (reported in the log)
IMPORT_SECONDS = time.perf_counter() - _t0
log.debug("VTK modules imported in %.0f ms", IMPORT_SECONDS * 1000)


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


# ---- quality levels ----------------------------------------------------------------------------
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
