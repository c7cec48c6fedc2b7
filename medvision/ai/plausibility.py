"""Is a model's result one a radiologist could believe? Checked on every result, shown with it.

A card may state what its structures can measure in an adult::

    "plausibility": {"volume_ml": {"brain": [600, 2200], "grey matter": [350, 1200]},
                     "extent_mm": {"brain": 220},
                     "symmetry": {"max_ratio": 1.5,
                                  "pairs": [["Left-Cerebral-White-Matter", "Right-Cerebral-White-Matter"],
                                            ["ctx-lh-*", "ctx-rh-*"]]}}

A label whose volume falls outside its range (absent labels count as 0 mL), or which reaches further
across (the longest side of its box along the patient's axes) than the structure can, makes the result
implausible, and so does a left structure that measures more than ``max_ratio`` times its right
twin or less than its inverse (a name with ``*`` or ``?`` sums every label it matches, so a
hemisphere's cortex is one figure), and so does an image of another modality than the one the model was made for (a CT
given to an MR-only model): the model was never shown such an image and its output means nothing.
The checks only read the label map and the card (no torch), so the CLI and the window share them.
"""

from __future__ import annotations

import fnmatch
import logging
import math

import numpy as np

from ..core.labels import LabelMap
from ..core.volume import Volume

__all__ = ["label_volumes_ml", "volume_ranges", "extents_mm", "max_extents", "symmetry", "implausibilities",
           "PlausibilityError"]

log = logging.getLogger(__name__)


class PlausibilityError(ValueError):
    """A card's ``plausibility`` section is malformed."""


def label_volumes_ml(labels: LabelMap) -> dict[str, float]:
    """Each label of the table: its volume in millilitres (0 for a label with no voxel)."""
    counts = np.bincount(labels.array.ravel(), minlength=1) if labels.array.size else np.zeros(1, np.int64)
    ml = labels.voxel_volume_ml()
    return {la.name: float(counts[la.value] if la.value < counts.size else 0) * ml for la in labels.table}


def _card_section(card: dict, key: str, what: str, parse) -> dict:
    """``card["plausibility"][key]`` as {label name: parse(value)}; ``parse`` returns None for a bad value."""
    spec = (card.get("plausibility") or {}).get(key) or {}
    if not isinstance(spec, dict):
        raise PlausibilityError(f"{card.get('id')}: plausibility.{key} must map label names to {what}")
    out = {}
    for name, value in spec.items():
        parsed = parse(value)
        if parsed is None:
            raise PlausibilityError(f"{card.get('id')}: plausibility.{key}[{name!r}] must be {what}, not {value!r}")
        out[str(name)] = parsed
    return out


def _range(bounds) -> tuple[float, float] | None:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) and 0 <= low <= high else None


def _length(most) -> float | None:
    try:
        value = float(most)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def volume_ranges(card: dict) -> dict[str, tuple[float, float]]:
    """The card's per-label volume ranges in mL (``{}`` when it states none); a malformed one raises."""
    return _card_section(card, "volume_ml", "[low, high] in mL with 0 <= low <= high", _range)


def extents_mm(labels: LabelMap, names) -> dict[str, float]:
    """The longest side, in mm along the patient's axes, of the box around each named label (0: absent)."""
    out = {}
    for la in labels.table:
        if la.name not in names:
            continue
        where = np.nonzero(labels.array == la.value)
        if not where[0].size:
            out[la.name] = 0.0
            continue
        lo = [int(w.min()) for w in where]
        hi = [int(w.max()) for w in where]
        # the eight corners of the index box (x, y, z order), voxel halves included, in patient mm
        corners = np.array([[x, y, z, 1.0] for z in (lo[0] - 0.5, hi[0] + 0.5) for y in (lo[1] - 0.5, hi[1] + 0.5)
                            for x in (lo[2] - 0.5, hi[2] + 0.5)])
        mm = corners @ np.asarray(labels.affine, float).T
        out[la.name] = float((mm[:, :3].max(0) - mm[:, :3].min(0)).max())
    return out


def max_extents(card: dict) -> dict[str, float]:
    """The card's ``plausibility.extent_mm``: label name -> the most it can measure across, in mm."""
    return _card_section(card, "extent_mm", "a length in mm", _length)


def symmetry(card: dict) -> tuple[float, list[tuple[str, str]]]:
    """The card's ``plausibility.symmetry``: (the largest left/right volume ratio, the pairs); (0, []) if none."""
    spec = (card.get("plausibility") or {}).get("symmetry")
    if not spec:
        return 0.0, []
    ratio = _length(spec.get("max_ratio")) if isinstance(spec, dict) else None
    pairs = spec.get("pairs") if isinstance(spec, dict) else None
    if ratio is None or ratio < 1 or not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) and n for n in p) for p in pairs):
        raise PlausibilityError(f"{card.get('id')}: plausibility.symmetry must be {{\"max_ratio\": a number >= 1, "
                                f"\"pairs\": [[left name, right name], ...]}}, not {spec!r}")
    return ratio, [(a, b) for a, b in pairs]


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def _summed(found: dict[str, float], pattern: str) -> tuple[float, bool]:
    """The volume of the label ``pattern`` names, or of all it matches when it holds ``*``/``?``; and whether any."""
    names = fnmatch.filter(found, pattern) if _is_glob(pattern) else [n for n in (pattern,) if n in found]
    return sum(found[n] for n in names), bool(names)


def _asymmetries(card: dict, found: dict[str, float]) -> list[str]:
    out = []
    ratio, pairs = symmetry(card)
    for left, right in pairs:
        (a, has_a), (b, has_b) = _summed(found, left), _summed(found, right)
        if not (has_a and has_b) or max(a, b) <= 0:
            continue
        shown = [f"the {p} labels together" if _is_glob(p) else p for p in (left, right)]
        big, small = shown if a >= b else shown[::-1]
        hi, lo = max(a, b), min(a, b)
        if lo * ratio < hi:
            what = (f"{big} {_ml(hi)} is {hi / lo:.1f} times {small} {_ml(lo)}" if lo > 0
                    else f"{big} measures {_ml(hi)} while {small} is empty")
            out.append(f"{what}: an adult's two sides differ far less (at most {ratio:g} times)")
    return out


def _ml(v: float) -> str:
    return f"{v / 1000:.2f} L" if v >= 1000 else f"{v:.1f} mL"


def implausibilities(card: dict, labels: LabelMap, volume: Volume | None = None, *,
                     whole: bool = True) -> list[str]:
    """Why this result cannot be right, one sentence each (``[]``: nothing implausible found).

    ``whole``: the model saw the whole image (volumes are checked only then: a region drawn by the
    user holds part of a structure)."""
    out = []
    model = card.get("name") or card.get("id") or "the model"
    want = card.get("modality")
    have = (volume.metadata.get("modality") if volume is not None else None) or None
    if want and have and have != want:
        guessed = " (guessed from its intensities)" if volume.metadata.get("modality_guessed") else ""
        out.append(f"this is a {have} image{guessed} and {model} was made for {want} only: its output means "
                   f"nothing here")
    try:
        ranges, longest = volume_ranges(card), max_extents(card)
    except PlausibilityError as exc:
        log.warning("%s", exc)
        ranges, longest = {}, {}
    found = label_volumes_ml(labels) if whole else {}
    if whole:
        try:
            out.extend(_asymmetries(card, found))
        except PlausibilityError as exc:
            log.warning("%s", exc)
    if ranges and whole:
        for name, (low, high) in ranges.items():
            if name not in found:
                continue
            v = found[name]
            if v < low or v > high:
                side = "below" if v < low else "above"
                hint = " (does the image hold all of it?)" if v < low else ""
                out.append(f"{name} {_ml(v)} is {side} what an adult {name} measures ({_ml(low)} to "
                           f"{_ml(high)}){hint}")
    for name, length in extents_mm(labels, longest).items():  # a region run holds part of it: never longer
        if length > longest[name]:
            out.append(f"{name} reaches {length:.0f} mm across, more than an adult {name} can "
                       f"({longest[name]:.0f} mm)")
    return out
