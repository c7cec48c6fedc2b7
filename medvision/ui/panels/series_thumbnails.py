"""The series browser's thumbnails: made on a worker thread (QImage only, never QPixmap) and cached as
PNG files, the icons made from them (a memory cache), and the small drawn icons (the placeholder, a
failed preview, a non-image object's kind)."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

from ...core.atomic import private_dir, write_via
from ...core.jobs import Job, Progress
from ...io.dicom.index import SeriesInfo
from ...io.dicom.thumbnail import series_thumbnail
from ...io.errors import MedvisionIOError

log = logging.getLogger(__name__)

__all__ = ["THUMB_SIZE", "BATCH", "thumbnail_name", "thumbnail_job", "glyph", "ThumbnailIcons"]

THUMB_SIZE = 96  # pixels of the cached image; shown at the browser's ``icon_size``
BATCH = 16  # thumbnails per background job
_MEMORY_CACHE = 4000


# ---- thumbnails (run on a worker thread: QImage only, never QPixmap) -------------------------
def thumbnail_name(series: SeriesInfo, size: int = THUMB_SIZE) -> str:
    """The cache file name of a series' thumbnail: a hash of its key, kind, size and files."""
    h = hashlib.sha1(f"{size}\x1f{series.key}\x1f{series.kind}".encode())
    for ref in series.files:
        h.update(b"\x1e" + str(ref).encode("utf-8", "surrogateescape"))
    return h.hexdigest() + ".png"


def _load_or_make(path: Path, series: SeriesInfo, size: int) -> tuple[QImage | None, str | None]:
    if path.is_file():
        image = QImage(str(path))
        if not image.isNull():
            return image, None
    try:
        array = series_thumbnail(series, size)
    except MedvisionIOError as exc:
        return None, str(exc)
    except Exception as exc:
        log.warning("thumbnail of %s failed", series.label(), exc_info=True)
        return None, f"{series.label()}: no preview ({type(exc).__name__}: {exc})"
    h, w = array.shape
    data = array.tobytes()  # must outlive the QImage that wraps it until copy() returns
    image = QImage(data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    try:
        write_via(path, lambda tmp: image.save(str(tmp), "PNG"), private=True)
    except OSError as exc:
        log.warning("cannot write the thumbnail cache file %s: %s", path, exc)
    return image, None


def thumbnail_job(requests: list[tuple[str, SeriesInfo]], folder: Path, size: int = THUMB_SIZE) -> Job[int]:
    """Load (disk cache) or make each thumbnail; every record's preview is ``(name, QImage|None, error|None)``."""
    private_dir(folder)
    yield Progress("thumbnails", 0, len(requests))
    for i, (name, series) in enumerate(requests):
        image, error = _load_or_make(folder / name, series, size)
        yield Progress("thumbnails", i + 1, len(requests), preview=(name, image, error))
    return len(requests)


# ---- icons (GUI thread) ------------------------------------------------------------------------
def glyph(text: str, size: int, colour: QColor) -> QIcon:
    """A ``size`` square icon: ``text`` in a rounded frame, or nothing (transparent) without text."""
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    if text:
        p = QPainter(pix)
        p.setPen(colour)
        p.drawRoundedRect(2, 2, size - 5, size - 5, 4, 4)
        font = p.font()
        font.setPixelSize(max(8, size // (3 + len(text) // 3)))
        font.setBold(True)
        p.setFont(font)
        p.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, text)
        p.end()
    return QIcon(pix)


class ThumbnailIcons:
    """The thumbnails loaded or made so far, by thumbnail name: icons (a memory cache, the oldest dropped
    first) and the errors of those that could not be made."""

    def __init__(self, icon_size: int, grey: QColor) -> None:
        self.icons: OrderedDict[str, QIcon] = OrderedDict()
        self.errors: dict[str, str] = {}
        self.placeholder = glyph("", icon_size, grey)
        self.failed_icon = glyph("?", icon_size, grey)

    def known(self, name: str) -> bool:
        """Whether the thumbnail was loaded, made or failed already (nothing to ask for)."""
        return name in self.icons or name in self.errors

    def row_icon(self, name: str) -> QIcon:
        """The icon of a series row: its thumbnail, else the failed-preview or the placeholder icon."""
        icon = self.icons.get(name)
        return icon or (self.failed_icon if name in self.errors else self.placeholder)

    def add(self, name: str, image: QImage | None, error: str | None) -> QIcon:
        """Keep a thumbnail job's result; returns the icon the rows showing it get."""
        if image is None:
            self.errors[name] = error or "no preview"
            return self.failed_icon
        icon = QIcon(QPixmap.fromImage(image))
        self.icons[name] = icon
        while len(self.icons) > _MEMORY_CACHE:
            self.icons.popitem(last=False)
        return icon
