"""The bundled subset of SNOMED CT codes for labels (DICOM SEG category and type)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from .labels import Code, Label

__all__ = ["TermEntry", "entries", "lookup", "DEFAULT_CATEGORY", "DEFAULT_TYPE", "codes_for"]

DEFAULT_CATEGORY = Code("85756007", "SCT", "Tissue")
DEFAULT_TYPE = Code("85756007", "SCT", "Tissue")


class TermEntry:
    def __init__(self, category: Code, type_: Code, aliases: list[str]) -> None:
        self.category, self.type, self.aliases = category, type_, aliases

    def __repr__(self) -> str:
        return f"TermEntry({self.type.meaning!r})"


@lru_cache(maxsize=1)
def entries() -> tuple[TermEntry, ...]:
    data = json.loads(resources.files("medvision").joinpath("data/terminology.json").read_text("utf-8"))
    categories = {k: Code(*v) for k, v in data["categories"].items()}
    return tuple(TermEntry(categories[e["category"]], Code(*e["code"]), [a.lower() for a in e["aliases"]])
                 for e in data["types"])


def lookup(name: str) -> TermEntry | None:
    """The entry whose meaning or an alias is ``name`` (case and ``_``/``-`` insensitive)."""
    key = name.strip().lower().replace("_", " ")
    for e in entries():
        if key == e.type.meaning.lower() or key in (a.replace("_", " ") for a in e.aliases):
            return e
    return None


def codes_for(label: Label) -> tuple[Code, Code]:
    """Category and type of ``label``: its own codes, else the bundled entry matching its name,
    else Tissue/Tissue."""
    if label.category is not None and label.type is not None:
        return label.category, label.type
    entry = lookup(label.name)
    if entry is not None:
        return label.category or entry.category, label.type or entry.type
    return label.category or DEFAULT_CATEGORY, label.type or DEFAULT_TYPE
