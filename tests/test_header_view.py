"""DICOM header rows (medvision.io.dicom.header) and the searchable header viewer (offscreen)."""

from __future__ import annotations

import copy
import time
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

import medvision.ui.panels.header_view as header_view_module
from medvision.io.dicom.files import FileRef
from medvision.io.dicom.header import (
    HeaderTree,
    header_rows,
    iter_rows,
    mark_frame,
    normalize_query,
)
from medvision.io.errors import NotDicomError
from medvision.ui.panels.header_view import DicomHeaderView

from .conftest import SAMPLE_CT

CT_SMALL = get_testdata_file("CT_small.dcm")
ENHANCED_CT = get_testdata_file("eCT_Supplemental.dcm")  # enhanced CT with per-frame functional groups
ENHANCED_MR = get_testdata_file("emri_small.dcm")  # enhanced MR, 10 frames (its functional groups were stripped)


def _by_tag(rows, tag: str):
    return next(r for r in iter_rows(rows) if r.tag == tag)


def _sample_files() -> list[Path]:
    return sorted(p for p in SAMPLE_CT.iterdir() if p.is_file())


# -- header rows (no Qt) ---------------------------------------------------------------------------


def test_header_rows_ct_small_values_vrs_meta_and_pixels():
    rows = header_rows(FileRef(CT_SMALL))
    assert rows[0].tag == "(0002,0000)"
    assert [r.tag[:5] for r in rows[:8]] == ["(0002"] * 8  # the file meta group comes first
    ts = _by_tag(rows, "(0002,0010)")
    assert ts.value == "1.2.840.10008.1.2.1 (Explicit VR Little Endian)"
    name = _by_tag(rows, "(0010,0010)")
    assert (name.keyword, name.name, name.vr, name.value) == ("PatientName", "Patient's Name", "PN",
                                                              "CompressedSamples^CT1")
    assert _by_tag(rows, "(0008,0008)").value == "ORIGINAL\\PRIMARY\\AXIAL"  # multi-values joined with "\"
    assert _by_tag(rows, "(0008,0020)").value == "20040119"  # dates as they are
    assert _by_tag(rows, "(0028,0030)").value == "0.661468\\0.661468"
    pixels = _by_tag(rows, "(7FE0,0010)")
    assert (pixels.vr, pixels.value) == ("OW", "<32768 bytes>")
    assert _by_tag(rows, "(0002,0001)").value == "<2 bytes>"
    # private tags: the private dictionary's name and the creator
    assert _by_tag(rows, "(0009,0010)").name == "Private Creator"
    assert _by_tag(rows, "(0009,1001)").name == "Full fidelity [GEMS_IDEN_01]"
    assert _by_tag(rows, "(0009,1001)").keyword == ""
    tags = [r.tag for r in rows]
    assert tags == sorted(tags)


def test_sequences_nest_one_child_per_item():
    rows = header_rows(FileRef(CT_SMALL))
    seq = _by_tag(rows, "(0010,1002)")
    assert (seq.keyword, seq.vr, seq.value) == ("OtherPatientIDsSequence", "SQ", "2 items")
    assert [c.name for c in seq.children] == ["Item 1", "Item 2"]
    assert [[(e.tag, e.value) for e in item.children] for item in seq.children] == [
        [("(0010,0020)", "ABCD1234"), ("(0010,0022)", "TEXT")],
        [("(0010,0020)", "1234ABCD"), ("(0010,0022)", "TEXT")],
    ]
    assert seq.children[0].value == "2 elements"


def test_enhanced_multiframe_marks_the_frame_item():
    rows = header_rows(FileRef(ENHANCED_CT), frame=1)
    per_frame = _by_tag(rows, "(5200,9230)")
    assert [c.name for c in per_frame.children] == ["Item 1", "Item 2 (this frame)"]
    # the marked item is frame 2's: its position is the one the file gives for it
    ipp = _by_tag(per_frame.children[1].children, "(0020,0032)")
    assert ipp.value == "99.5000\\-301.500\\-149.000"
    shared = _by_tag(rows, "(5200,9229)")
    assert "(this frame)" not in [r.name for r in iter_rows(shared.children)][0]
    unmarked = header_rows(FileRef(ENHANCED_CT))
    assert not [r for r in iter_rows(unmarked) if "this frame" in r.name]
    # marking copies: the rows it was given stay as they were
    marked = mark_frame(unmarked, 0)
    assert _by_tag(marked, "(5200,9230)").children[0].name == "Item 1 (this frame)"
    assert _by_tag(unmarked, "(5200,9230)").children[0].name == "Item 1"
    assert mark_frame(unmarked, 5) == unmarked  # no such frame: nothing marked
    # enhanced MR: ten frames in one file, read and measured without decoding
    mr = header_rows(FileRef(ENHANCED_MR), frame=3)
    assert _by_tag(mr, "(0028,0008)").value == "10"
    assert _by_tag(mr, "(7FE0,0010)").value == f"<{64 * 64 * 2 * 10} bytes>"


def test_file_inside_a_zip(tmp_path):
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(CT_SMALL, "series/ct1.dcm")
        zf.writestr("readme.txt", "not dicom")
    rows = header_rows(FileRef(str(archive), "series/ct1.dcm"))
    assert _by_tag(rows, "(0010,0010)").value == "CompressedSamples^CT1"
    assert _by_tag(rows, "(7FE0,0010)").value == "<32768 bytes>"
    with pytest.raises(NotDicomError, match=r"study\.zip!readme\.txt: not a DICOM file"):
        header_rows(FileRef(str(archive), "readme.txt"))


def test_unreadable_files_raise_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"this is not a DICOM file at all" * 10)
    with pytest.raises(NotDicomError, match=r"garbage\.dcm: not a DICOM file"):
        header_rows(FileRef(str(garbage)))
    with pytest.raises(NotDicomError, match=r"missing\.dcm: no such file"):
        header_rows(FileRef(str(tmp_path / "missing.dcm")))
    # a file cut short inside its pixel data: the header shows, the pixel data says what is missing
    data = Path(CT_SMALL).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-1000])
    pixels = _by_tag(header_rows(FileRef(str(cut))), "(7FE0,0010)")
    assert pixels.value.startswith("<32768 bytes, file truncated:")


def test_compressed_pixels_and_siemens_private_blobs():
    rows = header_rows(FileRef(str(_sample_files()[0])))  # Siemens CT, JPEG 2000
    pixels = _by_tag(rows, "(7FE0,0010)")
    assert pixels.value.endswith("bytes, compressed, 1 fragment>")
    assert int(pixels.value[1:].split()[0]) > 10_000
    csa = _by_tag(rows, "(0029,1010)")
    assert (csa.name, csa.vr, csa.value) == ("CSA Image Header Info [SIEMENS CSA HEADER]", "OB", "<1336 bytes>")
    app_headers = _by_tag(rows, "(0029,1140)")  # a private sequence, nested as well
    assert len(app_headers.children) == 2 and app_headers.children[0].children
    multi = header_rows(FileRef(get_testdata_file("emri_small_RLE.dcm")))  # one fragment per frame
    assert _by_tag(multi, "(7FE0,0010)").value.endswith("bytes, compressed, 10 fragments>")


def test_compressed_pixels_inside_a_zip(tmp_path):
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(_sample_files()[0], "CT/1.dcm")
    plain = _by_tag(header_rows(FileRef(str(_sample_files()[0]))), "(7FE0,0010)").value
    assert _by_tag(header_rows(FileRef(str(archive), "CT/1.dcm")), "(7FE0,0010)").value == plain


def _write_unusual(path: Path) -> None:
    ds = pydicom.dcmread(CT_SMALL)
    item = Dataset()
    item.add_new(0x00091010, "OB", b"\x01" * 9000)  # private, creator missing, deferred (> 4 KiB)
    item.add_new(0x00204000, "LT", "first line\r\nsecond line " + "x" * 6000)
    ds.add_new(0x00081140, "SQ", [item])
    ds.add_new(0x00113010, "LO", "no creator for this block")
    ds.add_new(0x00280030, "DS", ["0.5"] * 100)
    ds.save_as(path)


def test_long_values_binary_and_unknown_private_tags(tmp_path):
    path = tmp_path / "unusual.dcm"
    _write_unusual(path)
    rows = header_rows(FileRef(str(path)))
    item = _by_tag(rows, "(0008,1140)").children[0]
    blob = _by_tag(item.children, "(0009,1010)")
    assert (blob.name, blob.vr, blob.value) == ("Private tag", "OB", "<9000 bytes>")
    text = _by_tag(item.children, "(0020,4000)")
    assert text.value.startswith("first line \u21b5 second line xxx")
    assert text.value.endswith(f"... ({len(text.full_value)} chars)")
    assert len(text.value) < 300 and len(text.full_value) > 6000
    assert text.copy_value == text.full_value
    assert _by_tag(rows, "(0011,3010)").name == "Private tag"  # block 0x30 of group 0011 has no creator
    assert _by_tag(rows, "(0011,1010)").name == "Patient Status [GEMS_PATI_01]"
    many = _by_tag(rows, "(0028,0030)")
    assert many.value.startswith("0.5\\0.5\\") and many.value.endswith("... (100 values)")


def test_tree_filter_keeps_ancestors_and_counts():
    assert normalize_query("0010,0010") == normalize_query("(0010,0010)") == "00100010"
    assert normalize_query(" (0010, 0010) ") == "00100010"
    assert normalize_query("PatientName") == "patientname"
    tree = HeaderTree(header_rows(FileRef(CT_SMALL)))
    assert tree.filter(normalize_query("abcd1234")) == 1  # inside item 1 of a sequence
    top = [n.row.tag for n in tree.root.shown]
    assert top == ["(0010,1002)"]
    seq = tree.root.shown[0]
    assert [n.name for n in seq.shown] == ["Item 1"]
    assert [n.row.value for n in seq.shown[0].shown] == ["ABCD1234"]
    assert not seq.match and seq.shown[0].shown[0].match
    assert tree.filter("") == 0
    assert len(tree.root.shown) == len(tree.root.children) > 200


# -- the widget ----------------------------------------------------------------------------------


@pytest.fixture
def view(qtbot):
    w = DicomHeaderView()
    qtbot.addWidget(w)
    w.resize(900, 620)
    w.show()
    qtbot.waitExposed(w)
    return w


def _top_values(w: DicomHeaderView) -> list[tuple[str, str]]:
    m = w.model
    return [(m.index(r, 0).data(), m.index(r, 3).data()) for r in range(m.rowCount())]


def _find_top(w: DicomHeaderView, tag: str):
    m = w.model
    return next(m.index(r, 0) for r in range(m.rowCount()) if m.index(r, 0).data() == tag)


def test_view_shows_header_rows_and_title(view):
    view.set_source(FileRef(CT_SMALL), title="slice 12 of 20")
    assert view.title_label.text() == "CT_small.dcm \u2014 slice 12 of 20"
    assert view.message == "" and view.tree.isVisible()
    values = dict(_top_values(view))
    assert len(values) == len(header_rows(FileRef(CT_SMALL)))
    assert values["(0010,0010)"] == "CompressedSamples^CT1"
    seq = _find_top(view, "(0010,1002)")
    assert view.model.rowCount(seq) == 2 and not view.tree.isExpanded(seq)
    assert view.model.index(0, 1, seq).data() == "Item 1"
    assert view.model.index(seq.row(), 2).data() == "SQ"
    assert [view.model.headerData(c, Qt.Orientation.Horizontal) for c in range(4)] == ["Tag", "Name", "VR", "Value"]
    view.set_source(None)
    assert view.title_label.text() == "" and view.model.rowCount() == 0


@pytest.mark.parametrize("query", ["0010,0010", "00100010", "(0010,0010)", "patientname", "PATIENT'S NAME",
                                   "compressedsamples^"])
def test_search_finds_patient_name(view, query):
    view.set_source(FileRef(CT_SMALL))
    assert view.search(query) == 1
    assert _top_values(view) == [("(0010,0010)", "CompressedSamples^CT1")]
    assert view.count_label.text() == "1 match"


def test_search_typing_nested_matches_and_clearing(view, qtbot):
    view.set_source(FileRef(CT_SMALL))
    total = view.model.rowCount()
    qtbot.keyClicks(view.search_edit, "abcd")  # typed: filters as the user types (small header)
    assert view.match_count == 2  # "ABCD1234" and "1234ABCD", each inside an item of the sequence
    assert view.count_label.text() == "2 matches"
    assert [t for t, _ in _top_values(view)] == ["(0010,1002)"]
    seq = _find_top(view, "(0010,1002)")
    assert view.tree.isExpanded(seq)  # ancestors of matches are open
    items = [view.model.index(r, 0, seq) for r in range(view.model.rowCount(seq))]
    assert [i.siblingAtColumn(1).data() for i in items] == ["Item 1", "Item 2"]
    assert all(view.tree.isExpanded(i) for i in items)
    assert [view.model.index(0, 3, i).data() for i in items] == ["ABCD1234", "1234ABCD"]
    assert [view.model.rowCount(i) for i in items] == [1, 1]  # the other element of each item is hidden
    assert view.search("no such thing anywhere") == 0
    assert view.model.rowCount() == 0 and view.count_label.text() == "0 matches"
    view.search_edit.clear()  # clearing restores everything, sequences collapsed
    assert view.model.rowCount() == total and view.count_label.text() == ""
    seq = _find_top(view, "(0010,1002)")
    assert view.model.rowCount(seq) == 2 and not view.tree.isExpanded(seq)


def test_copy_value_and_row(view, qtbot):
    view.set_source(FileRef(CT_SMALL))
    clipboard = QApplication.clipboard()
    clipboard.setText("")
    view.select(_find_top(view, "(0010,0010)"))
    view.tree.setFocus()
    qtbot.keyClick(view.tree, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert clipboard.text() == "CompressedSamples^CT1"
    view.copy_row_action.trigger()
    assert clipboard.text() == "(0010,0010)\tPatient's Name\tPN\tCompressedSamples^CT1"
    view.select(_find_top(view, "(0008,0008)"))
    view.copy_value_action.trigger()
    assert clipboard.text() == "ORIGINAL\\PRIMARY\\AXIAL"
    qtbot.keyClick(view.tree, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert clipboard.text() == "(0008,0008)\tImage Type\tCS\tORIGINAL\\PRIMARY\\AXIAL"


def test_context_menu_offers_copy_value_and_row(view):
    view.set_source(FileRef(CT_SMALL))
    index = _find_top(view, "(0010,0020)")
    menu = view.context_menu_at(view.tree.visualRect(index).center())  # a right click on Patient ID
    assert [a.text() for a in menu.actions()] == ["Copy value", "Copy row"]
    next(a for a in menu.actions() if a.text() == "Copy row").trigger()
    assert QApplication.clipboard().text() == "(0010,0020)\tPatient ID\tLO\t1CT1"
    menu.actions()[0].trigger()
    assert QApplication.clipboard().text() == "1CT1"


def test_copy_gives_the_whole_of_a_shortened_value(view, tmp_path):
    path = tmp_path / "unusual.dcm"
    _write_unusual(path)
    view.set_source(FileRef(str(path)))
    assert view.search("(0020,4000)") == 2  # Image Comments: the file's own, and the long one in an item
    seq = _find_top(view, "(0008,1140)")
    row = view.model.index(0, 0, view.model.index(0, 0, seq))
    assert "chars)" in row.siblingAtColumn(3).data()
    view.select(row)
    text = view.copy_selection()
    assert text.startswith("first line") and len(text) > 6000 and QApplication.clipboard().text() == text


def test_unreadable_file_shows_a_message_not_a_dialog(view, tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\x00" * 50 + b"garbage")
    view.set_source(FileRef(str(bad)), title="slice 3 of 20")
    assert "Cannot show the DICOM header" in view.message
    assert "broken.dcm: not a DICOM file" in view.message
    assert view.message_label.isVisible() and not view.tree.isVisible()
    assert QApplication.activeModalWidget() is None
    view.set_source(FileRef(CT_SMALL))  # the next good file shows normally
    assert view.message == "" and view.tree.isVisible() and view.model.rowCount() > 200


def test_headers_are_cached_per_file(view, monkeypatch):
    calls = []
    real = header_view_module.header_rows

    def counting(ref, **kw):
        calls.append(ref)
        return real(ref, **kw)

    monkeypatch.setattr(header_view_module, "header_rows", counting)
    files = [FileRef(str(p)) for p in _sample_files()]
    for _ in range(3):  # scrolling back and forth over three slices reads each file once
        for ref in files[:3]:
            view.set_source(ref)
    assert calls == files[:3]
    for ref in files[3:3 + DicomHeaderView.CACHE_SIZE]:
        view.set_source(ref)
    view.set_source(files[0])  # pushed out of the small cache by then: read again
    assert calls[-1] == files[0] and len(calls) == 4 + DicomHeaderView.CACHE_SIZE


def test_selection_and_search_follow_the_slice(view):
    files = [FileRef(str(p)) for p in _sample_files()]
    view.set_source(files[0], title="slice 1 of 20")
    location = _find_top(view, "(0020,1041)")
    first = location.siblingAtColumn(3).data()
    view.select(location)
    view.set_source(files[1], title="slice 2 of 20")
    current = view.tree.currentIndex()
    assert current.siblingAtColumn(0).data() == "(0020,1041)"  # the same element stays selected...
    assert current.siblingAtColumn(3).data() != first  # ...and shows this slice's value
    assert view.search("slicelocation") == 1
    view.set_source(files[2], title="slice 3 of 20")
    assert view.match_count == 1 and [t for t, _ in _top_values(view)] == ["(0020,1041)"]
    assert view.count_label.text() == "1 match"


def test_frame_marking_in_the_view(view):
    ref = FileRef(ENHANCED_CT)
    view.set_source(ref, frame=0)
    assert view.search("this frame") == 1
    per_frame = _find_top(view, "(5200,9230)")
    assert view.model.index(0, 1, per_frame).data() == "Item 1 (this frame)"
    view.set_source(ref, frame=1)  # the next frame of the same file: no new read, the mark moves
    assert view.match_count == 1
    per_frame = _find_top(view, "(5200,9230)")
    assert view.model.index(0, 1, per_frame).data() == "Item 2 (this frame)"
    view.search("")
    per_frame = _find_top(view, "(5200,9230)")
    assert [view.model.index(r, 1, per_frame).data() for r in range(2)] == ["Item 1", "Item 2 (this frame)"]


def test_big_files_are_read_on_a_worker_thread(view, qtbot, tmp_path):
    view.async_min_bytes = 0
    view.set_source(FileRef(CT_SMALL), title="slice 1 of 1")
    assert view.is_loading and view.message.startswith("Reading the header of CT_small.dcm")
    qtbot.waitUntil(lambda: not view.is_loading, timeout=10_000)
    assert view.message == "" and dict(_top_values(view))["(0010,0010)"] == "CompressedSamples^CT1"
    ct = FileRef(str(_sample_files()[0]))
    view.set_source(ct)
    assert view.is_loading
    view.set_source(FileRef(CT_SMALL))  # back to the file shown before: cached, shown at once
    assert view.message == "" and view.tree.isVisible()
    qtbot.waitUntil(lambda: not view.is_loading, timeout=10_000)
    # the late result is cached but does not replace the header asked for since
    assert dict(_top_values(view))["(0010,0010)"] == "CompressedSamples^CT1"
    view.set_source(ct)
    assert view.message == "" and dict(_top_values(view))["(0008,0070)"] == "SIEMENS"
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"nope" * 100)
    view.set_source(FileRef(str(bad)))
    qtbot.waitUntil(lambda: not view.is_loading, timeout=10_000)
    assert "bad.dcm: not a DICOM file" in view.message


def _big_enhanced(path: Path, frames: int) -> None:
    ds = pydicom.dcmread(ENHANCED_CT)
    item = ds.PerFrameFunctionalGroupsSequence[0]
    ds.PerFrameFunctionalGroupsSequence = [copy.deepcopy(item) for _ in range(frames)]
    ds.NumberOfFrames = frames
    del ds.PixelData
    ds.save_as(path)


def test_search_stays_responsive_on_a_large_header(view, qtbot, tmp_path):
    path = tmp_path / "big_enhanced.dcm"
    _big_enhanced(path, 1500)
    view.set_source(FileRef(str(path)), frame=700)
    assert len(view.model.tree) > 15_000
    t0 = time.perf_counter()
    assert view.search("0020,0032") == 1500  # one Image Position (Patient) per frame
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"search took {elapsed:.2f} s"
    per_frame = _find_top(view, "(5200,9230)")
    assert view.model.rowCount(per_frame) == 1500 and view.tree.isExpanded(per_frame)
    view.search("")
    qtbot.keyClicks(view.search_edit, "this frame")  # big header: filtered after a pause in typing
    assert view.model.rowCount() > 1
    qtbot.waitUntil(lambda: view.match_count == 1, timeout=5_000)
    per_frame = _find_top(view, "(5200,9230)")
    assert view.model.index(0, 1, per_frame).data() == "Item 701 (this frame)"
    t0 = time.perf_counter()
    view.set_source(FileRef(str(path)), frame=701)  # cached: the mark moves without reading again
    assert time.perf_counter() - t0 < 1.0
    assert view.model.index(0, 1, _find_top(view, "(5200,9230)")).data() == "Item 702 (this frame)"


def test_screenshots(view, screenshot_dir, tmp_path):
    files = _sample_files()
    view.set_source(FileRef(str(files[11])), title=f"slice 12 of {len(files)}")
    seq = _find_top(view, "(0008,1032)")
    view.tree.expand(seq)
    view.tree.expand(view.model.index(0, 0, seq))
    view.select(_find_top(view, "(0008,0060)"))
    QApplication.processEvents()
    plain = view.grab()
    assert plain.save(str(screenshot_dir / "header_view_ct.png"))
    view.search("uid")
    QApplication.processEvents()
    searched = view.grab()
    assert searched.save(str(screenshot_dir / "header_view_search_uid.png"))
    assert view.match_count >= 8 and view.count_label.text() == f"{view.match_count} matches"
    view.set_source(FileRef(ENHANCED_CT), frame=1, title="frame 2 of 2")
    view.search("0020,0032")
    QApplication.processEvents()
    assert view.grab().save(str(screenshot_dir / "header_view_enhanced_frame.png"))
    bad = tmp_path / "IM0001"
    bad.write_bytes(b"\x00" * 200)
    view.set_source(FileRef(str(bad)), title="slice 1 of 1")
    QApplication.processEvents()
    assert view.grab().save(str(screenshot_dir / "header_view_unreadable.png"))
