"""A DICOM header as a tree of display rows (tag, name, VR, value), for the header viewer.

Values are shown as a radiologist expects them: text as text, multiple values joined with ``\\``,
binary data as ``<N bytes>``, very long values shortened, private tags named after their private
creator, sequences nested (one child row per item). Nothing here imports Qt.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from pydicom import datadict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from ...core.jobs import Job, Progress
from ..errors import MedvisionIOError, NotDicomError
from .files import FileRef, open_ref, read_dataset

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 256  # longer values are shortened with a "... (N chars)" note
MAX_VALUES = 64  # multi-values with more items show the first ones and a "... (N values)" note
MAX_DEPTH = 64  # nesting deeper than this (broken files) is not shown
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"})
PIXEL_TAGS = frozenset({Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)})
_PER_FRAME_TEXT = "(5200,9230)"  # Per-Frame Functional Groups Sequence
THIS_FRAME = "(this frame)"
_ITEM = 0xFFFEE000
_TAG_QUERY = re.compile(r"\(?\s*([0-9a-f]{4})\s*[,\s|]?\s*([0-9a-f]{4})\s*\)?")


@dataclass(slots=True)
class HeaderRow:
    """One line of the header tree; sequences have one child per item, items one per element."""

    tag: str  # "(0010,0010)"; "" for sequence items
    keyword: str  # "PatientName"; "" for private tags and items
    name: str  # "Patient's Name", "Item 1"
    vr: str
    value: str  # display text (possibly shortened)
    children: list[HeaderRow] = field(default_factory=list)
    full_value: str = ""  # the whole text when ``value`` was shortened (for copying), else ""

    def search_text(self) -> str:
        """Lower-case text a search query is matched against (tag in both spellings, names, value)."""
        compact = self.tag[1:5] + self.tag[6:10] if self.tag else ""
        return "\n".join((self.tag, compact, self.keyword, self.name, self.value)).lower()

    @property
    def copy_value(self) -> str:
        return self.full_value or self.value


def normalize_query(query: str) -> str:
    """Lower-case query; a tag written as "0010,0010", "(0010, 0010)" or "0010 0010" becomes "00100010"."""
    q = query.strip().lower()
    m = _TAG_QUERY.fullmatch(q)
    if m and (q.startswith("(") or len(q) > 8):
        return m.group(1) + m.group(2)
    return q


def iter_rows(rows: Iterable[HeaderRow]) -> Iterator[HeaderRow]:
    """Every row of a header tree, depth first."""
    stack = list(reversed(list(rows)))
    while stack:
        row = stack.pop()
        yield row
        stack.extend(reversed(row.children))


def format_tag(tag: int) -> str:
    tag = Tag(tag)
    return f"({tag.group:04X},{tag.element:04X})"


def header_rows(ref: FileRef, *, frame: int | None = None) -> list[HeaderRow]:
    """The header of one DICOM file as display rows: file meta (group 0002) first, then the dataset.

    Large values (pixel data, private blobs) are not read, only measured. ``frame`` (0-based) marks
    that frame's item of the Per-Frame Functional Groups Sequence of an enhanced multi-frame file.
    Raises :class:`~medvision.io.errors.NotDicomError` naming the file when it cannot be read.
    """
    return mark_frame(_header_rows(ref), frame)


def read_header_job(ref: FileRef) -> Job[list[HeaderRow]]:
    """:func:`header_rows` (no frame marked) as a job, for reading big headers off the GUI thread."""
    yield Progress("Reading DICOM header", 0, 1, ref.name)
    return header_rows(ref)


def mark_frame(rows: list[HeaderRow], frame: int | None) -> list[HeaderRow]:
    """``rows`` with item ``frame`` (0-based) of the Per-Frame Functional Groups Sequence named
    "Item N (this frame)"; the given rows are not changed (changed rows are copies)."""
    if frame is None or frame < 0:
        return rows
    out = list(rows)
    for i, row in enumerate(out):
        if row.tag == _PER_FRAME_TEXT and frame < len(row.children):
            children = list(row.children)
            item = children[frame]
            children[frame] = replace(item, name=f"{item.name} {THIS_FRAME}")
            out[i] = replace(row, children=children)
    return out


def _header_rows(ref: FileRef) -> list[HeaderRow]:
    if not os.path.isfile(ref.path):
        raise NotDicomError(f"{ref}: no such file")
    try:
        # Not headers_only: that stops before the pixel data, which is shown as "<N bytes>".
        # Values over 4 KiB are deferred (not read) for plain files, so this stays fast.
        ds = read_dataset(ref)
    except MedvisionIOError:
        raise
    except Exception as exc:  # anything pydicom raises on a broken file
        raise NotDicomError(f"{ref}: cannot read the DICOM header ({_short(exc)})") from exc
    builder = _Builder(ref)
    rows: list[HeaderRow] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta):
        rows.extend(builder.rows(meta, 0))
    rows.extend(builder.rows(ds, 0))
    if not rows:
        raise NotDicomError(f"{ref}: the file holds no DICOM elements")
    return rows


class _Builder:
    def __init__(self, ref: FileRef) -> None:
        self.ref = ref
        self.file_size = os.path.getsize(ref.path) if not ref.member else None

    def rows(self, ds: Dataset, depth: int) -> list[HeaderRow]:
        out = []
        for tag in sorted(ds.keys()):
            try:
                out.append(self.row(ds, Tag(tag), depth))
            except Exception as exc:  # noqa: BLE001 - one bad element must not hide the rest of the header
                log.debug("%s: element %s: %s", self.ref, format_tag(tag), exc)
                keyword, name = _names(ds, Tag(tag))
                out.append(HeaderRow(format_tag(tag), keyword, name, "", f"<cannot read value: {_short(exc)}>"))
        return out

    def row(self, ds: Dataset, tag: BaseTag, depth: int) -> HeaderRow:
        keyword, name = _names(ds, tag)
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            vr = raw.VR or _dictionary_vr(ds, tag)
            if vr in BINARY_VRS or tag in PIXEL_TAGS:
                return HeaderRow(format_tag(tag), keyword, name, vr, self._deferred_size(raw))
        elem = ds[tag]
        assert isinstance(elem, DataElement)
        vr = str(elem.VR)
        if vr == "SQ":
            return self._sequence(elem, tag, keyword, name, depth)
        value, full = _format_value(elem, vr, tag)
        return HeaderRow(format_tag(tag), keyword, name, vr, value, full_value=full)

    def _sequence(self, elem: DataElement, tag: BaseTag, keyword: str, name: str, depth: int) -> HeaderRow:
        items = elem.value if isinstance(elem.value, Sequence | list) else []
        n = len(items)
        row = HeaderRow(format_tag(tag), keyword, name, "SQ", f"{n} item" + ("" if n == 1 else "s"))
        if depth >= MAX_DEPTH:
            row.value += " (nested too deep to show)"
            return row
        for i, item in enumerate(items):
            item_name = f"Item {i + 1}"
            children = self.rows(item, depth + 1) if isinstance(item, Dataset) else []
            count = len(children)
            row.children.append(HeaderRow("", "", item_name, "", f"{count} element" + ("" if count == 1 else "s"),
                                          children))
        return row

    def _deferred_size(self, raw: RawDataElement) -> str:
        if raw.length != 0xFFFFFFFF:
            if self.file_size is not None and raw.value_tell + raw.length > self.file_size:
                present = max(0, self.file_size - raw.value_tell)
                return f"<{raw.length} bytes, file truncated: {present} present>"
            return f"<{raw.length} bytes>"
        try:
            with open_ref(self.ref) as fp:
                fp.seek(raw.value_tell)
                return _fragments_text(*encapsulated_fragments(fp, raw.is_little_endian))
        except (OSError, ValueError, struct.error) as exc:
            return f"<encapsulated, size unknown: {_short(exc)}>"


def encapsulated_fragments(fp: BinaryIO, little_endian: bool) -> tuple[int, int]:
    """Total bytes and number of fragments of encapsulated data starting at ``fp``'s position
    (the offset table not counted); fragments are skipped, not read."""
    fmt = "<HHL" if little_endian else ">HHL"
    start = fp.tell()
    end = fp.seek(0, io.SEEK_END)
    fp.seek(start)
    total = count = 0
    first = True
    while True:
        head = fp.read(8)
        if len(head) < 8:
            break
        group, element, length = struct.unpack(fmt, head)
        if (group << 16) | element != _ITEM or fp.tell() + length > end:
            break  # the sequence delimiter (or garbage, or a cut file): the end
        fp.seek(length, io.SEEK_CUR)
        if not first:
            total += length
            count += 1
        first = False
    return total, count


def _fragments_text(total: int, count: int) -> str:
    return f"<{total} bytes, compressed, {count} fragment" + ("" if count == 1 else "s") + ">"


def _names(ds: Dataset, tag: BaseTag) -> tuple[str, str]:
    """(keyword, name) of a tag; private tags are named after their private creator."""
    if tag.is_private:
        if tag.is_private_creator:
            return "", "Private Creator"
        creator = _private_creator(ds, tag)
        if creator:
            try:
                return "", f"{datadict.private_dictionary_description(tag, creator)} [{creator}]"
            except KeyError:
                return "", f"Private tag [{creator}]"
        return "", "Private tag"
    if tag.element == 0:
        return "", "Group Length"
    try:
        return datadict.dictionary_keyword(tag), datadict.dictionary_description(tag)
    except KeyError:
        return "", "Unknown tag"


def _private_creator(ds: Dataset, tag: BaseTag) -> str:
    if tag.element < 0x1000:
        return ""
    creator_tag = Tag(tag.group, tag.element >> 8)
    if creator_tag not in ds:
        return ""
    try:
        value = ds[creator_tag].value
    except Exception:  # noqa: BLE001 - a damaged creator element: fall back to "Private tag"
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    return str(value).strip().strip("\x00")


def _dictionary_vr(ds: Dataset, tag: BaseTag) -> str:
    try:
        if tag.is_private:
            return datadict.private_dictionary_VR(tag, _private_creator(ds, tag))
        return datadict.dictionary_VR(tag)
    except KeyError:
        return "UN"


def _format_value(elem: DataElement, vr: str, tag: BaseTag) -> tuple[str, str]:
    """(display text, full text if the display text was shortened else "")."""
    value = elem.value
    if value is None:
        return "", ""
    if vr in BINARY_VRS or tag in PIXEL_TAGS or isinstance(value, bytes | bytearray):
        if isinstance(value, bytes | bytearray) and elem.is_undefined_length and tag in PIXEL_TAGS:
            return _fragments_text(*encapsulated_fragments(io.BytesIO(value), True)), ""  # encapsulated: little endian
        return f"<{_byte_length(value, vr)} bytes>", ""
    if isinstance(value, MultiValue | list | tuple):
        n = len(value)
        shown = [_scalar(v, vr) for v in list(value)[:MAX_VALUES]]
        text = "\\".join(shown)
        if n > MAX_VALUES:
            return _clean(text)[:MAX_VALUE_CHARS] + f"... ({n} values)", ""
    else:
        text = _scalar(value, vr)
    text = _clean(text)
    if len(text) > MAX_VALUE_CHARS:
        return text[:MAX_VALUE_CHARS] + f"... ({len(text)} chars)", text
    return text, ""


def _byte_length(value, vr: str) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, MultiValue | list | tuple):  # e.g. "US or OW" read as numbers
        return len(value) * 2
    return 0


def _scalar(v, vr: str) -> str:
    if v is None:
        return ""
    if isinstance(v, UID):
        name = v.name
        return f"{v} ({name})" if name and name != str(v) else str(v)
    if isinstance(v, float) and vr == "FL":
        return format(v, ".7g")
    if isinstance(v, bytes | bytearray):
        return f"<{len(v)} bytes>"
    return str(v)


def _clean(text: str) -> str:
    """One line of text: line breaks become " ↵ ", NUL padding and other controls go."""
    if "\n" in text or "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n").replace("\n", " \u21b5 ")
    if any(c < " " for c in text):
        text = "".join(c if c >= " " else (" " if c == "\t" else "") for c in text)
    return text


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


class HeaderNode:
    """A row in a :class:`HeaderTree`; ``shown`` are the children that pass the current search."""

    __slots__ = ("children", "match", "name", "parent", "pos", "row", "shown", "text", "visible")

    def __init__(self, row: HeaderRow | None, parent: HeaderNode | None) -> None:
        self.row = row
        self.parent = parent
        self.children: list[HeaderNode] = []
        self.shown: list[HeaderNode] = self.children
        self.pos = 0  # index in the parent's ``shown``
        self.name = row.name if row is not None else ""
        self.text = row.search_text() if row is not None else ""
        self.match = False  # matches the current search itself (not only a descendant)
        self.visible = True

    def rename(self, name: str) -> None:
        assert self.row is not None
        self.name = name
        self.text = replace(self.row, name=name, children=[]).search_text()

    @property
    def key(self) -> str:
        """What identifies the row among its siblings from one file to the next (tag, or "Item N")."""
        return (self.row.tag or self.row.name) if self.row is not None else ""

    @property
    def path(self) -> tuple[str, ...]:
        keys = []
        node: HeaderNode | None = self
        while node is not None and node.parent is not None:
            keys.append(node.key)
            node = node.parent
        return tuple(reversed(keys))


class HeaderTree:
    """Header rows as a filterable tree (the viewer's model data; no Qt).

    :meth:`filter` keeps the rows matching a query and their ancestors, in one pass over a flat
    list of precomputed lower-case texts, so it stays fast on headers with tens of thousands of rows.
    """

    def __init__(self, rows: list[HeaderRow]) -> None:
        self.root = HeaderNode(None, None)
        stack: list[tuple[HeaderNode, list[HeaderRow]]] = [(self.root, rows)]
        while stack:
            parent, children = stack.pop()
            for row in children:
                node = HeaderNode(row, parent)
                parent.children.append(node)
                if row.children:
                    stack.append((node, row.children))
        self.flat: list[HeaderNode] = []  # preorder, root excluded
        todo = list(reversed(self.root.children))
        while todo:
            node = todo.pop()
            self.flat.append(node)
            todo.extend(reversed(node.children))
        for node in (self.root, *self.flat):
            for i, child in enumerate(node.children):
                child.pos = i
        # (every node but the root has a row)
        self.frame_items = next((n.children for n in self.root.children
                                 if n.row is not None and n.row.tag == _PER_FRAME_TEXT), [])
        self.frame_node: HeaderNode | None = None
        self.query = ""
        self.match_count = 0

    def __len__(self) -> int:
        return len(self.flat)

    def mark_frame(self, frame: int | None) -> HeaderNode | None:
        """Name item ``frame`` (0-based) of the Per-Frame Functional Groups "Item N (this frame)"."""
        if self.frame_node is not None:
            assert self.frame_node.row is not None  # an item node, not the root
            self.frame_node.rename(self.frame_node.row.name)
            self.frame_node = None
        if frame is not None and 0 <= frame < len(self.frame_items):
            node = self.frame_items[frame]
            assert node.row is not None  # an item node, not the root
            node.rename(f"{node.row.name} {THIS_FRAME}")
            self.frame_node = node
        return self.frame_node  # the caller filters again when a search is active

    def filter(self, query: str) -> int:
        """Show rows whose text contains ``query`` (see :func:`normalize_query`) and their ancestors;
        "" shows everything. Returns the number of rows that match themselves."""
        self.query = query
        if not query:
            for node in (self.root, *self.flat):
                node.match, node.visible = False, True
                if node.shown is not node.children:
                    node.shown = node.children
                    for i, child in enumerate(node.children):
                        child.pos = i
            self.match_count = 0
            return 0
        count = 0
        for node in (*reversed(self.flat), self.root):  # children before their parents
            node.match = node.row is not None and query in node.text
            count += node.match
            if node.children:
                node.shown = [c for c in node.children if c.visible]
                for i, child in enumerate(node.shown):
                    child.pos = i
                node.visible = node.match or bool(node.shown)
            else:
                node.visible = node.match
        self.root.visible = True
        self.match_count = count
        return count

    def find(self, path: tuple[str, ...]) -> HeaderNode | None:
        """The shown node reached by following sibling keys (tags, "Item N") from the top."""
        node = self.root
        for key in path:
            found = next((c for c in node.shown if c.key == key), None)
            if found is None:
                return None
            node = found
        return node if node is not self.root else None
