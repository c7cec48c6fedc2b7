"""The ``labels`` of a datalist, in the forms the field writes them, as one ``{name: value}`` dict.

* nnU-Net v2 ``dataset.json`` and MONAI datalists: ``{"background": 0, "edema": 1}`` (name ->
  value; a value may be a string of digits).
* Medical Segmentation Decathlon / MONAI ``dataset.json``: ``{"0": "background", "1": "edema"}``
  (value -> name).
* medvision's own label tables and model cards: ``[{"value": 1, "name": "edema"}, ...]``.

nnU-Net v2's region-based labels (``{"whole tumour": [1, 2, 3]}``: a class made of several values,
trained with sigmoids, overlapping) are not supported: they are refused with a sentence that says
so and how to ask for them instead (one value per label; ``--labels NAME=LABEL1,LABEL2`` merges labels into one class).
Background (value 0) is left out of the result.
"""

from __future__ import annotations

import re

__all__ = ["LabelSpecError", "label_values", "EXPECTED"]

EXPECTED = ('expected {"background": 0, "edema": 1} (name: value, as nnU-Net v2 and MONAI write it) or '
            '{"0": "background", "1": "edema"} (value: name, as in a Medical Segmentation Decathlon dataset.json)')

_INT = re.compile(r"^\s*\d+\s*$")


class LabelSpecError(ValueError):
    """A ``labels`` entry that is none of the known forms (the message says which forms are)."""


def _as_int(value) -> int | None:
    """``value`` as a label value (an int, or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.match(value):
        return int(value)
    return None


def label_values(spec, where: str = "labels") -> dict[str, int]:
    """``{name: value}`` (value > 0) from a datalist's ``labels`` in any known form.

    Raises :class:`LabelSpecError` naming ``where`` and the expected forms when ``spec`` is none
    of them, when it mixes them, or when a name or a value appears twice."""
    pairs: list[tuple[str, int]] = []
    if isinstance(spec, list):
        for item in spec:
            value = _as_int(item.get("value")) if isinstance(item, dict) else None
            name = item.get("name") if isinstance(item, dict) else None
            if value is None or not isinstance(name, str) or not name.strip():
                raise LabelSpecError(f"{where}: a list of labels holds {{\"value\": 1, \"name\": \"edema\"}} items; "
                                     f"got {str(item)[:80]}; or {EXPECTED}")
            pairs.append((name, value))
    elif isinstance(spec, dict):
        forms = set()
        for key, value in spec.items():
            key_int, value_int = _as_int(key), _as_int(value)
            if isinstance(value, (list, tuple)):
                raise LabelSpecError(
                    f"{where}: {key!r} is a region ({list(value)[:8]}: several values trained as one overlapping "
                    "class, nnU-Net v2's region-based training), which medvision does not support; give each label "
                    "its own value (one class can cover several labels with --labels NAME=LABEL1,LABEL2)")
            if value_int is not None and key_int is None:
                forms.add("name: value")
                pairs.append((str(key), value_int))
            elif key_int is not None and isinstance(value, str) and value.strip() and value_int is None:
                forms.add("value: name")
                pairs.append((value, key_int))
            else:
                raise LabelSpecError(f"{where}: cannot tell the name from the value in {key!r}: {value!r}; {EXPECTED}")
        if len(forms) > 1:
            raise LabelSpecError(f"{where}: mixes name: value and value: name entries; {EXPECTED}")
    else:
        raise LabelSpecError(f"{where}: is {type(spec).__name__} {str(spec)[:60]!r}; {EXPECTED}")
    out: dict[str, int] = {}
    seen: dict[int, str] = {}
    for name, value in pairs:
        name = name.strip()
        if value < 0:
            raise LabelSpecError(f"{where}: label {name!r} has a negative value ({value})")
        if value in seen and value != 0:
            raise LabelSpecError(f"{where}: value {value} is given to both {seen[value]!r} and {name!r}")
        if name.lower() in {n.lower() for n in out}:
            raise LabelSpecError(f"{where}: the name {name!r} appears twice")
        seen[value] = name
        if value != 0:
            out[name] = value
    return out
