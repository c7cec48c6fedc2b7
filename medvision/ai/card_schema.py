"""The model card's schema: what ``model.json`` may hold, checked with jsonschema before anything reads it.

Every package is checked when it is opened (shipped, installed, imported): a card with a field of the
wrong type, an id or version that could name a path (``"../../x"``, ``"/etc"``), or a weights file
outside its folder is refused in one sentence that names the field. Fields the schema does not know
are allowed (newer cards, the user's own notes); the ones it knows must have their type.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CARD_SCHEMA", "ID_PATTERN", "VERSION_PATTERN", "card_problem", "is_safe_id", "is_safe_version"]

#: letters, digits, ``_ . -``; starts with a letter or digit; never ``..``: an id is one folder name
ID_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z"
#: the same, ``+`` allowed (``1.0.0+local``), at most 40 characters
VERSION_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}\Z"
_FILE_PATTERN = r"^(?!\.)[A-Za-z0-9_.+-]{1,200}\Z"

_ID_HINT = ("letters, digits, '.', '_' and '-' only, starting with a letter or digit, at most 100 characters and no "
            "'..' (it names a folder)")
_VERSION_HINT = ("letters, digits, '.', '_', '+' and '-' only, starting with a letter or digit, at most 40 characters "
                 "and no '..' (it names a folder)")

_WEIGHTS = {
    "type": "object",
    "required": ["file", "sha256"],
    "properties": {
        "file": {"type": "string", "pattern": _FILE_PATTERN,
                 "x-hint": "a file name inside the package folder (no folder, no leading '.')"},
        "sha256": {"type": "string", "pattern": r"^[0-9a-fA-F]{64}$", "x-hint": "64 hexadecimal digits"},
    },
}
_ARCHITECTURE = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}, "args": {"type": "object"}},
}
_PART = {"type": "object", "required": ["architecture", "weights"],
         "properties": {"architecture": _ARCHITECTURE, "weights": _WEIGHTS}}
_COLOR = {"type": "array", "minItems": 3, "maxItems": 4, "items": {"type": "integer", "minimum": 0, "maximum": 255}}
_NUMBERS = {"type": "array", "items": {"type": "number"}}
_TEXT = {"type": ["string", "null"]}  # free text; null where a base card had none

CARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "version", "name", "task", "architecture", "weights", "labels"],
    "properties": {
        "format": {"const": "medvision-model", "x-hint": "\"medvision-model\""},
        "format_version": {"type": "integer", "minimum": 1},
        "id": {"type": "string", "pattern": ID_PATTERN, "x-hint": _ID_HINT},
        "version": {"type": "string", "pattern": VERSION_PATTERN, "x-hint": _VERSION_HINT},
        "name": {"type": "string", "maxLength": 300},
        "task": _TEXT,
        "modality": _TEXT,
        "sequence": _TEXT,
        "body_part": _TEXT,
        "dims": {"enum": [2, 3], "x-hint": "2 or 3"},
        "description": _TEXT,
        "trainable": {"type": "boolean"},
        "contains_code": {"type": "boolean"},
        "architecture": _ARCHITECTURE,
        "weights": _WEIGHTS,
        "labels": {
            "type": "array", "maxItems": 65535,  # (at least one but for an inpainting model: below)
            "items": {"type": "object", "required": ["value"],
                      "properties": {"value": {"type": "integer", "minimum": 1, "maximum": 65535},
                                     "name": {"type": "string"}, "color": _COLOR}},
        },
        "input": {"type": "object", "properties": {
            "channels": {"type": "integer", "minimum": 1, "maximum": 64},
            "orientation": {"type": "string"},
            "spacing_mm": {"oneOf": [_NUMBERS, {"type": "number"}, {"type": "null"}]},
            "resize_to": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4096}},
            "normalization": {"type": "object", "properties": {"kind": {"type": "string"}}},
        }},
        "inference": {"type": "object", "properties": {
            "mode": {"type": "string"},
            "sliding_window": {"type": ["object", "null"], "properties": {
                "roi_size": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4096}},
                "overlap": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}}},
        }},
        "output": {"type": "object"},
        "postprocessing": {"type": "object"},
        "plausibility": {"type": "object"},
        "license": _TEXT,
        "license_file": {"type": "string", "pattern": _FILE_PATTERN,
                         "x-hint": "a file name inside the package folder"},
        "attribution": _TEXT,
        "provenance": {"type": "object"},
        "localizer": _PART,
        "pre_model": _PART,
    },
    # any other part with its own weights (a localizer, a pre-model ...) is held to the same rules
    "additionalProperties": {"if": {"type": "object", "required": ["weights"]}, "then": _PART},
    # a model that labels has labels; an inpainting model gives an image and has none
    "if": {"properties": {"task": {"const": "inpainting"}}, "required": ["task"]},
    "else": {"properties": {"labels": {"minItems": 1}}},
}

_validator = None


def _get_validator():
    global _validator
    if _validator is None:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(CARD_SCHEMA)
        _validator = Draft202012Validator(CARD_SCHEMA)
    return _validator


def _field(error) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "the card"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def card_problem(card: Any) -> str | None:
    """None for a card the schema accepts, else one sentence naming the first wrong field."""
    # the most specific first: a wrong type deep inside ("weights.file": 5) before a missing key beside it
    errors = sorted(_get_validator().iter_errors(card),
                    key=lambda e: (e.validator == "required", -len(e.absolute_path), str(e.absolute_path)))
    if not errors:
        return None
    error = errors[0]
    field = _field(error)
    hint = error.schema.get("x-hint") if isinstance(error.schema, dict) else None
    if error.validator == "required":
        return f"{field if field != 'the card' else 'the card'} lacks {error.message.split(' is a required')[0]}"
    if error.validator == "type":
        want = error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
        return f"{field} must be {'an' if want[0] in 'aeio' else 'a'} {want}, not {_short(error.instance)}"
    if hint:
        return f"{field} must be {hint}, not {_short(error.instance)}"
    return f"{field}: {error.message[:200]}"


def is_safe_id(text: Any) -> bool:
    import re

    return isinstance(text, str) and re.fullmatch(ID_PATTERN, text) is not None


def is_safe_version(text: Any) -> bool:
    import re

    return isinstance(text, str) and re.fullmatch(VERSION_PATTERN, text) is not None
