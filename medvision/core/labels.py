"""Label maps: an integer array on exactly the grid of a Volume, and the table that names its values.

A :class:`LabelMap` holds ``(z, y, x)`` integers (uint8; uint16 once a value passes 255) on its
volume's affine, and a :class:`LabelTable`: value -> name, RGBA colour, visibility, lock, and an
optional DICOM terminology code (category and type, as DICOM SEG stores them). Value 0 is
background and is not in the table. Several label maps may lie on one volume (an AI proposal beside
the manual labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["Code", "Label", "LabelTable", "LabelMap", "PALETTE"]

#: distinct colours for new labels (ITK-SNAP / Slicer-like), cycled
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
)


@dataclass(frozen=True)
class Code:
    """A coded concept (DICOM ``CodeValue``, ``CodingSchemeDesignator``, ``CodeMeaning``)."""

    value: str
    scheme: str
    meaning: str

    def as_list(self) -> list[str]:
        return [self.value, self.scheme, self.meaning]

    @classmethod
    def from_any(cls, obj: Any) -> Code | None:
        if obj is None or isinstance(obj, Code):
            return obj
        if isinstance(obj, dict):
            return cls(str(obj["value"]), str(obj["scheme"]), str(obj["meaning"]))
        value, scheme, meaning = obj
        return cls(str(value), str(scheme), str(meaning))


@dataclass
class Label:
    value: int
    name: str
    color: tuple[int, int, int, int] = (255, 0, 0, 255)
    visible: bool = True
    locked: bool = False
    category: Code | None = None  # DICOM SEG SegmentedPropertyCategoryCodeSequence
    type: Code | None = None  # DICOM SEG SegmentedPropertyTypeCodeSequence

    def as_dict(self) -> dict:
        out = {"value": self.value, "name": self.name, "color": list(self.color), "visible": self.visible,
               "locked": self.locked}
        if self.category is not None:
            out["category"] = self.category.as_list()
        if self.type is not None:
            out["type"] = self.type.as_list()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Label:
        value = int(d["value"])
        if not 0 < value < 65536:
            raise ValueError(f"label value {value} is outside 1..65535")
        color = tuple(int(c) for c in d.get("color", PALETTE[(value - 1) % len(PALETTE)]))
        if len(color) == 3:
            color = (*color, 255)
        if len(color) != 4 or not all(0 <= c <= 255 for c in color):
            raise ValueError(f"label {value}: colour {d.get('color')!r} is not RGB(A) in 0..255")
        return cls(value, str(d.get("name") or f"Label {value}"), color, bool(d.get("visible", True)),
                   bool(d.get("locked", False)), Code.from_any(d.get("category")), Code.from_any(d.get("type")))


@dataclass
class LabelTable:
    """The labels of a label map, ordered by value."""

    labels: dict[int, Label] = field(default_factory=dict)

    def __iter__(self):
        return iter(sorted(self.labels.values(), key=lambda la: la.value))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, value: int) -> bool:
        return int(value) in self.labels

    def __getitem__(self, value: int) -> Label:
        return self.labels[int(value)]

    def values(self) -> list[int]:
        return sorted(self.labels)

    def next_value(self) -> int:
        used = set(self.labels)
        return next(v for v in range(1, 65536) if v not in used)

    def add(self, name: str | None = None, color=None, value: int | None = None, **kwargs) -> Label:
        value = self.next_value() if value is None else int(value)
        if value in self.labels:
            raise ValueError(f"label value {value} is already used by {self.labels[value].name!r}")
        if not 0 < value < 65536:
            raise ValueError(f"label value {value} is outside 1..65535")
        if color is None:
            color = (*PALETTE[(value - 1) % len(PALETTE)], 255)
        color = tuple(int(c) for c in color)
        if len(color) == 3:
            color = (*color, 255)
        label = Label(value, name or f"Label {value}", color, **kwargs)
        self.labels[value] = label
        return label

    def remove(self, value: int) -> Label:
        return self.labels.pop(int(value))

    def by_name(self, name: str) -> Label | None:
        wanted = name.strip().lower()
        return next((la for la in self if la.name.lower() == wanted), None)

    def locked_values(self) -> list[int]:
        return [la.value for la in self if la.locked]

    def copy(self) -> LabelTable:
        return LabelTable({v: replace(la) for v, la in self.labels.items()})

    def lut(self, size: int | None = None) -> np.ndarray:
        """``(size, 4)`` uint8 RGBA lookup table by value; background and hidden labels transparent."""
        size = size or (max(self.labels, default=0) + 1)
        size = max(size, max(self.labels, default=0) + 1)
        out = np.zeros((size, 4), np.uint8)
        for la in self:
            if la.visible:
                out[la.value] = la.color
        return out

    # ---- files ----------------------------------------------------------------------------
    def to_json(self, **extra) -> str:
        """The table as JSON; ``extra``: more top-level fields (e.g. the digest of the voxels it names)."""
        return json.dumps({"format": "medvision-labels", "version": 1,
                           "labels": [la.as_dict() for la in self], **extra}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> LabelTable:
        data = json.loads(text)
        items = data["labels"] if isinstance(data, dict) and "labels" in data else data
        if isinstance(items, dict):  # MONAI style {"name": value}
            items = [{"value": v, "name": k} for k, v in items.items() if int(v) != 0]
        table = cls()
        for item in items:
            label = Label.from_dict(item)
            if label.value in table.labels:
                raise ValueError(f"label value {label.value} appears twice")
            table.labels[label.value] = label
        return table

    @classmethod
    def default_for(cls, values) -> LabelTable:
        """A table naming every value in ``values`` (other than 0) "Label N"."""
        table = cls()
        for v in sorted(int(v) for v in values if int(v) != 0):
            table.add(value=v)
        return table


class LabelMap:
    """Integer labels on the grid of a volume: ``array`` ``(z, y, x)`` and its ``affine``."""

    def __init__(self, array: np.ndarray, affine: np.ndarray, table: LabelTable | None = None,
                 name: str = "Labels") -> None:
        array = np.asarray(array)
        if array.ndim != 3:
            raise ValueError(f"a label map is 3D (z, y, x); got shape {array.shape}")
        if array.dtype.kind not in "iub":
            raise ValueError(f"labels must be integers, not {array.dtype}")
        if array.dtype not in (np.uint8, np.uint16):
            if array.size and (array.min() < 0 or array.max() > 65535):
                raise ValueError("label values must lie in 0..65535")
            array = array.astype(np.uint8 if (array.max(initial=0) <= 255) else np.uint16)
        self.array = np.ascontiguousarray(array)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.table = table if table is not None else LabelTable.default_for(np.unique(self.array))
        self.name = name
        #: how the labels reached this grid when read from a file ("same grid", "resampled", ...)
        self.placement = ""
        #: what a reader has to say about them (``warnings``: a list of lines for the user, ...)
        self.metadata: dict[str, Any] = {}

    @classmethod
    def empty_like(cls, volume, table: LabelTable | None = None, name: str = "Labels") -> LabelMap:
        return cls(np.zeros(volume.shape, np.uint8), volume.affine, table or LabelTable(), name)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape

    def on_grid_of(self, volume, atol: float = 1e-3) -> bool:
        return tuple(volume.shape) == self.shape and np.allclose(volume.affine, self.affine, atol=atol)

    def ensure_value_fits(self, value: int) -> None:
        """Widen uint8 to uint16 when ``value`` passes 255 (the array object changes)."""
        if value > 255 and self.array.dtype == np.uint8:
            self.array = self.array.astype(np.uint16)

    def present_values(self) -> list[int]:
        counts = np.bincount(self.array.ravel(), minlength=1)
        return [int(v) for v in np.nonzero(counts)[0] if v != 0]

    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def copy(self) -> LabelMap:
        out = LabelMap(self.array.copy(), self.affine.copy(), self.table.copy(), self.name)
        out.metadata = dict(self.metadata)
        return out

    def __repr__(self) -> str:
        return f"LabelMap({self.name!r}, shape={self.shape}, {len(self.table)} labels, dtype={self.array.dtype})"
