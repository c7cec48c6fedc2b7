"""DICOM RT Structure Sets read as label maps: contours filled (even-odd, holes empty) on the grid of
the series they were drawn on, exactly to the voxel; names and colours; grids with flipped and
permuted axes; frame-of-reference and oblique-plane errors; a file from another tool; `convert`."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medvision.cli import main
from medvision.core.volume import Volume, affine_from_geometry
from medvision.io import MedvisionIOError, UnsupportedDataError, load
from medvision.io.labels import load_labels
from medvision.io.rtstruct import RTSTRUCT_SOP_CLASS, is_rtstruct, read_rtstruct, referenced_series_uids
from medvision.io.seg import is_seg

from .dicomgen import write_series

# the synthetic CT: 6 axial slices of 32 rows x 30 columns; column c, row r, slice k lie at
# LPS (-10 + 0.7 c, -20 + 0.8 r, 30 + 2 k) mm (PixelSpacing is row spacing 0.8, column spacing 0.7)
N_Z, ROWS, COLS = 6, 32, 30
ORIGIN, DX, DY, DZ = np.array([-10.0, -20.0, 30.0]), 0.7, 0.8, 2.0
FRAME = "1.2.826.0.1.3680043.8.498.1"  # dicomgen's Frame of Reference UID


def mm(c, r, k) -> np.ndarray:
    """LPS millimetres of (column, row, slice), straight from the DICOM geometry above."""
    c, r, k = np.broadcast_arrays(*(np.asarray(v, float) for v in (c, r, k)))
    return np.stack([ORIGIN[0] + DX * c, ORIGIN[1] + DY * r, ORIGIN[2] + DZ * k], axis=-1)


def rectangle(c0, c1, r0, r1, k) -> np.ndarray:
    """A rectangle whose edges run half-way between pixel centres: it covers columns c0..c1 and
    rows r0..r1 on slice k, exactly."""
    return mm([c0 - 0.5, c1 + 0.5, c1 + 0.5, c0 - 0.5], [r0 - 0.5, r0 - 0.5, r1 + 0.5, r1 + 0.5], k)


def circle(cc, rc, radius, k, clockwise=False, n=720) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) * (-1 if clockwise else 1)
    return mm(cc + radius * np.cos(t), rc + radius * np.sin(t), k)


def write_rtstruct(path, rois, *, study_uid, series_uid, frame=FRAME, contour_order=None, images=()):
    """An RT Structure Set as a planning system writes one. ``rois``: (number, name, colour or None,
    [(ContourGeometricType, (n, 3) LPS points), ...]); ``images``: the image files it was drawn on."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Synthetic", "SYN001", "", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20260101", "120000", "1"
    ds.ReferringPhysicianName, ds.AccessionNumber = "", ""
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), 99, 1
    ds.Manufacturer, ds.OperatorsName = "test planning system", ""
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "PLAN1", "20260101", "120000"
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ContourImageSequence = []
    for image in images:
        ref, header = Dataset(), dcmread(image, stop_before_pixels=True)
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
        series.ContourImageSequence.append(ref)
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = study_uid
    study.RTReferencedSeriesSequence = Sequence([series])
    ref_frame = Dataset()
    ref_frame.FrameOfReferenceUID = frame
    ref_frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_frame])
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, name, colour, contours in rois:
        item = Dataset()
        item.ROINumber, item.ReferencedFrameOfReferenceUID, item.ROIName = number, frame, name
        item.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType = "MARKER" if all(t == "POINT" for t, _ in contours) else "ORGAN"
        obs.ROIInterpreter = ""
        ds.RTROIObservationsSequence.append(obs)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        if colour is not None:
            roi_contour.ROIDisplayColor = list(colour)
        roi_contour.ContourSequence = []
        for i, (kind, pts) in enumerate(contours, start=1):
            c = Dataset()
            c.ContourNumber, c.ContourGeometricType = i, kind
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.6f}" for v in np.asarray(pts).ravel()]
            roi_contour.ContourSequence.append(c)
        ds.ROIContourSequence.append(roi_contour)
    if contour_order is not None:  # ROIContourSequence need not follow StructureSetROISequence's order
        ds.ROIContourSequence = [ds.ROIContourSequence[i] for i in contour_order]
    ds.save_as(path, enforce_file_format=True)
    return path


# square 1 on slice 1; ring 2 (a circle with a hole) on slice 3; cord 3 on slices 0, 1, 2, 4 and 5;
# boost 4 overlaps the square on slice 1; an isocentre point (not a label)
SQUARE = (3, 8, 4, 9, 1)  # columns 3..8, rows 4..9, slice 1: 36 voxels
RING = (15, 16, 6.5, 3.5, 3)  # centre column 15, row 16; radii 6.5 and 3.5 pixels; slice 3
CORD = (22, 25, 22, 28, (0, 1, 2, 4, 5))
BOOST = (6, 10, 8, 12, 1)  # meets the square in columns 6..8, rows 8..9: 6 voxels


def expected_labels() -> np.ndarray:
    out = np.zeros((N_Z, ROWS, COLS), np.uint8)
    c0, c1, r0, r1, k = SQUARE
    out[k, r0:r1 + 1, c0:c1 + 1] = 1
    cc, rc, ro, ri, k = RING
    rr, cols = np.mgrid[0:ROWS, 0:COLS]
    d2 = (cols - cc) ** 2 + (rr - rc) ** 2
    out[k][(d2 < ro ** 2) & (d2 > ri ** 2)] = 2
    c0, c1, r0, r1, ks = CORD
    for k in ks:
        out[k, r0:r1 + 1, c0:c1 + 1] = 3
    c0, c1, r0, r1, k = BOOST
    out[k, r0:r1 + 1, c0:c1 + 1] = 4
    return out


#: what a DICOM SEG written on the CT copies from it
_PATIENT_STUDY = {"PatientBirthDate": "", "PatientSex": "O", "StudyTime": "120000", "StudyID": "1",
                  "ReferringPhysicianName": "", "AccessionNumber": ""}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A folder with a CT series (ct/) and the RT structure set drawn on it (rs.dcm)."""
    folder = tmp_path_factory.mktemp("study")
    study_uid, series_uid = generate_uid(), generate_uid()
    images = write_series(folder / "ct", N_Z, rows=ROWS, cols=COLS, spacing=(DY, DX), dz=DZ, origin=tuple(ORIGIN),
                 series_uid=series_uid, study_uid=study_uid, extra_per_slice=lambda k, t: _PATIENT_STUDY)
    cc, rc, ro, ri, k = RING
    rois = [
        (10, "Square", (255, 0, 0), [("CLOSED_PLANAR", rectangle(*SQUARE))]),
        (20, "Ring", (0, 200, 100), [("CLOSED_PLANAR", circle(cc, rc, ro, k)),
                                     ("CLOSED_PLANAR", circle(cc, rc, ri, k, clockwise=True))]),
        (30, "Cord", (10, 20, 250), [("CLOSED_PLANAR", rectangle(*CORD[:4], k)) for k in CORD[4]]),
        (40, "Boost", None, [("CLOSED_PLANAR", rectangle(*BOOST))]),
        (50, "Iso", (255, 255, 0), [("POINT", mm([15], [16], [3]))]),
    ]
    write_rtstruct(folder / "rs.dcm", rois, study_uid=study_uid, series_uid=series_uid,
                   contour_order=[4, 2, 0, 3, 1], images=images)
    return folder, series_uid


@pytest.fixture(scope="module")
def ct(study):
    return load(study[0] / "ct")


def test_the_synthetic_structure_set_is_valid_dicom(study):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy is not installed (bash packaging/setup.sh --dev installs dicom3tools)")
    out = subprocess.run(["dciodvfy", str(study[0] / "rs.dcm")], capture_output=True, text=True)
    assert [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")] == []


def test_contours_are_filled_to_the_voxel_with_holes_names_colours_and_overlaps(study, ct):
    folder, series_uid = study
    assert is_rtstruct(folder / "rs.dcm") and not is_rtstruct(next((folder / "ct").iterdir()))
    assert referenced_series_uids(folder / "rs.dcm") == [series_uid]
    assert ct.orientation == "LPS" and np.allclose(ct.index_to_world([3, 4, 1]), mm(3, 4, 1))
    lm = read_rtstruct(folder / "rs.dcm", ct)
    expected = expected_labels()
    assert lm.on_grid_of(ct) and lm.array.dtype == np.uint8
    assert np.array_equal(lm.array, expected)
    # the square covers exactly its 6 x 6 voxels on slice 1 (less the 6 the later boost took)
    assert np.count_nonzero(lm.array == 1) == 36 - 6 and np.count_nonzero(lm.array[[0, 2, 3, 4, 5]] == 1) == 0
    # the ring's hole is empty; the circle's centre with it
    cc, rc, _ro, ri, k = RING
    assert lm.array[k, rc, cc] == 0 and lm.array[k, rc, cc + int(ri)] == 0 and lm.array[k, rc, cc + 5] == 2
    assert sorted(np.nonzero((lm.array == 3).any(axis=(1, 2)))[0].tolist()) == [0, 1, 2, 4, 5]
    assert [(la.value, la.name) for la in lm.table] == [(1, "Square"), (2, "Ring"), (3, "Cord"), (4, "Boost")]
    assert lm.table[1].color == (255, 0, 0, 255) and lm.table[2].color == (0, 200, 100, 255)
    assert lm.table[3].color == (10, 20, 250, 255) and lm.table[4].color[3] == 255  # Boost: a palette colour
    assert lm.placement == "rasterized" and lm.metadata["source"] == "RTSTRUCT"
    assert lm.metadata["roi_numbers"] == {1: 10, 2: 20, 3: 30, 4: 40}
    assert lm.metadata["overlaps"] == [{"roi": "Boost", "over": "Square", "voxels": 6}]
    assert lm.metadata["skipped_rois"] == ["Iso"]
    assert any("Boost" in w and "Square" in w for w in lm.metadata["warnings"])


def test_grids_with_flipped_and_permuted_axes_get_the_same_voxels(study, ct, tmp_path):
    expected = Volume(expected_labels(), ct.affine, FRAME)
    # in memory: columns run anterior, rows to the right, slices inferior
    turned = ct.reoriented("ARI")
    lm = read_rtstruct(study[0] / "rs.dcm", turned)
    assert lm.on_grid_of(turned) and np.array_equal(lm.array, expected.reoriented("ARI").array)
    # from DICOM: the same voxels acquired with rows along +y and columns along +x, slices going down
    native_dir = tmp_path / "permuted"
    write_series(native_dir, N_Z, rows=COLS, cols=ROWS, spacing=(DX, DY), dz=DZ, iop=(0, 1, 0, 1, 0, 0),
                 origin=tuple(mm(0, 0, N_Z - 1)))
    native = load(native_dir)
    assert native.orientation != "LPS"
    want = expected.reoriented(native.orientation)
    assert want.same_grid(native)
    lm = read_rtstruct(study[0] / "rs.dcm", native)
    assert np.array_equal(lm.array, want.array)
    # a sagittal grid: the axial contours cut across its slices
    with pytest.raises(UnsupportedDataError, match="not in the plane of the slices"):
        read_rtstruct(study[0] / "rs.dcm", ct.reoriented("PIL"))


def _one_roi(path, contours, **kw):
    return write_rtstruct(path, [(1, "Thing", (1, 2, 3), contours)], study_uid="1.2.3", series_uid="1.2.3.4", **kw)


def test_oblique_contours_between_and_outside_slices(tmp_path, ct):
    tilted = rectangle(*SQUARE)
    tilted[:, 2] += np.array([0.0, 3.0, 3.0, 0.0])  # rises 3 mm across the square: an oblique plane
    with pytest.raises(UnsupportedDataError, match="'Thing'.*oblique"):
        read_rtstruct(_one_roi(tmp_path / "oblique.dcm", [("CLOSED_PLANAR", tilted)]), ct)
    # planes 0.8 and 1.3 both round to slice 1: the nearer one (0.8, the square) is kept; slice 9 is outside
    contours = [("CLOSED_PLANAR", rectangle(3, 8, 4, 9, 0.8)), ("CLOSED_PLANAR", rectangle(20, 25, 4, 9, 1.3)),
                ("CLOSED_PLANAR", rectangle(3, 8, 4, 9, 9))]
    lm = read_rtstruct(_one_roi(tmp_path / "between.dcm", contours), ct)
    assert np.count_nonzero(lm.array) == 36 and np.count_nonzero(lm.array[1, 4:10, 3:9]) == 36
    warnings = " ".join(lm.metadata["warnings"])
    assert "outside the image's slices" in warnings and "between the image's slices" in warnings


def test_structure_sets_with_nothing_to_fill_say_so(tmp_path, ct):
    with pytest.raises(MedvisionIOError, match="only POINT contours"):
        read_rtstruct(_one_roi(tmp_path / "points.dcm", [("POINT", mm([1], [1], [1]))]), ct)
    with pytest.raises(MedvisionIOError, match="no contours for any of its ROIs"):
        read_rtstruct(_one_roi(tmp_path / "empty.dcm", []), ct)
    with pytest.raises(MedvisionIOError, match="frame of reference 9.9.9"):
        read_rtstruct(_one_roi(tmp_path / "other.dcm", [("CLOSED_PLANAR", rectangle(*SQUARE))], frame="9.9.9"), ct)
    with pytest.raises(MedvisionIOError, match="not a DICOM RT Structure Set"):
        read_rtstruct(write_series(tmp_path / "one", 1)[0], ct)


def test_pydicom_rtstruct_from_another_tool(ct):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtstruct.dcm")
    assert path is not None and is_rtstruct(path)  # a bare dataset: no preamble, no file meta
    with pytest.raises(MedvisionIOError, match="frame of reference .* but the image .* is in"):
        read_rtstruct(path, ct)
    # on a grid in its frame of reference: the body outline fills, the isocentre points are no labels
    grid = Volume(np.zeros((3, 50, 50), np.int16), affine_from_geometry((10, 10, 10), (-245, -245, -200)),
                  "1.2.826.0.1.3680043.8.498.2010020400001.2")
    lm = read_rtstruct(path, grid)
    assert [la.name for la in lm.table] == ["patient"] and lm.table[1].color == (220, 160, 120, 255)
    assert all(np.count_nonzero(lm.array[k]) > 100 for k in range(3))
    assert lm.metadata["skipped_rois"] == ["Isocenter 1", "Isocenter 2"]


def test_convert_finds_the_referenced_series_beside_the_structure_set(study, ct, tmp_path, capsys):
    folder, _ = study
    out = tmp_path / "labels.nii.gz"
    assert main(["convert", str(folder / "rs.dcm"), "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr()
    assert "4 labels" in printed.out and "rasterized onto the reference" in printed.out
    assert "Boost" in printed.err  # the overlap warning
    back = load_labels(out)
    assert np.array_equal(back.array, expected_labels()) and back.on_grid_of(ct)
    assert back.table[2].name == "Ring" and back.table[2].color == (0, 200, 100, 255)
    # with --reference, and on to a DICOM SEG referencing the CT
    seg = tmp_path / "labels.dcm"
    assert main(["convert", str(folder / "rs.dcm"), "--reference", str(folder / "ct"), "-o", str(seg), "-q"]) == 0
    assert is_seg(seg)
    # alone in a folder: no series to fill the contours on
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(folder / "rs.dcm", lonely / "rs.dcm")
    with pytest.raises(SystemExit, match="--reference"):
        main(["convert", str(lonely / "rs.dcm"), "-o", str(tmp_path / "x.nii.gz"), "-q"])
    # the wrong series: the frame-of-reference message, not a traceback
    from pydicom.data import get_testdata_file

    assert main(["convert", get_testdata_file("rtstruct.dcm"), "--reference", str(folder / "ct"),
                 "-o", str(tmp_path / "y.nii.gz"), "-q"]) == 2
    assert "frame of reference" in capsys.readouterr().err
