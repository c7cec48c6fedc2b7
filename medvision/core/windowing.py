"""Window/level: presets, automatic windows from percentiles, and fast mapping to 8-bit grey."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Window", "CT_PRESETS", "auto_window", "initial_window", "WindowMapper"]


@dataclass(frozen=True)
class Window:
    """A display window: ``center`` (level) and ``width`` in the volume's units (HU for CT)."""

    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2

    def dragged(self, d_center: float, d_width: float, min_width: float = 1.0) -> Window:
        return Window(self.center + d_center, max(min_width, self.width + d_width))


#: CT presets (HU), the values radiology teaching uses (Radiopaedia "windowing (CT)").
CT_PRESETS: dict[str, Window] = {
    "CT brain": Window(40, 80),
    "CT subdural": Window(75, 215),
    "CT stroke": Window(40, 40),
    "CT lung": Window(-600, 1500),
    "CT mediastinum": Window(50, 350),
    "CT abdomen": Window(50, 400),
    "CT liver": Window(30, 150),
    "CT bone": Window(400, 1800),
}


def _sample(array: np.ndarray, max_samples: int = 2_000_000) -> np.ndarray:
    step = max(1, int(np.ceil((array.size / max_samples) ** (1 / 3))))
    sub = array[..., ::step, ::step, ::step] if array.ndim >= 3 else array[::step, ::step]
    return np.asarray(sub).ravel()


def auto_window(array: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> Window:
    """A window from the intensity percentiles (what MR needs: its units are arbitrary).

    Background (the most common value, usually 0 outside the body) is left out when it dominates.
    """
    values = _sample(array)
    if values.size == 0:
        return Window(0.0, 1.0)
    lo_all, hi_all = float(values.min()), float(values.max())
    if np.count_nonzero(values == lo_all) > 0.2 * values.size and np.any(values != lo_all):
        values = values[values != lo_all]
    lo, hi = np.percentile(values.astype(np.float64), [low_pct, high_pct])
    if hi <= lo:  # (nearly) two-valued, e.g. a mask or a scanned document: show both values
        lo, hi = lo_all, hi_all
    if hi <= lo:
        hi = lo + 1.0
    return Window(float((lo + hi) / 2), float(hi - lo))


def looks_like_ct(array: np.ndarray) -> bool:
    """True when the intensities look like Hounsfield units: air at about -1000 HU makes up a
    visible part of the image and the rest reaches soft tissue. For image files that carry no
    modality (NIfTI, NRRD, MetaImage); MR, PET and normalised data do not pass."""
    if array.dtype.kind not in "iuf" or array.size == 0:
        return False
    values = _sample(array, 500_000)
    if values.size == 0 or float(values.min()) > -900:
        return False
    air = np.count_nonzero((values >= -1100) & (values <= -900)) / values.size
    tissue = np.count_nonzero((values >= -200) & (values <= 3000)) / values.size
    return bool(air > 0.02 and tissue > 0.05)  # (a numpy bool before: its users only test its truth)


def initial_window(array: np.ndarray, metadata: dict) -> tuple[Window, str]:
    """The window a volume opens with, and its name: the DICOM file's own window when it has one,
    else CT abdomen for CT (HU), else automatic from percentiles."""
    center, width = metadata.get("window_center"), metadata.get("window_width")
    if center is not None and width is not None and float(width) > 0:
        return Window(float(center), float(width)), "DICOM"
    if metadata.get("modality") == "CT" and array.dtype.kind in "iuf" and float(array.min()) < -100:
        return CT_PRESETS["CT abdomen"], "CT abdomen"
    return auto_window(array), "automatic"


class WindowMapper:
    """Maps images to uint8 grey for a window; cheap for 8/16-bit data (a lookup table per window).

    ``invert`` swaps black and white (MONOCHROME1 data opens inverted).
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._lut: np.ndarray | None = None

    def _table(self, dtype: np.dtype, window: Window, invert: bool) -> np.ndarray:
        key = (dtype.str, window, invert)
        if key != self._key:
            info = np.iinfo(dtype)
            values = np.arange(info.min, info.max + 1, dtype=np.float64)
            self._lut = _scale(values, window, invert)
            self._key = key
        assert self._lut is not None  # set with the key
        return self._lut

    def map(self, image: np.ndarray, window: Window, invert: bool = False) -> np.ndarray:
        """``image`` (any 2D numeric array, views allowed) -> C-contiguous uint8 of the same shape."""
        dtype = image.dtype
        if dtype.kind in "iu" and dtype.itemsize <= 2:
            lut = self._table(dtype, window, invert)
            if dtype.kind == "u":
                return lut[image]
            # signed -> offset binary by flipping the sign bit: index = value - dtype min
            utype = np.uint8 if dtype.itemsize == 1 else np.uint16
            unsigned: np.ndarray = image.view(utype)
            return lut[unsigned ^ utype(1 << (8 * dtype.itemsize - 1))]
        if dtype == np.bool_:
            image = image.view(np.uint8)
            return self.map(image, window, invert)
        return _scale(image.astype(np.float32), window, invert)


def _scale(values: np.ndarray, window: Window, invert: bool) -> np.ndarray:
    lo, width = window.low, max(window.width, 1e-12)
    scaled = (values - lo) * (255.0 / width)
    np.clip(scaled, 0, 255, out=scaled)
    out = np.rint(scaled).astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out
