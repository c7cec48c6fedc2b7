"""Label maps, edits and undo, and every editing tool, on the real sample CT and its 117-class
TotalSegmentator label map (bundled), plus hand-labelled MR from ../shared/data when present."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medvision.annotate import brush, contours, regions
from medvision.annotate.rules import EditRules, paint, spacing_zyx
from medvision.annotate.statistics import label_statistics
from medvision.core.edits import History
from medvision.core.labels import Code, LabelMap, LabelTable
from medvision.core.measure import region_statistics
from medvision.io import load

from .conftest import SAMPLE_CT, SAMPLE_LABELS

LIVER, SPLEEN, AORTA = 5, 1, 52


@pytest.fixture(scope="module")
def ct():
    return load(SAMPLE_CT)


@pytest.fixture(scope="module")
def totalseg(ct):
    # the label file is stored with its rows flipped (as dcm2niix writes NIfTI); on the CT's grid
    # once reoriented
    lab = load(SAMPLE_LABELS).reoriented(ct.orientation)
    assert lab.same_grid(ct)
    return lab.array


@pytest.fixture
def labels(ct, totalseg):
    lm = LabelMap(totalseg.copy(), ct.affine)
    lm.table[LIVER].name = "liver"
    return lm


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# ---- label table ------------------------------------------------------------------------------
def test_label_table_round_trips_and_validates():
    table = LabelTable()
    liver = table.add("liver", (200, 100, 50), category=Code("123037004", "SCT", "Anatomical Structure"),
                      type=Code("10200004", "SCT", "Liver"))
    tumour = table.add("tumour", locked=True)
    assert (liver.value, tumour.value) == (1, 2) and tumour.color[3] == 255
    again = LabelTable.from_json(table.to_json())
    assert [la.as_dict() for la in again] == [la.as_dict() for la in table]
    assert again[1].type == Code("10200004", "SCT", "Liver") and again.locked_values() == [2]
    lut = table.lut()
    assert lut.shape == (3, 4) and tuple(lut[1]) == (200, 100, 50, 255) and not lut[0].any()
    table[1].visible = False
    assert not table.lut()[1].any()  # hidden: transparent
    monai = LabelTable.from_json(json.dumps({"background": 0, "ventricles": 1, "hippocampus": 3}))
    assert [(la.value, la.name) for la in monai] == [(1, "ventricles"), (3, "hippocampus")]
    with pytest.raises(ValueError):
        table.add("again", value=1)
    with pytest.raises(ValueError):
        LabelTable.from_json('{"labels": [{"value": 1, "color": [300, 0, 0]}]}')
    assert table.by_name("TUMOUR") is tumour and table.next_value() == 3


def test_label_map_widens_past_255(ct):
    lm = LabelMap.empty_like(ct)
    history = History(lm)
    box = (slice(3, 4), slice(10, 20), slice(10, 20))
    assert paint(history, lm, box, np.ones((1, 10, 10), bool), 300)
    assert lm.array.dtype == np.uint16 and lm.array[3, 15, 15] == 300
    history.undo()
    assert not lm.array.any()


# ---- brush -------------------------------------------------------------------------------------
def test_brush_disk_and_ball_are_physically_round():
    spacing = np.array([5.0, 0.7, 0.7])  # thick slices
    _box, mask = brush.brush_mask((10, 50, 50), brush.BrushShape(10.0, axis=0), spacing)
    assert mask.shape[0] == 1
    area_mm2 = mask.sum() * 0.7 * 0.7
    assert abs(area_mm2 - np.pi * 100) / (np.pi * 100) < 0.03
    _box, mask = brush.brush_mask((10, 50, 50), brush.BrushShape(10.0, axis=None), spacing)
    assert mask.shape[0] == 5  # +-10 mm at 5 mm slices: slices 8..12
    vol = mask.sum() * 5 * 0.7 * 0.7
    assert abs(vol - 4 / 3 * np.pi * 1000) / (4 / 3 * np.pi * 1000) < 0.2
    # a disk in a sagittal slice (normal x) of that grid: 29 pixels along y, 5 slices along z
    _box, mask = brush.brush_mask((10, 50, 50), brush.BrushShape(10.0, axis=2), spacing)
    assert mask.shape == (5, 29, 1)
    # a radius below a voxel still paints the voxel clicked
    _, tiny = brush.brush_mask((1, 1, 1), brush.BrushShape(0.1, axis=0), spacing)
    assert tiny.sum() == 1


def test_a_stroke_is_one_undo_step_and_joins_its_dabs(ct):
    lm = LabelMap.empty_like(ct)
    lm.table.add("lesion")
    history = History(lm)
    stroke = brush.Stroke(history, lm, brush.BrushShape(3.0, axis=0), 1)
    stroke.dab((10, 100, 100))
    stroke.dab((10, 100, 200))  # a fast move: 100 pixels in one event
    edit = stroke.finish()
    assert edit is not None and len(history.undo_stack) == 1 and "brush" in history.undo_text
    row = lm.array[10, 100, 97:204]  # radius 3 mm = 3 pixels of 0.98 mm
    assert row.all()  # no gaps between the dabs
    assert not lm.array[9].any() and not lm.array[11].any()
    history.undo()
    assert not lm.array.any()
    history.redo()
    assert lm.array[10, 100, 150] == 1


def test_brush_rules_locks_inside_label_intensity_and_erase(ct, labels):
    history = History(labels)
    z, y, x = np.argwhere(labels.array == LIVER)[len(np.argwhere(labels.array == LIVER)) // 2]
    region = (slice(z, z + 1), slice(y - 40, y + 41), slice(x - 40, x + 41))
    before = labels.array.copy()
    # locked liver: painting another label over it changes no liver voxel
    labels.table[LIVER].locked = True
    stroke = brush.Stroke(history, labels, brush.BrushShape(30.0, axis=0), SPLEEN)
    stroke.dab((z, y, x))
    stroke.finish()
    assert np.array_equal(labels.array == LIVER, before == LIVER)
    history.undo()
    labels.table[LIVER].locked = False
    # only inside the liver, only where 100..200 HU: the painted voxels satisfy both
    rules = EditRules(inside=LIVER, intensity=(100, 200))
    stroke = brush.Stroke(history, labels, brush.BrushShape(30.0, axis=0), 200, rules=rules, image=ct.array)
    stroke.dab((z, y, x))
    stroke.finish()
    painted = (labels.array == 200)[region]
    assert painted.any()
    assert np.all(before[region][painted] == LIVER)
    assert np.all((ct.array[region][painted] >= 100) & (ct.array[region][painted] <= 200))
    # erase only label 200: the liver around it stays
    eraser = brush.Stroke(history, labels, brush.BrushShape(30.0, axis=0), 0, erase_only=200)
    eraser.dab((z, y, x))
    eraser.finish()
    assert not (labels.array == 200).any()
    assert np.count_nonzero(labels.array[region] == LIVER) == np.count_nonzero(before[region] == LIVER) - painted.sum()
    history.undo()
    history.undo()
    assert np.array_equal(labels.array, before)


# ---- undo exactness and memory -----------------------------------------------------------------
def test_undo_of_many_random_edits_restores_bit_for_bit(ct, labels):
    rng = np.random.default_rng(7)
    history = History(labels)
    original = labels.array.copy()
    states = [original.copy()]
    tools = ["brush2d", "brush3d", "erase", "polygon", "threshold", "largest", "margin", "closing", "fill"]
    for i in range(40):
        tool = tools[i % len(tools)]
        z, y, x = int(rng.integers(0, 20)), int(rng.integers(60, 450)), int(rng.integers(60, 450))
        value = int(rng.choice([LIVER, SPLEEN, AORTA, 120]))
        if tool in ("brush2d", "brush3d", "erase"):
            axis = None if tool == "brush3d" else int(rng.integers(0, 3))
            stroke = brush.Stroke(history, labels, brush.BrushShape(float(rng.uniform(2, 12)), axis=axis),
                                  0 if tool == "erase" else value)
            for _ in range(5):
                stroke.dab((z, y + rng.integers(-20, 20), x + rng.integers(-20, 20)))
            stroke.finish()
        elif tool == "polygon":
            pts = np.array([[y, x], [y + 30, x + 5], [y + 10, x + 40]], float)
            contours.fill_polygon(history, labels, 0, z, pts, value)
        elif tool == "threshold":
            box = (slice(z, z + 2), slice(y - 30, y + 30), slice(x - 30, x + 30))
            mask = regions.threshold_mask(ct.array[box], 150, 1000)
            regions.apply_mask(history, labels, mask, value, box=box)
        elif tool == "largest":
            regions.keep_largest_island(history, labels, value)
        elif tool == "margin":
            regions.margin(history, labels, AORTA, float(rng.choice([-2.0, 2.0])))
        elif tool == "closing":
            regions.smooth(history, labels, SPLEEN, "closing", 2.0)
        else:
            contours.fill_between_slices(history, labels, 120, axis=0)
        if not np.array_equal(labels.array, states[-1]):
            states.append(labels.array.copy())
    assert len(history.undo_stack) == len(states) - 1 >= 25
    final = labels.array.copy()
    for k in range(len(states) - 2, -1, -1):
        history.undo()
        assert np.array_equal(labels.array, states[k]), f"undo step {k}"
    assert np.array_equal(labels.array, original) and not history.can_undo
    while history.can_redo:
        history.redo()
    assert np.array_equal(labels.array, final)


def test_history_is_bounded_in_bytes(ct):
    lm = LabelMap.empty_like(ct)
    history = History(lm, max_bytes=200_000)
    rng = np.random.default_rng(1)
    for _ in range(60):
        box = (slice(int(rng.integers(0, 20)), None), slice(0, 512), slice(0, 512))
        box = (slice(box[0].start, box[0].start + 1), box[1], box[2])
        noise = rng.integers(0, 3, (1, 512, 512)).astype(np.uint8)  # incompressible-ish
        history.write(box, noise)
    assert history.nbytes <= 200_000 + 600_000  # at most one edit over the bound is kept
    assert 0 < len(history.undo_stack) < 60
    states = []
    history.on_state(lambda: states.append((history.can_undo, history.can_redo)))
    history.undo()
    assert states[-1] == (history.can_undo, True)


# ---- threshold and region growing ---------------------------------------------------------------
def test_region_growing_on_the_real_ct_liver(ct, totalseg):
    liver = totalseg == LIVER
    inner = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(liver.astype(np.uint8)), [5, 5, 1]))
    pts = np.argwhere(inner)
    seed = tuple(int(v) for v in pts[len(pts) // 2])
    grown = regions.grow_connected(ct.array, [seed], 60, 130)
    # exactly the connected component of the thresholded image that holds the seed
    cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(
        ((ct.array >= 60) & (ct.array <= 130)).astype(np.uint8)), False))
    assert np.array_equal(grown, cc == cc[seed])
    recall = np.count_nonzero(grown & liver) / np.count_nonzero(liver)
    assert recall > 0.8 and _dice(grown, liver) > 0.65  # leaks into touching soft tissue, as expected
    conf = regions.grow_confidence(ct.array, [seed], multiplier=2.0, iterations=3, radius=2)
    assert conf[seed] and _dice(conf, liver) > 0.65
    with pytest.raises(ValueError, match="outside"):
        regions.grow_connected(ct.array, [(25, 0, 0)], 0, 1)


# ---- islands, smoothing, margins, logical --------------------------------------------------------
def test_islands_on_real_labels(labels, totalseg):
    history = History(labels)
    ids = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray((totalseg == SPLEEN).astype(np.uint8))))
    sizes = np.bincount(ids.ravel())[1:]
    # add a small island of spleen far away
    labels.array[0, 5:8, 5:8] = SPLEEN
    labels.table[SPLEEN].locked = True  # a locked label is not cleaned up
    assert not regions.keep_largest_island(history, labels, SPLEEN) and labels.array[0, 6, 6] == SPLEEN
    labels.table[SPLEEN].locked = False
    assert regions.keep_largest_island(history, labels, SPLEEN)
    assert np.count_nonzero(labels.array == SPLEEN) == sizes.max()
    assert not labels.array[0, 5:8, 5:8].any()
    history.undo()
    assert regions.remove_small_islands(history, labels, SPLEEN, 10)
    assert not labels.array[0, 5:8, 5:8].any() and np.count_nonzero(labels.array == SPLEEN) >= sizes.max()
    history.undo()
    assert regions.keep_island_at(history, labels, (0, 6, 6))
    assert np.count_nonzero(labels.array == SPLEEN) == 9


def _ball(shape, center, r):
    zz, yy, xx = np.indices(shape)
    return (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= r * r


def test_margin_is_an_exact_physical_distance():
    affine = np.diag([0.8, 0.8, 2.0, 1.0])  # anisotropic: 0.8 mm pixels, 2 mm slices
    lm = LabelMap(np.zeros((30, 60, 60), np.uint8), affine)
    lm.array[15, 30, 30] = 1
    history = History(lm)
    assert regions.margin(history, lm, 1, 4.0)
    zz, yy, xx = np.indices(lm.shape)
    dist = np.sqrt(((zz - 15) * 2.0) ** 2 + ((yy - 30) * 0.8) ** 2 + ((xx - 30) * 0.8) ** 2)
    assert np.array_equal(lm.array == 1, dist <= 4.0)
    assert regions.margin(history, lm, 1, -2.0)
    assert lm.array.any() and np.all(dist[lm.array == 1] <= 4.0 - 2.0 + 0.8)
    history.undo()
    history.undo()
    assert np.count_nonzero(lm.array) == 1


def test_smoothing_closes_holes_and_opens_spurs():
    lm = LabelMap(_ball((20, 40, 40), (10, 20, 20), 8).astype(np.uint8), np.eye(4))
    history = History(lm)
    lm.array[10, 20, 20] = 0  # a hole
    lm.array[10, 20, 28:38] = 1  # a one-voxel spur
    assert regions.smooth(history, lm, 1, "closing", 2.0)
    assert lm.array[10, 20, 20] == 1
    assert regions.smooth(history, lm, 1, "opening", 2.0)
    assert not lm.array[10, 20, 32:38].any()
    assert regions.smooth(history, lm, 1, "median", 1.0) in (True, False)
    with pytest.raises(ValueError, match="smaller than a voxel"):
        regions.smooth(history, lm, 1, "median", 0.2)
    with pytest.raises(ValueError, match="unknown"):
        regions.smooth(history, lm, 1, "gaussian", 2.0)


def test_logical_operations(labels, totalseg):
    history = History(labels)
    liver = totalseg == LIVER
    box = np.zeros_like(liver)
    box[:, :256] = True
    regions.logical(history, labels, LIVER, "intersect", box)
    assert np.array_equal(labels.array == LIVER, liver & box)
    regions.logical(history, labels, LIVER, "union", liver)
    assert np.array_equal(labels.array == LIVER, liver)
    regions.logical(history, labels, LIVER, "subtract", box)
    assert np.array_equal(labels.array == LIVER, liver & ~box)
    regions.logical(history, labels, LIVER, "clear")
    assert not (labels.array == LIVER).any()
    for _ in range(4):
        history.undo()
    assert np.array_equal(labels.array, totalseg)


# ---- polygon and fill between slices -----------------------------------------------------------
def test_polygon_fill_covers_pixel_centres_inside():
    (rs, cs), mask = contours.polygon_mask([[10, 10], [10, 20], [20, 20], [20, 10]], (64, 64))
    # even-odd with half-open edges: rows 10..19, columns 10..19
    full = np.zeros((64, 64), bool)
    full[rs, cs] = mask
    assert full.sum() == 100 and full[10:20, 10:20].all()
    (rs, cs), tri = contours.polygon_mask([[0, 0], [0, 40], [40, 0]], (64, 64))
    assert abs(tri.sum() - 800) < 60


def test_fill_between_slices_interpolates_shapes():
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    lm = LabelMap(np.zeros((12, 60, 60), np.uint8), affine)
    lm.array[2] = _ball((1, 60, 60), (0, 30, 24), 6)[0]  # a shape that moves and grows
    lm.array[8] = _ball((1, 60, 60), (0, 30, 36), 12)[0]
    history = History(lm)
    assert contours.fill_between_slices(history, lm, 1, axis=0)
    for k in range(3, 8):
        t = (k - 2) / 6
        area = np.count_nonzero(lm.array[k])
        centre_x = np.argwhere(lm.array[k])[:, 1].mean()
        assert abs(centre_x - (24 + 12 * t)) < 2.0  # moves from x 24 to x 36
        radius = np.sqrt(area / np.pi)
        assert 6 - 1 <= radius <= 12 + 1
    assert not lm.array[:2].any() and not lm.array[9:].any()
    assert len(history.undo_stack) == 1
    history.undo()
    assert np.count_nonzero(lm.array[3:8]) == 0


@pytest.mark.usefixtures("shared_data")
def test_fill_between_slices_on_hand_drawn_ventricles(shared_data):
    seg = load(shared_data / "labeled" / "MRIcrop-seg.gipl.gz")
    truth = seg.array.astype(np.uint8)
    values = [v for v in np.unique(truth) if v]
    value = max(values, key=lambda v: np.count_nonzero(truth == v))  # the largest structure
    slices = contours.drawn_slices(truth, value, axis=0)
    kept = slices[::3]  # an annotator drew every third slice
    sparse = np.where(np.isin(np.arange(truth.shape[0]), kept)[:, None, None], truth, 0)
    lm = LabelMap(sparse.copy(), seg.affine)
    assert contours.fill_between_slices(History(lm), lm, value, axis=0)
    gaps = [k for k in range(kept[0], kept[-1] + 1) if k not in kept]
    truth_gaps, filled = truth[gaps] == value, lm.array[gaps] == value
    assert _dice(filled, truth_gaps) > 0.75


# ---- statistics ---------------------------------------------------------------------------------
def test_statistics_match_numpy(ct, labels, totalseg):
    stats = {s.value: s for s in label_statistics(labels, ct.array)}
    liver = totalseg == LIVER
    s = stats[LIVER]
    assert s.name == "liver" and s.voxels == np.count_nonzero(liver)
    voxel_ml = np.prod(ct.spacing) / 1000
    assert s.volume_ml == pytest.approx(s.voxels * voxel_ml)
    values = ct.array[liver].astype(np.float64)
    assert s.mean == pytest.approx(values.mean()) and s.std == pytest.approx(values.std(ddof=1), rel=1e-6)
    assert (s.min, s.max) == (values.min(), values.max())
    assert 60 < s.mean < 120  # HU of liver parenchyma
    roi = region_statistics(ct.array, liver, voxel_ml)
    assert roi["mean"] == pytest.approx(s.mean) and roi["voxels"] == s.voxels
    assert spacing_zyx(ct.affine)[0] == pytest.approx(ct.spacing[2])
