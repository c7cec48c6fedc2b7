"""Label surfaces for the 3D view (3D Slicer's "Show 3D"): a smooth closed mesh per label present
in a label map (:mod:`medvision.ui.views.surface_control` puts them into the view's scene).

:func:`label_surfaces_job` needs numpy and VTK's data and filter modules only (no rendering) and may
run on a worker thread, on its own data; the meshes' VTK objects belong to the GUI thread. Importing
this module imports VTK: only the 3D view's modules import it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPolyData
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

from ...core.jobs import Job, Progress

try:  # VTK >= 9.3: multi-label smooth surfaces in one pass
    from vtkmodules.vtkFiltersCore import vtkSurfaceNets3D
except ImportError:  # pragma: no cover - older VTK: discrete flying edges, unsmoothed
    vtkSurfaceNets3D = None

log = logging.getLogger(__name__)


# ---- sampling (shared with the volume preparation in vtk_support) ------------------------------
def downsample_factors(shape_zyx: tuple[int, ...], max_dim: int) -> tuple[int, int, int]:
    """Integer block sizes along x, y, z so that no axis keeps more than ``max_dim`` samples."""
    return tuple(max(1, math.ceil(n / max_dim)) for n in shape_zyx[::-1])  # type: ignore[return-value]


# ---- the surfaces (numpy and a VTK filter on its own data: may run on a worker) -----------------
#: longest axis of the label grid that surfaces are made on; larger label maps are sampled down
LABELS_MAX_DIM = 512
#: label maps with more voxels than this get their surfaces made on a worker thread (surface nets
#: cost ~6 ns a voxel here, single-threaded: 0.5 s for 512x512x300 with 20 labels)
SYNC_LABEL_VOXELS = 2 * 1024 * 1024
#: slices copied (and compared with the previous snapshot) per progress record
_SLAB = 8


@dataclass
class LabelMesh:
    """One label's closed surface in LPS mm, triangles wound so their normals point outwards."""

    points: np.ndarray  # (n, 3) float32, LPS
    normals: np.ndarray  # (n, 3) float32, unit, outwards
    triangles: np.ndarray  # (m, 3) int32 indices into points
    box: np.ndarray  # (2, 3) int: index (x, y, z) range, ends included, that holds the label's voxels


@dataclass
class LabelSurfaces:
    """The surfaces of every label present in a label map, and the voxels they were made from.

    ``padded`` is the (possibly sampled down) label grid with one voxel of background around it, so
    that surfaces close at the edge of the grid; ``snapshot`` is the grid without that border, and
    ``affine`` maps its index to LPS. A later job compares the label map with the snapshot and
    remakes only the labels whose voxels changed; the meshes of the others are the same objects
    (``rebuilt`` names the new ones).
    """

    padded: np.ndarray  # (z + 2, y + 2, x + 2)
    affine: np.ndarray  # 4x4 index (x, y, z, 1) of the unpadded grid -> LPS
    factors: tuple[int, int, int]  # sampling stride along x, y, z
    counts: np.ndarray  # voxels of each value in the snapshot
    meshes: dict[int, LabelMesh]
    rebuilt: set[int]
    seconds: float = 0.0  # time the job took

    @property
    def snapshot(self) -> np.ndarray:
        return self.padded[1:-1, 1:-1, 1:-1]

    def corners(self) -> np.ndarray:
        """The eight LPS corners of the grid's voxel-centre box, shape (8, 3)."""
        z, y, x = self.snapshot.shape
        idx = np.array([[i, j, k] for i in (0, x - 1) for j in (0, y - 1) for k in (0, z - 1)], float)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]


def label_surfaces_job(array: np.ndarray, affine: np.ndarray, max_dim: int = LABELS_MAX_DIM,
                       previous: LabelSurfaces | None = None) -> Job[LabelSurfaces]:
    """Surfaces of the labels in ``array`` (``(z, y, x)`` integers, index -> LPS by ``affine``).

    Axes longer than ``max_dim`` are sampled down (nearest voxel, no blending of labels). With
    ``previous`` (an earlier result for the same grid) only labels whose voxels changed are remade,
    on the part of the grid that can hold them. The array is read slab by slab, a progress record
    each (the job can be cancelled there); the label map may be edited meanwhile: the result is
    consistent with its snapshot, and the next update compares against that.
    """
    start = time.perf_counter()
    arr = np.asarray(array)
    if arr.ndim != 3 or arr.dtype.kind not in "iub":
        raise ValueError(f"label surfaces need a 3D integer array, not {arr.dtype} {arr.shape}")
    if arr.dtype.kind != "u" or arr.dtype.itemsize > 2:  # 0..65535 by contract of LabelMap
        arr = arr.astype(np.uint16)
    fx, fy, fz = downsample_factors(arr.shape, max_dim)
    ox, oy, oz = ((fx - 1) // 2, (fy - 1) // 2, (fz - 1) // 2)  # the voxel nearest each block's centre
    nz, ny, nx = arr.shape[0] // fz, arr.shape[1] // fy, arr.shape[2] // fx
    scale = np.diag([fx, fy, fz, 1.0])
    scale[:3, 3] = [ox, oy, oz]
    grid_affine = np.asarray(affine, float) @ scale
    reuse = (previous is not None and previous.snapshot.shape == (nz, ny, nx)
             and np.allclose(previous.affine, grid_affine, atol=1e-6))
    padded = np.zeros((nz + 2, ny + 2, nx + 2), arr.dtype)
    size = 65536 if arr.dtype.itemsize == 2 else 256
    counts = np.zeros(size, np.int64)
    if reuse:  # the previous counts plus what changed
        counts[:min(size, previous.counts.size)] = previous.counts[:size]
    removed, added = np.zeros(size, np.int64), np.zeros(size, np.int64)
    lo, hi = np.array([nx, ny, nz]), np.array([-1, -1, -1])  # index box of the changed voxels
    for k0 in range(0, nz, _SLAB):
        yield Progress("3D label surfaces", k0, nz)
        k1 = min(nz, k0 + _SLAB)
        slab = padded[1 + k0:1 + k1, 1:-1, 1:-1]
        slab[...] = arr[oz + k0 * fz:oz + k1 * fz:fz, oy:oy + ny * fy:fy, ox:ox + nx * fx:fx]
        if not reuse:
            counts += np.bincount(slab.ravel(), minlength=size)
            continue
        old = previous.padded[1 + k0:1 + k1, 1:-1, 1:-1]
        diff = old != slab
        if diff.any():
            removed += np.bincount(old[diff], minlength=size)[:size]
            added += np.bincount(slab[diff], minlength=size)
            for axis, along in enumerate(((0, 1), (0, 2), (1, 2))):  # x, y, z
                hits = np.flatnonzero(diff.any(axis=along)) + (k0 if axis == 2 else 0)
                lo[axis] = min(lo[axis], hits[0])
                hi[axis] = max(hi[axis], hits[-1])
    counts += added - removed
    present = {int(v) for v in np.flatnonzero(counts[1:]) + 1}
    if reuse:
        changed = {int(v) for v in np.flatnonzero((added + removed)[1:]) + 1}
        todo = changed & present
        meshes = {v: m for v, m in previous.meshes.items() if v not in changed and v in present}
        for v in changed & set(previous.meshes):  # the label's voxels lie in its old box or among the changed
            lo = np.minimum(lo, previous.meshes[v].box[0])
            hi = np.maximum(hi, previous.meshes[v].box[1])
    else:
        todo, meshes = present, {}
        lo, hi = np.zeros(3, int), np.array([nx, ny, nz]) - 1
    if todo:
        yield Progress("3D label surfaces", nz, nz, f"surfaces of {len(todo)} labels")
        # the crop, in padded index (index + 1), with a margin of two voxels around [lo, hi]
        a = np.maximum(lo - 1, 0)
        b = np.minimum(hi + 3, np.array([nx + 1, ny + 1, nz + 1]))
        crop = np.ascontiguousarray(padded[a[2]:b[2] + 1, a[1]:b[1] + 1, a[0]:b[0] + 1])
        meshes.update(_label_meshes(crop, a - 1, sorted(todo), grid_affine, (nx, ny, nz)))
    yield Progress("3D label surfaces", nz, nz)
    return LabelSurfaces(padded=padded, affine=grid_affine, factors=(fx, fy, fz), counts=counts, meshes=meshes,
                         rebuilt=set(todo), seconds=time.perf_counter() - start)


def _label_meshes(crop: np.ndarray, offset: np.ndarray, values: list[int], affine: np.ndarray,
                  size_xyz: tuple[int, int, int]) -> dict[int, LabelMesh]:
    """Meshes of ``values`` in ``crop`` (a ``(z, y, x)`` block whose voxel (0, 0, 0) has the index
    ``offset`` (x, y, z) on the grid that ``affine`` places)."""
    z, y, x = crop.shape
    image = vtkImageData()
    image.SetDimensions(x, y, z)
    image.SetOrigin(*(float(v) for v in offset))  # surface points come out in grid index units
    scalars = numpy_to_vtk(crop.ravel(), deep=False)
    image.GetPointData().SetScalars(scalars)
    if vtkSurfaceNets3D is not None:
        nets = vtkSurfaceNets3D()
        nets.SetBackgroundLabel(0)
        for i, value in enumerate(values):
            nets.SetValue(i, value)
        nets.SetInputData(image)
        nets.Update()  # releases the GIL: the GUI thread runs meanwhile
        out = nets.GetOutput()
        sides = vtk_to_numpy(out.GetCellData().GetArray("BoundaryLabels")) if out.GetNumberOfCells() else None
    else:  # VTK < 9.3 (tests force this branch)
        flying = vtkDiscreteFlyingEdges3D()
        for i, value in enumerate(values):
            flying.SetValue(i, value)
        flying.ComputeScalarsOn()
        flying.ComputeNormalsOff()
        flying.ComputeGradientsOff()
        flying.SetInputData(image)
        flying.Update()
        out = flying.GetOutput()
        sides = None
    if out.GetNumberOfCells() == 0:
        return {}
    polys = out.GetPolys()
    sizes = np.diff(vtk_to_numpy(polys.GetOffsetsArray()))
    conn = vtk_to_numpy(polys.GetConnectivityArray()).astype(np.int32, copy=False)
    if np.all(sizes == 3):
        tris = conn.reshape(-1, 3)
    elif np.all(sizes == 4):  # quads (no smoothing): two triangles each
        quads = conn.reshape(-1, 4)
        tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
        sides = None if sides is None else np.concatenate([sides, sides])
    else:  # pragma: no cover - surface nets and flying edges make triangles or quads only
        raise ValueError("label surfaces: unexpected polygon sizes")
    points = vtk_to_numpy(out.GetPoints().GetData())
    if sides is None:  # flying edges: each point carries its label; the other side is not known
        first = vtk_to_numpy(out.GetPointData().GetScalars())[tris[:, 0]]
        sides = np.stack([first, np.zeros_like(first)], axis=1)
    flip = np.linalg.det(affine[:3, :3]) < 0  # a left-handed grid turns the winding inside out
    linear, shift = affine[:3, :3].T, affine[:3, 3]
    used = np.zeros(len(points), bool)
    remap = np.zeros(len(points), np.int32)
    limit = np.array(size_xyz) - 1
    meshes = {}
    for value in values:
        # surface nets wind each face from its first label towards its second: outwards for the first
        faces = np.concatenate([tris[sides[:, 0] == value], tris[sides[:, 1] == value][:, ::-1]])
        if len(faces) == 0:
            continue
        if flip:
            faces = faces[:, ::-1]
        used[:] = False
        used[faces.ravel()] = True
        ids = np.flatnonzero(used)
        remap[ids] = np.arange(len(ids), dtype=np.int32)
        index_points = points[ids].astype(np.float64)
        world = index_points @ linear + shift
        faces = np.ascontiguousarray(remap[faces])
        box = np.stack([np.clip(np.floor(index_points.min(axis=0)) - 1, 0, limit),
                        np.clip(np.ceil(index_points.max(axis=0)) + 1, 0, limit)]).astype(int)
        meshes[value] = LabelMesh(points=world.astype(np.float32), normals=vertex_normals(world, faces),
                                  triangles=faces, box=box)
    return meshes


def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(n, 3)`` float32 of a triangle mesh (right-hand winding)."""
    p0, p1, p2 = (points[triangles[:, i]] for i in range(3))
    face = np.cross(p1 - p0, p2 - p0)
    flat = triangles.ravel()
    normals = np.stack([np.bincount(flat, np.repeat(face[:, c], 3), minlength=len(points)) for c in range(3)],
                       axis=1)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)


def mesh_polydata(mesh: LabelMesh) -> vtkPolyData:
    """A vtkPolyData sharing the mesh's arrays (no copy)."""
    points = vtkPoints()
    points.SetData(numpy_to_vtk(mesh.points, deep=False))
    cells = vtkCellArray()
    cells.SetData(3, numpy_to_vtk(mesh.triangles.ravel(), deep=False))
    normals = numpy_to_vtk(mesh.normals, deep=False)
    normals.SetName("Normals")
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetPolys(cells)
    poly.GetPointData().SetNormals(normals)
    return poly
