"""The shipped ``brain-tissue-mni152`` package: its card, licence and provenance, the label rule of
its build script, that it is a fine-tuning base (its encoder transfers), and what it does on a real
T1 it never saw (MRIcrop, when ../shared/data is present)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from medvision.ai.networks import LinkNet3D
from medvision.ai.networks.train_brain_tissue import CHECK_NAMES, tissue_labels
from medvision.ai.package import Registry
from medvision.ai.training.model import encoder_parameters, make_network

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "models" / "brain-tissue-mni152"


def test_card_licence_and_provenance():
    pkg = Registry().get("brain-tissue-mni152")
    assert pkg.folder.resolve() == PACKAGE.resolve()
    pkg.verified_weights()
    card = json.loads((PACKAGE / "model.json").read_text())
    assert [(x["value"], x["name"]) for x in card["labels"]] == [(1, "CSF"), (2, "grey matter"), (3, "white matter")]
    assert card["architecture"]["name"] == "deepbet.LinkNet3D" and card["architecture"]["args"]["out_channels"] == 4
    assert card["input"]["spacing_mm"] == [0.75, 0.75, 0.75] and card["inference"]["mode"] == "sliding_window"
    prov = card["provenance"]
    assert prov["parent_id"] == "deepbet-t1-brain" and not prov["from_scratch"]
    assert "MNI152" in prov["training_data"] and len(prov["data_files"]) == 3
    assert prov["metrics"]["val_dice"] > 0.5
    licence = (PACKAGE / card["license_file"]).read_text()
    assert "MIT License" in licence and "Louis Collins" in licence and "McGill University" in licence
    assert "MNI" in card["attribution"] and "Fisch" in card["attribution"]


def test_label_rule_of_the_build():
    t1 = np.zeros((5, 6, 6), np.uint8)
    t1[1:4, 1:5, 1:5] = 200  # the skull-stripped brain
    t1[2, 2:4, 2:4] = 0  # a dark hole inside it: still brain (holes are filled)
    gm = np.zeros_like(t1)
    wm = np.zeros_like(t1)
    gm[1:3, 1, 1:5] = 230  # uint8 probabilities, as nilearn stores them
    wm[1:3, 4, 1:5] = 255
    labels = tissue_labels(t1, gm, wm)
    assert labels[0].max() == 0 and labels[1, 0, 0] == 0  # outside: background
    assert (labels[1:3, 1, 1:5] == 2).all() and (labels[1:3, 4, 1:5] == 3).all()
    assert (labels[2, 2:4, 2:4] == 1).all()  # inside, neither grey nor white: CSF


def test_its_encoder_starts_a_fine_tuning():
    base = Registry().get("brain-tissue-mni152")
    tn = make_network(base, 2, transfer="encoder")
    state = base.state_dict()
    assert isinstance(tn.net, LinkNet3D) and tn.pretrained
    assert all(n.startswith(("init", "down")) for n in tn.pretrained)
    own = tn.net.state_dict()
    assert all(torch.equal(own[n], state[n]) for n in tn.pretrained)
    assert sum(p.numel() for p in encoder_parameters(tn.net)) > 1_000_000


def test_on_a_real_t1_it_never_saw(shared_data):
    from medvision.ai.engine import InferenceOptions, infer_job
    from medvision.core.jobs import run_job
    from medvision.io import load
    from medvision.io.labels import load_labels

    volume = load(shared_data / "labeled" / "MRIcrop-orig.gipl.gz")
    truth = load_labels(shared_data / "labeled" / "MRIcrop-seg.gipl.gz", volume).array
    result = run_job(infer_job(Registry().get("brain-tissue-mni152"), volume, InferenceOptions(device="cpu")))
    pred = result.labels.array
    assert pred.shape == volume.shape and set(np.unique(pred)) <= {0, 1, 2, 3}
    hippo = np.isin(truth, CHECK_NAMES["hippocampi"])
    assert np.mean(pred[hippo] == 2) > 0.85  # the hippocampi are grey matter
    caudate = np.isin(truth, CHECK_NAMES["caudate"])
    assert np.mean(pred[caudate] == 2) > 0.6
    ventricles = np.isin(truth, CHECK_NAMES["lateral ventricles"])
    assert np.mean(pred[ventricles] == 2) < 0.15 and np.mean(pred[ventricles] == 3) < 0.05  # not tissue
