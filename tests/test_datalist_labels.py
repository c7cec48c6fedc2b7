"""A datalist's ``labels`` in the forms the field writes them: nnU-Net v2 / MONAI ``{name: value}``,
the Medical Segmentation Decathlon's ``{"value": "name"}``, medvision's list of tables; region-based
labels and malformed ones refused with a sentence giving the expected form. Checked on the real
ITK-SNAP labelled MR (../shared/data/labeled/MRIcrop) and through `medvision train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from medvision.ai.training.data import TrainingData, TrainingDataError
from medvision.ai.training.labelspec import EXPECTED, LabelSpecError, label_values

from .conftest import ROOT

#: MRIcrop-seg.label (ITK-SNAP): value -> name
MRICROP = {1: "vent-lat", 2: "vent-3rd", 3: "vent-4th", 4: "hippo-R", 5: "hippo-L", 6: "vent-temp", 7: "caudates",
           8: "corpus-callosum", 9: "AC", 10: "PC", 11: "arteries"}


def test_the_forms_of_the_field_give_one_name_value_table():
    want = {"edema": 1, "tumour": 2}
    assert label_values({"background": 0, "edema": 1, "tumour": 2}) == want  # nnU-Net v2, MONAI
    assert label_values({"0": "background", "1": "edema", "2": "tumour"}) == want  # MSD dataset.json
    assert label_values({"background": "0", "edema": "1", "tumour": "2"}) == want  # values as strings
    assert label_values([{"value": 1, "name": "edema"}, {"value": 2, "name": "tumour"}]) == want
    assert label_values({"edema": 1.0}) == {"edema": 1}


@pytest.mark.parametrize(("spec", "says", "shows_forms"), [
    ({"background": 0, "whole tumour": [1, 2, 3]}, "region-based training), which medvision does not support", False),
    ({"1": 2}, "cannot tell the name from the value", True),
    ({"edema": "one"}, "cannot tell the name from the value", True),
    ({"0": "background", "edema": 1}, "mixes", True),
    (["edema", "tumour"], "a list of labels holds", True),
    ("edema", "is str", True),
    ({"edema": 1, "tumour": 1}, "value 1 is given to both 'edema' and 'tumour'", False),
    ({"1": "edema", "2": "Edema"}, "appears twice", False),
    ({"edema": -1}, "negative value", False),
])
def test_other_forms_are_refused_saying_what_is_expected(spec, says, shows_forms):
    with pytest.raises(LabelSpecError, match="^labels: ") as err:
        label_values(spec)
    assert says in str(err.value)
    assert (EXPECTED in str(err.value)) == shows_forms


def _mricrop_datalist(folder, shared_data, labels) -> str:
    data = shared_data / "labeled"
    path = folder / "dataset.json"
    path.write_text(json.dumps({"labels": labels, "training": [
        {"image": str(data / "MRIcrop-orig.gipl.gz"), "label": str(data / "MRIcrop-seg.gipl.gz"), "case": "mricrop"}]}))
    return str(path)


def test_an_msd_datalist_trains_the_same_as_an_nnunet_one(shared_data, tmp_path):
    msd = {"0": "background", **{str(v): n for v, n in MRICROP.items()}}
    nnunet = {"background": 0, **{n: v for v, n in MRICROP.items()}}
    a = TrainingData.from_datalist(_mricrop_datalist(tmp_path, shared_data, msd))
    b = TrainingData.from_datalist(_mricrop_datalist(tmp_path, shared_data, nnunet))
    assert a.names == b.names == [MRICROP[v] for v in range(1, 9)]  # 9-11 have no voxels
    assert any("'AC' has no voxels" in n for n in a.notes)
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "labeled" / "MRIcrop-seg.gipl.gz")))
    for data in (a, b):
        (case,) = data.cases
        assert np.array_equal(np.sort(np.unique(case.labels)), np.arange(9))
        assert int((case.labels == 1).sum()) == int((seg == 1).sum())  # vent-lat, 18138 voxels
    with pytest.raises(TrainingDataError, match="dataset.json: 'labels': 'whole' is a region"):
        TrainingData.from_datalist(_mricrop_datalist(tmp_path, shared_data, {"background": 0, "whole": [1, 2]}))


def test_the_command_explains_a_malformed_labels_entry(shared_data, tmp_path, medvision_home):
    path = _mricrop_datalist(tmp_path, shared_data, {"0": "background", "vent-lat": 1})
    env = dict(os.environ, MEDVISION_HOME=str(medvision_home))
    r = subprocess.run([sys.executable, "-m", "medvision.cli", "train", "--base", "deepbet-t1-brain", "--datalist",
                        path, "-o", "bad-labels", "--epochs", "1", "--device", "cpu"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "dataset.json: 'labels': mixes" in r.stderr and EXPECTED in r.stderr


def test_only_the_labels_asked_for_are_trained(shared_data, tmp_path):
    """Five of the eight labelled structures asked for: the case's own table (ITK-SNAP .label beside
    it) names eleven, but the others are background and the model's table has exactly the five."""
    asked = {1: "vent-lat", 4: "hippo-R", 5: "hippo-L", 7: "caudates", 8: "corpus-callosum"}
    data = TrainingData.from_datalist(_mricrop_datalist(tmp_path, shared_data, {
        "0": "background", **{str(v): n for v, n in asked.items()}}))
    assert data.names == list(asked.values()) and [c["value"] for c in data.classes] == [1, 2, 3, 4, 5]
    assert any(n == "labels not asked for, trained as background: vent-3rd, vent-4th, vent-temp" for n in data.notes)
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "labeled" / "MRIcrop-seg.gipl.gz")))
    (case,) = data.cases
    for index, value in enumerate(asked, start=1):
        assert np.array_equal(case.labels == index, seg == value)
    assert np.array_equal(case.labels == 0, ~np.isin(seg, list(asked)))
    assert case.original_values == {name: [value] for value, name in asked.items()}
