"""Series browser: DicomIndex.contents()/forget(), series thumbnails, and the browser widget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import Qt

from medvision.core import run_job
from medvision.io import DicomIndex, NoImagesError, scan
from medvision.io.dicom.files import FileRef
from medvision.io.dicom.thumbnail import series_thumbnail
from medvision.paths import cache_dir

from .conftest import SAMPLE_CT
from .dicomgen import write_series


def _who(name: str, pid: str, date: str, number: int, description: str, study_description: str = ""):
    def extra(_k, _t):
        return {"PatientName": name, "PatientID": pid, "StudyDate": date, "SeriesNumber": number,
                "SeriesDescription": description, "StudyDescription": study_description}
    return extra


def _attach(src: str, dst: Path, name: str, pid: str, study_uid: str, date: str, description: str) -> Path:
    """A pydicom test object (SEG, SR) moved into one of our synthetic studies."""
    ds = pydicom.dcmread(src)
    ds.PatientName, ds.PatientID, ds.StudyInstanceUID, ds.StudyDate = name, pid, study_uid, date
    ds.StudyDescription = description
    ds.SeriesNumber = 99
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return dst


@pytest.fixture
def two_folders(tmp_path) -> dict:
    """Folder a: Alpha (one study: 2 CT series + a SEG); folder b: Beta (two studies: MR; CT + an SR)."""
    a, b = tmp_path / "data" / "a", tmp_path / "data" / "b"
    sa, sb1, sb2 = "1.2.826.0.1.3680043.8.498.101", "1.2.826.0.1.3680043.8.498.102", "1.2.826.0.1.3680043.8.498.103"
    write_series(a / "s1", n=4, study_uid=sa,
                 extra_per_slice=_who("Alpha^Anna", "A1", "20240101", 1, "plain", "abdomen"))
    write_series(a / "s2", n=3, study_uid=sa, extra_per_slice=_who("Alpha^Anna", "A1", "20240101", 2, "arterial",
                                                                     "abdomen"))
    _attach(get_testdata_file("liver.dcm"), a / "seg" / "seg.dcm", "Alpha^Anna", "A1", sa, "20240101", "abdomen")
    write_series(b / "old", n=3, modality="MR", slope=None, intercept=None, study_uid=sb1,
                 extra_per_slice=_who("Beta^Bob", "B2", "20230505", 1, "t1 axial", "brain"))
    write_series(b / "new", n=5, study_uid=sb2, rows=16, cols=32,
                 extra_per_slice=_who("Beta^Bob", "B2", "20250505", 5, "chest", "thorax"))
    _attach(get_testdata_file("test-SR.dcm"), b / "new" / "report.dcm", "Beta^Bob", "B2", sb2, "20250505", "thorax")
    return {"root": tmp_path / "data", "a": a, "b": b}


def _summary(result) -> list[tuple]:
    return sorted((s.key, s.kind, tuple(s.files), s.frames, s.study.key, s.study.patient.id)
                  for s in result.all_series())


# ---- DicomIndex.contents() / forget() ---------------------------------------------------------------
def test_contents_is_the_tree_of_every_scanned_folder(tmp_path, two_folders):
    index = DicomIndex(tmp_path / "index.sqlite")
    run_job(index.scan(two_folders["a"]))
    run_job(index.scan(two_folders["b"]))
    tree = index.contents()
    assert tree.root == "" and tree.files_seen == 4 + 3 + 1 + 3 + 5 + 1
    assert [(p.name, p.id, len(p.studies)) for p in tree.patients] == [("Alpha^Anna", "A1", 1), ("Beta^Bob", "B2", 2)]
    alpha = tree.patients[0].studies[0]
    assert [(s.number, s.kind, s.instance_count) for s in alpha.series] == [(1, "image", 4), (2, "image", 3),
                                                                            (99, "SEG", 1)]
    kinds = {s.kind for s in tree.all_series()}
    assert kinds == {"image", "SEG", "SR"}
    # the same tree a single scan of the common parent builds
    assert _summary(tree) == _summary(scan(two_folders["root"], DicomIndex(tmp_path / "other.sqlite")))
    index.close()


def test_forget_drops_folders_and_single_files(tmp_path, two_folders):
    index = DicomIndex(tmp_path / "index.sqlite")
    sibling = tmp_path / "data" / "ab"  # shares the prefix "a" but is not inside a/
    write_series(sibling, n=2)
    for folder in (two_folders["a"], two_folders["b"], sibling):
        run_job(index.scan(folder))
    assert index.forget(two_folders["a"]) == 8
    tree = index.contents()
    assert {p.id for p in tree.patients} == {"B2", "SYN001"}
    one = tree.all_series()[0].files[0]
    before = tree.all_series()[0].instance_count
    assert index.forget(one.path) == 1
    assert index.contents().all_series()[0].instance_count == before - 1
    assert index.forget(tmp_path / "nothing-here") == 0
    # a FileRef with a member drops that zip member only
    assert index.forget(FileRef(str(sibling / "img0000.dcm"), "x")) == 0
    assert index.forget(FileRef(str(sibling))) == 2
    assert {p.id for p in index.contents().patients} == {"B2"}
    index.close()


def test_contents_drops_files_no_longer_on_disk(tmp_path):
    """A copy of a series scanned, then deleted, leaves the list; the copy still on disk stays, with its
    own files only (not "4 images (8 files)"); a file removed from a folder leaves too."""
    import shutil

    index = DicomIndex(tmp_path / "index.sqlite")
    kept, copy = tmp_path / "kept", tmp_path / "copy"
    write_series(kept, n=4)
    shutil.copytree(kept, copy)
    for folder in (kept, copy):
        run_job(index.scan(folder))
    [series] = index.contents(prune=False).all_series()
    assert series.instance_count == 4 and len(series.files) == 8
    shutil.rmtree(copy)
    [series] = index.contents().all_series()
    assert series.instance_count == 4 and {Path(f.path).parent for f in series.files} == {kept}
    assert len(series.files) == 4
    (kept / sorted(p.name for p in kept.iterdir())[0]).unlink()
    assert index.prune() == 1
    assert index.contents().all_series()[0].instance_count == 3
    shutil.rmtree(kept)
    assert index.contents().patients == [] and index.prune() == 0
    index.close()


# ---- thumbnails ---------------------------------------------------------------------------------------
def test_thumbnail_of_the_sample_ct():
    series = scan(SAMPLE_CT).all_series()[0]
    thumb = series_thumbnail(series, 96)
    assert thumb.shape == (96, 96) and thumb.dtype == np.uint8
    assert thumb.std() > 30  # an image, not a constant
    # window 40/300 from the file: air around the body is black, the abdomen is mid grey
    assert thumb[:8, :8].max() == 0 and thumb[-8:, -8:].max() == 0
    assert 60 < np.median(thumb[40:56, 40:56]) < 220
    assert series_thumbnail(series, 40).shape == (40, 40)


def test_thumbnail_monochrome1_inverts_and_aspect_ratio_is_physical(tmp_path):
    window = {"WindowCenter": -990, "WindowWidth": 60}  # stored 0..65, intercept -1024
    write_series(tmp_path / "m2", n=1, rows=24, cols=20, spacing=(0.8, 0.7), extra_per_slice=lambda k, t: window)
    write_series(tmp_path / "m1", n=1, rows=24, cols=20, spacing=(0.8, 0.7),
                 extra_per_slice=lambda k, t: {**window, "PhotometricInterpretation": "MONOCHROME1"})
    write_series(tmp_path / "wide", n=3, rows=20, cols=20, spacing=(2.0, 1.0), intercept=0.0)
    m2 = series_thumbnail(scan(tmp_path / "m2").all_series()[0], 96)
    m1 = series_thumbnail(scan(tmp_path / "m1").all_series()[0], 96)
    assert m2.shape == m1.shape == (96, 70)  # 24 * 0.8 mm high, 20 * 0.7 mm wide
    assert m2.std() > 20
    np.testing.assert_array_equal(m1.astype(int), 255 - m2.astype(int))
    wide = series_thumbnail(scan(tmp_path / "wide").all_series()[0], 64)
    assert wide.shape == (64, 32)  # rows 2 mm apart: twice as high as wide
    assert wide.min() < 10 and wide.max() > 245  # no window in the file: 1st..99th percentile


def test_thumbnail_of_a_multiframe_object_is_its_middle_frame():
    from medvision.io.dicom.thumbnail import fit_size, resize_area, window_to_uint8

    path = get_testdata_file("emri_small.dcm")
    series = scan(path).all_series()[0]
    assert series.frames == 10 and series.instance_count == 1
    ds = pydicom.dcmread(path)
    middle = ds.pixel_array[5].astype(np.float32)
    expected = resize_area(window_to_uint8(middle), fit_size(middle.shape, (1.0, 1.0), 48))  # no PixelSpacing
    np.testing.assert_array_equal(series_thumbnail(series, 48), expected)
    assert not np.array_equal(expected, resize_area(window_to_uint8(ds.pixel_array[0].astype(np.float32)),
                                                    expected.shape))


def test_thumbnail_errors_name_the_series_and_file(tmp_path):
    seg = scan(get_testdata_file("liver.dcm")).all_series()[0]
    with pytest.raises(NoImagesError, match="SEG"):
        series_thumbnail(seg)
    paths = write_series(tmp_path / "gone", n=2)
    series = scan(tmp_path / "gone").all_series()[0]
    for p in paths:
        p.unlink()
    with pytest.raises(NoImagesError, match=r"img000\d\.dcm: the file is gone"):
        series_thumbnail(series)


# ---- the browser widget -----------------------------------------------------------------------------
@pytest.fixture
def make_browser(qtbot, tmp_path):
    from medvision.ui.panels.series_browser import SeriesBrowser

    index = DicomIndex(tmp_path / "index.sqlite")

    def make():
        b = SeriesBrowser(index)
        qtbot.addWidget(b)
        b.resize(760, 620)
        b.show()
        qtbot.waitExposed(b)
        qtbot.waitSignal(b.refreshed, timeout=5000).wait()
        return b

    yield make
    index.close()


def _scan(qtbot, browser, path) -> object:
    with qtbot.waitSignal(browser.scanned, timeout=20000) as blocker:
        browser.add_path(path)
    return blocker.args[0]


def _tree(model, parent=None) -> list:
    """The visible rows: (column texts, children) recursively."""
    from PySide6.QtCore import QModelIndex

    parent = parent or QModelIndex()
    out = []
    for r in range(model.rowCount(parent)):
        idx = model.index(r, 0, parent)
        texts = tuple(model.index(r, c, parent).data() or "" for c in range(model.columnCount(parent)))
        out.append((texts, _tree(model, idx)))
    return out


def _index_of(browser, predicate):
    from medvision.ui.panels.series_tree import ROLE_INFO

    model = browser.proxy
    stack = [model.index(r, 0) for r in range(model.rowCount())]
    while stack:
        idx = stack.pop(0)
        if predicate(idx.data(ROLE_INFO)):
            return idx
        stack.extend(model.index(r, 0, idx) for r in range(model.rowCount(idx)))
    return None


def test_add_path_shows_patients_studies_and_series(qtbot, make_browser, two_folders):
    browser = make_browser()
    assert browser.proxy.rowCount() == 0
    messages = []
    browser.status.connect(messages.append)
    result = _scan(qtbot, browser, two_folders["root"])
    assert len(result.all_series()) == 6
    assert not browser.progress_row.isVisible()
    tree = _tree(browser.proxy)
    assert [row[0][:2] for row in tree] == [("Alpha, Anna (A1)", ""), ("Beta, Bob (B2)", "")]
    alpha_studies, beta_studies = tree[0][1], tree[1][1]
    assert [s[0][0] for s in beta_studies] == ["2025-05-05  thorax", "2023-05-05  brain"]  # newest first
    assert beta_studies[0][0][2:4] == ("CT, SR", "2 series")
    series = [s[0] for s in alpha_studies[0][1]]
    assert series[0] == ("#1 plain", "", "CT", "4 images", "24 x 20")
    assert series[1][0] == "#2 arterial" and series[1][3] == "3 images"
    assert series[2][0].startswith("#99") and series[2][1] == "SEG: segmentation" and series[2][3] == "1 object"
    assert beta_studies[0][1][0][0][3:] == ("5 images", "16 x 32")
    # the non-image row is greyed
    seg = _index_of(browser, lambda i: getattr(i, "kind", "") == "SEG")
    plain = _index_of(browser, lambda i: getattr(i, "description", "") == "plain")
    assert seg.data(Qt.ItemDataRole.ForegroundRole).color() == browser.grey
    assert plain.data(Qt.ItemDataRole.ForegroundRole) is None
    # the first image series is selected and its study expanded
    first = result.all_series(images_only=True)[0]
    assert browser.selected_series().key == first.key
    assert browser.tree.isExpanded(browser.tree.currentIndex().parent())
    assert any("6 series" in m or "image series" in m for m in messages)


def test_filter_matches_names_descriptions_and_modality(qtbot, make_browser, two_folders):
    browser = make_browser()
    _scan(qtbot, browser, two_folders["root"])

    def shown():
        return [(p[0][0], [(st[0][0], [se[0][0] for se in st[1]]) for st in p[1]]) for p in _tree(browser.proxy)]

    browser.filter_edit.setText("beta")
    assert [p for p, _ in shown()] == ["Beta, Bob (B2)"]
    assert len(shown()[0][1]) == 2  # a matching patient shows all of its studies
    browser.filter_edit.setText("MR")
    assert shown() == [("Beta, Bob (B2)", [("2023-05-05  brain", ["#1 t1 axial"])])]
    browser.filter_edit.setText("arterial")
    assert shown() == [("Alpha, Anna (A1)", [("2024-01-01  abdomen", ["#2 arterial"])])]
    browser.filter_edit.setText("b2 thorax")  # patient ID and study description together
    assert [st for _, sts in shown() for st, _ in sts] == ["2025-05-05  thorax"]
    browser.filter_edit.setText("no such thing")
    assert shown() == []
    browser.filter_edit.clear()
    assert len(shown()) == 2


def _actions(menu) -> dict:
    return {a.text(): a for a in menu.actions()}


def _double_click(qtbot, browser, index) -> None:
    """What a user's double-click sends: a click, then the double-click."""
    pos = browser.tree.visualRect(index).center()
    qtbot.mouseClick(browser.tree.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(browser.tree.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_double_click_and_enter_open_image_series_only(qtbot, make_browser, two_folders):
    browser = make_browser()
    _scan(qtbot, browser, two_folders["root"])
    browser.tree.expandAll()
    arterial = _index_of(browser, lambda i: getattr(i, "description", "") == "arterial")
    with qtbot.waitSignal(browser.open_requested, timeout=2000) as blocker:
        _double_click(qtbot, browser, arterial)
    opened = blocker.args[0]
    assert opened.description == "arterial" and opened.instance_count == 3 and opened.kind == "image"
    assert {f.name for f in opened.files} == {p.name for p in (two_folders["a"] / "s2").iterdir()}
    # Enter on the current row opens it too
    browser.tree.setCurrentIndex(_index_of(browser, lambda i: getattr(i, "description", "") == "chest"))
    with qtbot.waitSignal(browser.open_requested, timeout=2000) as blocker:
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert blocker.args[0].description == "chest"
    # a SEG: no open request, a status message saying what it is
    seg = _index_of(browser, lambda i: getattr(i, "kind", "") == "SEG")
    messages = []
    browser.status.connect(messages.append)
    with qtbot.assertNotEmitted(browser.open_requested, wait=200):
        _double_click(qtbot, browser, seg)
    assert messages and "SEG" in messages[-1] and "segmentation" in messages[-1] and "not an image" in messages[-1]
    # context menu: Open is disabled for the SEG, enabled (and working) for an image series
    assert not _actions(browser.context_menu(seg))["Open"].isEnabled()
    menu = browser.context_menu(arterial)
    assert set(_actions(menu)) >= {"Open", "Rescan folder", "Remove from list", "Show in folder (copy path)"}
    with qtbot.waitSignal(browser.open_requested, timeout=2000):
        _actions(menu)["Open"].trigger()
    _actions(menu)["Show in folder (copy path)"].trigger()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == str(two_folders["a"] / "s2")


def _image_series(browser) -> list:
    return [s for s in browser.index.contents().all_series() if s.kind == "image"]


def test_thumbnails_are_made_lazily_and_cached_on_disk(qtbot, make_browser, two_folders, monkeypatch):
    from medvision.ui.panels import series_thumbnails as sb

    browser = make_browser()
    _scan(qtbot, browser, two_folders["root"])
    series = _image_series(browser)
    # only the expanded study (the selected series') gets thumbnails
    expanded = [s for s in series if s.study.key == browser.selected_series().study.key]
    assert len(expanded) == 2
    qtbot.waitUntil(lambda: all(browser.thumbnail(s) is not None for s in expanded), timeout=10000)
    qtbot.wait(200)
    collapsed = [s for s in series if s not in expanded]
    assert all(browser.thumbnail(s) is None for s in collapsed)
    folder = cache_dir() / "thumbnails"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(sb.thumbnail_name(s) for s in expanded)
    browser.tree.expandAll()
    qtbot.waitUntil(lambda: all(browser.thumbnail(s) is not None for s in series), timeout=10000)
    assert len(list(folder.glob("*.png"))) == 4 and not list(folder.glob(".*tmp"))
    # the PNG holds the thumbnail itself
    from PySide6.QtGui import QImage

    s = series[0]
    img = QImage(str(folder / sb.thumbnail_name(s))).convertToFormat(QImage.Format.Format_Grayscale8)
    arr = np.array([[img.pixelColor(x, y).red() for x in range(img.width())] for y in range(img.height())])
    np.testing.assert_array_equal(arr, series_thumbnail(s))
    icon = browser.thumbnail(s)
    assert not icon.pixmap(32, 32).toImage().isNull()

    # a second browser reads the disk cache: making a thumbnail would fail here
    def refuse(*_a, **_k):
        raise AssertionError("thumbnail made again instead of read from the cache")

    monkeypatch.setattr(sb, "series_thumbnail", refuse)
    again = make_browser()
    again.tree.expandAll()
    qtbot.waitUntil(lambda: all(again.thumbnail(s) is not None for s in series), timeout=10000)
    assert not any(again.thumbnail_error(s) for s in series)


def test_thumbnail_failure_is_shown_not_raised(qtbot, make_browser, tmp_path):
    paths = write_series(tmp_path / "broken", n=3)
    browser = make_browser()
    _scan(qtbot, browser, tmp_path / "broken")
    for p in paths:
        p.write_bytes(b"not dicom any more")
    s = _image_series(browser)[0]
    qtbot.waitUntil(lambda: browser.thumbnail_error(s) is not None, timeout=10000)
    assert "img000" in browser.thumbnail_error(s) and browser.thumbnail(s) is None


def test_remove_from_list_and_rescan(qtbot, make_browser, two_folders):
    browser = make_browser()
    _scan(qtbot, browser, two_folders["root"])
    alpha = _index_of(browser, lambda i: getattr(i, "id", "") == "A1").data(sb_role())
    with qtbot.waitSignal(browser.refreshed, timeout=5000):
        browser.remove_from_list(alpha)
    assert [p[0][0] for p in _tree(browser.proxy)] == ["Beta, Bob (B2)"]
    assert {p.id for p in browser.index.contents().patients} == {"B2"}
    chest = _index_of(browser, lambda i: getattr(i, "description", "") == "chest").data(sb_role())
    with qtbot.waitSignal(browser.refreshed, timeout=5000):
        browser.remove_from_list(chest)
    beta_studies = _tree(browser.proxy)[0][1]
    assert [(st[0][0], [se[0][2] for se in st[1]]) for st in beta_studies] == [
        ("2025-05-05  thorax", ["SR"]), ("2023-05-05  brain", ["MR"])]
    # rescanning the SR's folder brings the chest series back (same folder)
    sr = _index_of(browser, lambda i: getattr(i, "kind", "") == "SR").data(sb_role())
    with qtbot.waitSignal(browser.scanned, timeout=20000):
        browser.rescan(sr)
    assert _index_of(browser, lambda i: getattr(i, "description", "") == "chest") is not None
    assert _index_of(browser, lambda i: getattr(i, "id", "") == "A1") is None


def sb_role():
    from medvision.ui.panels.series_tree import ROLE_INFO

    return ROLE_INFO


def test_refresh_keeps_expansion_and_selection(qtbot, make_browser, two_folders):
    browser = make_browser()
    _scan(qtbot, browser, two_folders["root"])
    brain = _index_of(browser, lambda i: getattr(i, "description", "") == "brain")
    browser.tree.expand(brain)
    chest = _index_of(browser, lambda i: getattr(i, "description", "") == "chest")
    browser.tree.setCurrentIndex(chest)
    with qtbot.waitSignal(browser.refreshed, timeout=5000):
        browser.refresh()
    assert browser.selected_series().description == "chest"
    assert browser.tree.isExpanded(_index_of(browser, lambda i: getattr(i, "description", "") == "brain"))
    alpha_study = _index_of(browser, lambda i: getattr(i, "description", "") == "abdomen")
    assert browser.select_series(_index_of(browser, lambda i: getattr(i, "description", "") == "plain")
                                 .data(sb_role()).key)
    assert browser.tree.isExpanded(alpha_study)
    assert browser.selected_series().description == "plain"


def test_scan_problems_give_clear_status(qtbot, make_browser, tmp_path):
    browser = make_browser()
    messages = []
    browser.status.connect(messages.append)
    empty = tmp_path / "empty"
    empty.mkdir()
    _scan(qtbot, browser, empty)
    assert messages[-1] == f"No DICOM files in {empty}: it holds no files"
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.dat").write_bytes(b"hello" * 100)
    _scan(qtbot, browser, junk)
    assert messages[-1].startswith(f"No DICOM images in {junk}: none of its 1 files") and "notes.dat" in messages[-1]
    with qtbot.waitSignal(browser.status, timeout=5000) as blocker:
        browser.add_path(tmp_path / "missing")
    assert blocker.args[0] == f"Scan failed: {tmp_path / 'missing'}: no such file or folder"
    assert browser.proxy.rowCount() == 0


def test_cancel_button_stops_a_scan(qtbot, make_browser, two_folders):
    browser = make_browser()
    messages = []
    browser.status.connect(messages.append)
    runner = browser.add_path(two_folders["root"])
    assert browser.progress_row.isVisibleTo(browser)
    with qtbot.waitSignal(runner.cancelled, timeout=10000):
        browser.progress_row.cancel_button.click()
    assert messages[-1] == f"Scan of {two_folders['root']} cancelled"
    assert not browser.progress_row.isVisibleTo(browser)
    assert browser.index.contents().patients == []


def test_screenshot(qtbot, make_browser, two_folders, screenshot_dir):
    import shutil

    shutil.copytree(SAMPLE_CT, two_folders["root"] / "ct")
    shutil.copy(get_testdata_file("emri_small.dcm"), two_folders["root"] / "emri.dcm")
    browser = make_browser()
    browser.resize(820, 640)
    _scan(qtbot, browser, two_folders["root"])
    browser.tree.expandAll()
    series = _image_series(browser)
    qtbot.waitUntil(lambda: all(browser.thumbnail(s) is not None for s in series), timeout=20000)
    qtbot.wait(100)
    emri = _index_of(browser, lambda i: getattr(i, "frames", 0) == 10)
    assert emri.siblingAtColumn(3).data() == "1 file, 10 frames" and emri.siblingAtColumn(4).data() == "64 x 64"
    path = screenshot_dir / "series_browser.png"
    assert browser.grab().save(str(path))
    assert path.stat().st_size > 5000
