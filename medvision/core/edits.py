"""Undoable edits of a label map, and the bounded history that holds them.

Every change to a :class:`~medvision.core.labels.LabelMap` goes through a :class:`History`: the
change's bounding box and the values there before and after it are kept (compressed once the edit
is complete), as ITK-SNAP's ``UndoDataManager`` and napari's masked paint atoms do. One brush drag
is one edit made of many dabs; an accepted AI result is one edit. The history is bounded in bytes:
the oldest edits are forgotten first. Listeners (the UI's undo actions, autosave) are told after
every change.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Change", "Edit", "History", "Box", "bounding_box", "box_union"]

Box = tuple[slice, ...]  # (z, y, x): three slices into the label array


def bounding_box(mask: np.ndarray, pad: int | tuple[int, ...] = 0) -> Box | None:
    """The box of ``mask``'s True elements, ``pad`` wider each way (one for every axis, or one per axis),
    within the array; None if it has none."""
    pads = (pad,) * mask.ndim if isinstance(pad, int) else tuple(pad)
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not hit.size:
            return None
        box.append(slice(max(0, int(hit[0]) - pads[axis]), min(mask.shape[axis], int(hit[-1]) + 1 + pads[axis])))
    return tuple(box)


def box_union(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b, strict=True))


def _pack(values: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(values).tobytes(), 1)


@dataclass
class Change:
    """The values of ``box`` before and after one modification (arrays while the edit is open,
    zlib-compressed bytes once it is complete)."""

    box: Box
    shape: tuple[int, int, int]
    dtype: np.dtype
    before: np.ndarray | bytes
    after: np.ndarray | bytes

    def values(self, which: str) -> np.ndarray:
        data = getattr(self, which)
        if isinstance(data, np.ndarray):
            return data
        return np.frombuffer(zlib.decompress(data), dtype=self.dtype).reshape(self.shape)

    def pack(self) -> None:
        if isinstance(self.before, np.ndarray):
            assert isinstance(self.after, np.ndarray)  # both arrays while open, both bytes once packed
            self.before, self.after = _pack(self.before), _pack(self.after)

    @property
    def nbytes(self) -> int:
        return sum(len(x) if isinstance(x, bytes) else x.nbytes for x in (self.before, self.after)) + 200


@dataclass
class Edit:
    """One undo step: a description and the changes made, in order."""

    description: str
    changes: list[Change] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.changes) + 100

    @property
    def box(self) -> Box | None:
        out = None
        for c in self.changes:
            out = box_union(out, c.box)
        return out


class History:
    """Edits of one label map, undo and redo, bounded to ``max_bytes`` of stored values.

    ``labelmap`` is any object with an ``array`` attribute (the array may be replaced, e.g.
    widened from uint8 to uint16; stored values are cast back on undo).
    """

    def __init__(self, labelmap, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.labelmap = labelmap
        self.max_bytes = int(max_bytes)
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self._open: Edit | None = None
        self._depth = 0
        #: increases with every change of the array (undo and redo too): autosave compares it
        self.version = 0
        self._state_listeners: list[Callable[[], None]] = []
        self._data_listeners: list[Callable[[Box], None]] = []

    # ---- observing --------------------------------------------------------------------------
    def on_state(self, fn: Callable[[], None]) -> None:
        """``fn()`` after undo/redo availability may have changed."""
        self._state_listeners.append(fn)

    def on_data(self, fn: Callable[[Box], None]) -> None:
        """``fn(box)`` after the voxels in ``box`` changed."""
        self._data_listeners.append(fn)

    def _notify_state(self) -> None:
        for fn in list(self._state_listeners):
            fn()

    def _notify_data(self, box: Box) -> None:
        self.version += 1
        for fn in list(self._data_listeners):
            fn(box)

    # ---- recording --------------------------------------------------------------------------
    def begin(self, description: str) -> None:
        """Open an edit: every :meth:`write` until the matching :meth:`end` is one undo step."""
        if self._depth == 0:
            self._open = Edit(description)
        self._depth += 1

    def end(self) -> Edit | None:
        """Close the edit opened by :meth:`begin`; returns it (None when it changed nothing)."""
        if self._depth == 0:
            raise RuntimeError("History.end() without begin()")
        self._depth -= 1
        if self._depth > 0:
            return None
        edit, self._open = self._open, None
        if edit is None or not edit.changes:
            return None
        for change in edit.changes:
            change.pack()
        self.undo_stack.append(edit)
        self.redo_stack.clear()
        self._trim()
        self._notify_state()
        return edit

    @property
    def in_edit(self) -> bool:
        return self._depth > 0

    def write(self, box: Box, values: np.ndarray, mask: np.ndarray | None = None,
              description: str = "edit") -> bool:
        """Set the label array in ``box`` to ``values`` (where ``mask`` is True, if given).
        Returns whether anything changed. Outside begin/end it is an edit of its own."""
        array = self.labelmap.array
        box = tuple(slice(max(0, s.start), min(n, s.stop)) for s, n in zip(box, array.shape, strict=True))
        if any(s.stop <= s.start for s in box):
            return False
        current = array[box]
        values = np.asarray(values)
        if values.max(initial=0) > np.iinfo(array.dtype).max:
            raise ValueError(f"label value {int(values.max())} does not fit {array.dtype}")
        new = values.astype(array.dtype, copy=False) if mask is None else np.where(mask, values, current)
        if np.array_equal(new, current):
            return False
        single = self._depth == 0
        if single:
            self.begin(description)
        assert self._open is not None
        before = current.copy()
        array[box] = new
        after = array[box].copy()
        self._open.changes.append(Change(box, before.shape, array.dtype, before, after))
        self._notify_data(box)
        if single:
            self.end()
        return True

    # ---- undo / redo ------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack) and self._depth == 0

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack) and self._depth == 0

    @property
    def undo_text(self) -> str:
        return self.undo_stack[-1].description if self.undo_stack else ""

    @property
    def redo_text(self) -> str:
        return self.redo_stack[-1].description if self.redo_stack else ""

    def undo(self) -> Edit | None:
        if not self.can_undo:
            return None
        edit = self.undo_stack.pop()
        array = self.labelmap.array
        for change in reversed(edit.changes):
            array[change.box] = change.values("before")
        self.redo_stack.append(edit)
        box = edit.box
        assert box is not None  # an edit on the stacks changed something (end() keeps no empty edit)
        self._notify_data(box)
        self._notify_state()
        return edit

    def redo(self) -> Edit | None:
        if not self.can_redo:
            return None
        edit = self.redo_stack.pop()
        array = self.labelmap.array
        for change in edit.changes:
            array[change.box] = change.values("after")
        self.undo_stack.append(edit)
        box = edit.box
        assert box is not None  # an edit on the stacks changed something (end() keeps no empty edit)
        self._notify_data(box)
        self._notify_state()
        return edit

    def clear(self) -> None:
        self.undo_stack.clear()
        self.redo_stack.clear()
        self._notify_state()

    # ---- memory -----------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.undo_stack) + sum(e.nbytes for e in self.redo_stack)

    def _trim(self) -> None:
        total = self.nbytes
        while total > self.max_bytes and len(self.undo_stack) > 1:
            total -= self.undo_stack.pop(0).nbytes
        while total > self.max_bytes and self.redo_stack:
            total -= self.redo_stack.pop(0).nbytes
