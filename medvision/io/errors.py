"""Errors the user can cause (bad files, unsupported data): each message names the file and the cause."""

from __future__ import annotations


class MedvisionIOError(Exception):
    """Base class: the message is meant for the user as it stands."""


class NotDicomError(MedvisionIOError):
    """A file that is not DICOM (or is damaged beyond reading)."""


class NoImagesError(MedvisionIOError):
    """A path that holds no loadable image."""


class MultipleSeriesError(MedvisionIOError):
    """A folder holding several image series when one was expected; ``series`` lists them."""

    def __init__(self, message: str, series: list) -> None:
        super().__init__(message)
        self.series = series


class UnsupportedDataError(MedvisionIOError):
    """Data medvision recognises but cannot load (a transfer syntax with no decoder, colour data...)."""


class PixelDataError(MedvisionIOError):
    """Pixel data that is missing, empty, truncated or does not decode."""


def os_error_text(exc: OSError) -> tuple[str, str | None]:
    """(what went wrong, in words, "(the disk is full)" included; the file) for an OSError, also one a library
    wrapped with its traceback in the text (pydicom does): the system's own error is looked for beneath."""
    import errno

    root = exc
    while isinstance(root.__cause__, OSError) and not root.strerror:
        root = root.__cause__
    full = " (the disk is full)" if root.errno == errno.ENOSPC else ""
    return (root.strerror or str(root).strip().splitlines()[0][:300]) + full, root.filename
