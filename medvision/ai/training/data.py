"""Training data: labelled cases in the network's frame, one merged label table, the split.

* Cases come from a MONAI-style datalist (``{"labels": {name: value}, "training": [{"image",
  "label", "case"?, "series"?, "labels"?}]}``, a dict or a JSON file whose relative paths are
  relative to it; ``labels`` in any form :mod:`.labelspec` reads: nnU-Net v2's, MSD's ``{value:
  name}``) or from a project (:meth:`Project.datalist`: the cases marked done or reviewed).
* Each case's labels are read onto its image's exact grid; their names come from the label file's
  own table (``.labels.json`` or an ITK-SNAP ``.label`` beside it), else from the item's or the
  datalist's ``labels``. Cases may number the same structure differently: the labels are merged
  BY NAME (case-insensitive) into one table, class index 1..K (0 = background). ``label_groups``
  merges several names into one class (``{"hippocampus": ["hippo-L", "hippo-R"]}``) and drops
  the names it does not mention; so do the datalist's ``labels`` when it has them (a case's own
  table may name more: those are background). Names with no voxels in any case are dropped
  (``notes`` says so).
* :meth:`TrainingData.split`: a hold-out split: about 20 % of the cases, at least one, for
  validation. A single case is split by region instead (see :func:`region_split`).
  :meth:`TrainingData.folds`: the K splits of a k-fold cross-validation (every case validated
  once); :meth:`TrainingData.all_cases`: every case for training, none for validation (the final
  model of a cross-validation).
* Arrays for the network: the volume reoriented (flips and permutations only, native resolution)
  to the base card's orientation, as an ``[x, y, z]`` array; :func:`normalize_for_training`
  applies the card's intensity normalisation with statistics of the image itself. The trainer may
  then resample each region to the voxel size the network is trained at (:func:`resample_image`:
  trilinear onto the grid the engine computes for a card's ``spacing_mm``; labels by
  :func:`resample_labels`: each class's mask interpolated the same way, the largest wins).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.labels import LabelTable
from ...core.volume import Volume
from ...io.labels import load_labels, read_itksnap_labels, table_path_for
from .labelspec import LabelSpecError, label_values

__all__ = ["CaseData", "Part", "Split", "TrainingData", "TrainingDataError", "region_split", "files_sha256"]

log = logging.getLogger(__name__)

AXIS_NAMES = "xyz"


class TrainingDataError(Exception):
    """Training data that cannot be used (message for the user)."""


@dataclass
class CaseData:
    """One labelled case: the image volume and its labels (class indices 0..K) on the same grid."""

    id: str
    volume: Volume
    labels: np.ndarray  # (z, y, x) uint8 class indices of the merged table, on volume's grid
    files: list[str]
    sha256: str
    #: merged class name -> the value(s) it had in this case's own label file
    original_values: dict[str, list[int]] = field(default_factory=dict)

    def arrays(self, orientation: str | None = "RAS") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image float32 [x, y, z], labels uint8 [x, y, z], spacing (x, y, z) mm)`` with the
        axes reoriented to ``orientation`` (no interpolation)."""
        vol = self.volume.reoriented(orientation) if orientation else self.volume
        lab = Volume(self.labels, self.volume.affine).reoriented(orientation) if orientation else \
            Volume(self.labels, self.volume.affine)
        image = np.ascontiguousarray(vol.array.transpose(2, 1, 0)).astype(np.float32, copy=False)
        label = np.ascontiguousarray(lab.array.transpose(2, 1, 0))
        return np.nan_to_num(image), label, vol.spacing


@dataclass
class Part:
    """The part of a case used for training or validation: a box of its ``[x, y, z]`` array
    in the network frame (None: the whole case). A validation part may have a larger ``context``
    box: the image the network sees around it (the image only: Dice counts inside ``box``)."""

    case: str
    box: tuple[slice, slice, slice] | None = None
    context: tuple[slice, slice, slice] | None = None


@dataclass
class Split:
    train: list[Part]
    val: list[Part]
    kind: str  # "hold-out" or "k-fold" (whole cases), "region" (one case cut in two), "all" (no validation)
    description: str


def files_sha256(paths: list[str]) -> str:
    """sha256 over the files (a folder: every file in it, sorted by relative path), names included."""
    h = hashlib.sha256()
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update((f.relative_to(path).as_posix() if path.is_dir() else f.name).encode() + b"\0")
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
    return h.hexdigest()


def _own_table(path: Path) -> LabelTable | None:
    """The label table stored beside a label file (JSON, or an ITK-SNAP ``.label``/``.txt``)."""
    json_path = table_path_for(path)
    if json_path.exists():
        return LabelTable.from_json(json_path.read_text(encoding="utf-8"))
    stem = json_path.name[: -len(".labels.json")]
    for candidate in (path.with_name(stem + ".label"), path.with_name(stem + ".txt")):
        if candidate.exists():
            try:
                return read_itksnap_labels(candidate)
            except Exception:  # noqa: BLE001 - not a label description: ignored
                continue
    return None


def _table_from_names(names: dict[str, int]) -> LabelTable:
    """A table of ``{name: value}`` (as :func:`label_values` gives it)."""
    return LabelTable.from_json(json.dumps(names))


def _label_values(spec, where: str) -> dict[str, int]:
    try:
        return label_values(spec, where)
    except LabelSpecError as exc:
        raise TrainingDataError(str(exc)) from exc


class TrainingData:
    """Labelled cases with one merged label table (``classes``: value 1..K, name, colour)."""

    def __init__(self, cases: list[CaseData], classes: list[dict], notes: list[str] | None = None,
                 source: str = "") -> None:
        if not cases:
            raise TrainingDataError("no labelled cases to train on")
        self.cases = cases
        self.classes = classes
        self.notes = notes or []
        self.source = source

    # ---- loading ----------------------------------------------------------------------------
    @classmethod
    def from_project(cls, folder: str | os.PathLike, statuses=("done", "reviewed"), **kwargs) -> TrainingData:
        """The cases of a project marked done or reviewed (that have labels)."""
        from ...workspace.project import Project

        project = Project.open(folder)
        datalist = project.datalist(statuses)
        if not datalist["training"]:
            raise TrainingDataError(f"project {project.name!r} has no cases marked {' or '.join(statuses)} "
                                    "with labels: mark the finished cases done first")
        return cls.from_datalist(datalist, root=project.folder, **kwargs)

    @classmethod
    def from_datalist(cls, datalist: dict | str | os.PathLike, *, root: str | os.PathLike | None = None,
                      label_groups: dict[str, list[str]] | None = None) -> TrainingData:
        datalist, root, source = _read_datalist(datalist, root)
        items = datalist.get("training") if isinstance(datalist, dict) else None
        if not items:
            raise TrainingDataError("the datalist has no 'training' cases")
        common = _label_values(datalist["labels"], f"{source}: 'labels'") if datalist.get("labels") else {}
        groups = {g.strip().lower(): [n.strip().lower() for n in names] for g, names in (label_groups or {}).items()}
        group_name = {g.strip().lower(): g for g in (label_groups or {})}
        notes: list[str] = []
        seen_ids: set[str] = set()
        loaded = [_load_case(item, k, root, common, source, seen_ids, notes) for k, item in enumerate(items)]
        merged = _LabelMerge(groups, group_name, common)
        case_keys = [merged.case_keys(names, colours) for _cid, _vol, _arr, names, colours, _files in loaded]
        order = merged.present_order(case_keys, notes)
        index = {key: i + 1 for i, key in enumerate(order)}
        palette = LabelTable()
        classes = []
        for key in order:
            auto = palette.add(merged.display[key])
            classes.append({"value": index[key], "name": merged.display[key],
                            "color": merged.colour.get(key, list(auto.color))})
        if len(classes) > 255:
            raise TrainingDataError(f"{len(classes)} labels: at most 255 can be trained at once")
        cases = []
        for (cid, volume, arr, _names, _colours, files), keys in zip(loaded, case_keys, strict=True):
            lut = np.zeros(int(arr.max(initial=0)) + 1, np.uint8)
            original: dict[str, list[int]] = {}
            for v, key in keys.items():
                lut[v] = index[key]
                original.setdefault(merged.display[key], []).append(v)
            cases.append(CaseData(cid, volume, lut[arr], files, files_sha256(files), original))
        return cls(cases, classes, notes, source)

    # ---- what it is ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.classes]

    def case(self, case_id: str) -> CaseData:
        return next(c for c in self.cases if c.id == case_id)

    def data_hash(self) -> str:
        """One hash of every case's files and of the merged label table (a run's identity)."""
        text = json.dumps({"cases": [[c.id, c.sha256] for c in self.cases], "classes": self.names,
                           "mapping": [c.original_values for c in self.cases]}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    # ---- split --------------------------------------------------------------------------------
    def split(self, seed: int = 0, val_fraction: float = 0.2, orientation: str | None = "RAS",
              context_margin: int = 32, slab: str | None = None, labels_of=None) -> Split:
        """Hold-out split of whole cases (see :meth:`folds` for k-fold): ``round(val_fraction * n)`` cases, at least
        one, chosen at random with ``seed``, for validation. One case: :func:`region_split` (at the
        ``slab`` end, e.g. ``"x-last"``, when given), the validation slab seen with ``context_margin``
        voxels of image around it. ``labels_of(case)``: a case's ``[x, y, z]`` labels in the network frame
        when that is not the volume reoriented (a conformed cube's crop, see :mod:`.conformed`)."""
        if len(self.cases) == 1:
            case = self.cases[0]
            label = labels_of(case) if labels_of else case.arrays(orientation)[1]
            train_box, val_box, text = region_split(label, self.names, slab=slab)
            context = tuple(slice(max(0, v.start - context_margin), min(n, v.stop + context_margin))
                            for v, n in zip(val_box, label.shape, strict=True))
            text += (f"; the network sees the validation slab with up to {context_margin} voxels of image (not "
                     "labels) around it, as it would see a whole image")
            return Split([Part(case.id, train_box)], [Part(case.id, val_box, context)], "region",
                         f"one case ({case.id}): {text}")
        n = len(self.cases)
        n_val = min(n - 1, max(1, round(val_fraction * n)))
        order = np.random.default_rng(seed).permutation(n)
        val_ids = [self.cases[i].id for i in sorted(order[:n_val])]
        train_ids = [c.id for c in self.cases if c.id not in val_ids]
        text = (f"hold-out split, seed {seed}: {n_val} of {n} cases for validation "
                f"({', '.join(val_ids)}), {len(train_ids)} for training")
        if slab:
            text += f"; the validation slab ({slab}) is for a single case: not used"
        return Split([Part(c) for c in train_ids], [Part(c) for c in val_ids], "hold-out", text)

    def folds(self, k: int, seed: int = 0) -> list[Split]:
        """The ``k`` splits of a k-fold cross-validation of whole cases: the cases shuffled with
        ``seed`` and dealt into ``k`` folds of (nearly) equal size; split ``i`` validates on fold
        ``i`` and trains on the others, so every case is validated exactly once."""
        n = len(self.cases)
        if n < 2:
            raise TrainingDataError("k-fold cross-validation needs at least 2 cases; a single case is split by "
                                    "region into training and validation instead (train without folds)")
        if int(k) < 2:
            raise TrainingDataError(f"k-fold cross-validation needs 2 folds or more, not {k}")
        if int(k) > n:
            raise TrainingDataError(f"{k} folds need at least {k} cases and there are {n}: use 2 to {n} folds ({n} "
                                    "leaves one case out at a time)")
        k = int(k)
        groups = np.array_split(np.random.default_rng(seed).permutation(n), k)
        splits = []
        for f, group in enumerate(groups):
            val_ids = [self.cases[i].id for i in sorted(group)]
            train_ids = [c.id for c in self.cases if c.id not in val_ids]
            text = (f"{k}-fold cross-validation (seed {seed}), fold {f + 1}: {len(val_ids)} of {n} cases for "
                    f"validation ({', '.join(val_ids)}), {len(train_ids)} for training")
            splits.append(Split([Part(c) for c in train_ids], [Part(c) for c in val_ids], "k-fold", text))
        return splits

    def all_cases(self) -> Split:
        """Every case for training and none for validation (a cross-validation's final model)."""
        n = len(self.cases)
        return Split([Part(c.id) for c in self.cases], [], "all",
                     f"all {n} case{'s' if n != 1 else ''} for training, none held out")


def _resolve(value, root: Path, what: str, k: int) -> Path:
    if not value:
        raise TrainingDataError(f"datalist case {k + 1}: no {what}")
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise TrainingDataError(f"datalist case {k + 1}: {what} {path} does not exist")
    return path


#: the validation slab's share of the image tried in turn: the first that gives every label at
#: least :data:`MIN_LABEL_SHARE` of its voxels on each side is taken (else the best of all)
SPLIT_FRACTIONS = (0.25, 1 / 3, 0.5)
MIN_LABEL_SHARE = 0.2


def region_split(label: np.ndarray, names: list[str], fraction: float | None = None, slab: str | None = None):
    """Cut one case (``label`` ``[x, y, z]`` class indices) into a training and a validation region.

    The validation region is a slab at one end of one axis; the training region is the rest. The
    slab holds 25 % of the image, or a third or a half when a smaller one would leave some label
    with under 20 % of its voxels on one side (``fraction`` fixes it instead): a hemisphere for
    paired structures such as the hippocampi, so both sides hold one. Of the candidate slabs the one
    chosen leaves the most labels present on both sides, then the largest share of the rarest
    label on its smaller side, then lies on the longest axis (the last end before the first).
    ``slab`` (``"x-first"``, ``"z-last"`` ...) fixes axis and end: only the size is chosen.
    Returns ``(train box, val box, description)``.
    """
    shape = label.shape
    axes, ends = range(3), ("last", "first")
    if slab:
        where = str(slab).strip().lower().split("-")
        if len(where) != 2 or where[0] not in AXIS_NAMES or where[1] not in ends:
            raise TrainingDataError(f"validation slab {slab!r}: say an axis and an end, e.g. 'x-first' or 'z-last'")
        axes, ends = (AXIS_NAMES.index(where[0]),), (where[1],)
    classes = [c for c in range(1, len(names) + 1)]
    totals = np.bincount(label.ravel(), minlength=len(names) + 1)[1:]
    profiles = {}
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        profiles[axis] = (np.stack([(label == c).sum(other) for c in classes]) if classes
                          else np.zeros((0, shape[axis])))
    best_of_all = None
    for frac in (fraction,) if fraction else SPLIT_FRACTIONS:
        best = None
        for axis in sorted(axes, key=lambda a: -shape[a]):
            n = shape[axis]
            k = max(1, int(round(n * frac)))
            if n - k < 1:
                continue
            for end in ends:
                val = slice(n - k, n) if end == "last" else slice(0, k)
                in_val = profiles[axis][:, val].sum(1)
                share = np.where(totals > 0, in_val / np.maximum(totals, 1), 0.0)
                both = [(s, 1 - s) for s, t in zip(share, totals, strict=True) if t > 0 and 0 < s < 1]
                score = (len(both), min((min(a, b) for a, b in both), default=0.0), n)
                if best is None or score > best[0]:
                    best = (score, axis, end, val, share, frac)
        if best is None:
            continue
        if best_of_all is None or best[0][:2] > best_of_all[0][:2]:
            best_of_all = best
        if best[0][0] == int((totals > 0).sum()) and best[0][1] >= MIN_LABEL_SHARE:
            best_of_all = best
            break
    if best_of_all is None:
        raise TrainingDataError(f"the image ({'x'.join(map(str, shape))}) is too small to split into regions")
    _score, axis, end, val, share, frac = best_of_all
    n = shape[axis]
    train = slice(0, val.start) if end == "last" else slice(val.stop, n)

    def box(s: slice) -> tuple[slice, slice, slice]:
        return tuple(s if a == axis else slice(0, shape[a]) for a in range(3))

    shares = ", ".join(f"{name} {100 * s:.0f} %" for name, s, t in zip(names, share, totals, strict=True) if t)
    missing = [name for name, s, t in zip(names, share, totals, strict=True) if t and not 0 < s < 1]
    chosen = "slab size" if slab else "slab size, axis and end"
    text = (f"split by region in the network frame: validation = the {end} {100 * frac:.0f} % of axis "
            f"{AXIS_NAMES[axis]} (voxels {val.start}..{val.stop - 1} of {n}), training = the rest "
            f"({train.start}..{train.stop - 1}); {chosen} chosen so that every label has at least "
            f"{100 * MIN_LABEL_SHARE:.0f} % of its voxels on each side where possible"
            f"{'' if slab else ' (longest axis on ties)'}; share of each label's voxels in validation: {shares}")
    if missing:
        text += f"; not on both sides: {', '.join(missing)}"
    return box(train), box(val), text


# ---- from_datalist's stages ---------------------------------------------------------------------------
def _read_datalist(datalist, root) -> tuple[dict, Path, str]:
    """The datalist as a dict, the folder its relative paths start from, and what to call it in messages."""
    source = "datalist"
    if not isinstance(datalist, dict):
        path = Path(datalist)
        try:
            datalist = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"{path}: not a readable datalist ({exc})") from exc
        root = root or path.parent
        source = str(path)
    return datalist, Path(root) if root else Path.cwd(), source


def _load_case(item: dict, k: int, root: Path, common: dict, source: str, seen_ids: set[str], notes: list[str]):
    """One datalist entry read: (case id, volume, label array, {value: name}, {value: colour}, files)."""
    from ...io import load

    image_path = _resolve(item.get("image"), root, "image", k)
    label_path = _resolve(item.get("label"), root, "label", k)
    cid = str(item.get("case") or Path(str(item["image"])).name.split(".")[0] or f"case{k}")
    while cid in seen_ids:
        cid += "_"
    seen_ids.add(cid)
    volume = load(image_path, series=item.get("series")) if item.get("series") else load(image_path)
    if volume.is_4d:
        notes.append(f"{cid}: a 4D series: its first frame is used")
        volume = volume.frame(0)
    table = None
    if item.get("labels"):
        table = _table_from_names(_label_values(item["labels"], f"{source}: case {cid}'s 'labels'"))
    elif _own_table(label_path) is None and common:
        table = _table_from_names(common)
    lm = load_labels(label_path, reference=volume, table=table)
    if lm.placement == "resampled":
        notes.append(f"{cid}: the labels were on another grid and were resampled onto the image")
    present = [int(v) for v in np.unique(lm.array) if v]
    names = {v: (lm.table[v].name if v in lm.table else f"Label {v}") for v in present}
    colours = {v: list(lm.table[v].color) for v in present if v in lm.table}
    return cid, volume, lm.array, names, colours, [str(image_path), str(label_path)]


class _LabelMerge:
    """One label table by name over the cases: the groups asked for, else the datalist's labels in their
    order, then the others as they first appear; labels not asked for are dropped (trained as background)."""

    def __init__(self, groups: dict[str, list[str]], group_name: dict[str, str], common: dict) -> None:
        self.groups, self.common = groups, common
        self.order: list[str] = []
        self.display: dict[str, str] = {}
        self.colour: dict[str, list[int]] = {}
        self.dropped: set[str] = set()
        if groups:
            for key in groups:
                self.order.append(key)
                self.display[key] = group_name[key]
        elif common:
            for name, _value in sorted(common.items(), key=lambda kv: kv[1]):
                key = name.lower()
                self.order.append(key)
                self.display.setdefault(key, name)

    def _key(self, name: str) -> str | None:
        key = name.strip().lower()
        if self.groups:
            return next((g for g, members in self.groups.items() if key in members or key == g), None)
        if self.common and key not in self.order:  # only the labels the datalist asks for are trained
            return None
        return key

    def case_keys(self, names: dict[int, str], colours: dict[int, list[int]]) -> dict[int, str]:
        """A case's label values -> the merged table's keys."""
        keys = {}
        for v, name in names.items():
            key = self._key(name)
            if key is None:
                self.dropped.add(name)
                continue
            if key not in self.order:
                self.order.append(key)
                self.display[key] = name
            if key not in self.colour and v in colours and not self.groups:
                self.colour[key] = colours[v]
            keys[v] = key
        return keys

    def present_order(self, case_keys: list[dict[int, str]], notes: list[str]) -> list[str]:
        """The keys some case has voxels of, in table order; notes for the ones absent and dropped."""
        present = {k for keys in case_keys for k in keys.values()}
        notes.extend(f"label {self.display[key]!r} has no voxels in any case: not trained"
                     for key in self.order if key not in present)
        order = [k for k in self.order if k in present]
        if not order:
            raise TrainingDataError("none of the cases has any labelled voxel (of the labels asked for)")
        if self.dropped:
            notes.append(f"labels not asked for, trained as background: {', '.join(sorted(self.dropped))}")
        return order
