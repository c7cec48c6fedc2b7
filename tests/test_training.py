"""Fine-tuning (medvision.ai.training) on tiny synthetic cases, with the shipped deepbet model as
the base so that transfer learning is exercised: the merged label table, the split, a run that
writes a package which loads and infers on the exact grid, stop + resume in the same lineage,
the freeze schedule, the new head fitted first by a linear probe, from-scratch weights, another
architecture only when the card allows it, and ``medvision train`` end to end (Ctrl+C, then the
same command resumes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medvision.ai.package import ModelPackage, PackageError, Registry, sha256_of, user_dir, write_card
from medvision.ai.training import checkpoint as ckpt
from medvision.ai.training.config import TrainConfig, training_spacing
from medvision.ai.training.data import CaseData, TrainingData, TrainingDataError, files_sha256, region_split
from medvision.ai.training.finish import anonymous_cases
from medvision.ai.training.job import train_job
from medvision.ai.training.model import encoder_parameters, make_network
from medvision.ai.training.resample import normalize_for_training, resample_image, resample_labels, resampled_shape
from medvision.ai.training.sampling import PatchSampler
from medvision.ai.training.task import init_head_from_priors
from medvision.core.jobs import run_job
from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume
from medvision.io import save
from medvision.io.labels import save_labels

from .cliutil import run_cli

ROOT = Path(__file__).resolve().parent.parent
BASE = "deepbet-t1-brain"
SHAPE = (40, 48, 44)  # (z, y, x)


def affine() -> np.ndarray:
    a = np.diag([-1.2, 1.0, 1.5, 1.0])  # x to the right, y posterior, z superior, anisotropic: RPS
    a[:3, 3] = [30, -20, 5]
    return a


def blobs(seed: int, shift: int = 0):
    """An MR-like image with a ball (bright) and a box (brighter), and their masks."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE)
    ball = (z - 18 - shift) ** 2 + (y - 16) ** 2 + (x - 15) ** 2 < 49
    box = (abs(z - 24) < 6) & (abs(y - 32 + shift) < 6) & (abs(x - 30) < 6)
    image = rng.normal(100, 15, SHAPE) + 250 * ball + 450 * box
    return image.astype(np.int16), ball, box


def write_case(folder: Path, name: str, values: dict[str, int], seed: int, shift: int = 0, table: bool = True):
    image, ball, box = blobs(seed, shift)
    labels = np.zeros(SHAPE, np.uint8)
    labels[ball], labels[box] = values["ball"], values["box"]
    save(Volume(image, affine(), None, {"modality": "MR"}), folder / f"{name}.nii.gz")
    t = LabelTable()
    for n, v in values.items():
        t.add(n, value=v)
    save_labels(LabelMap(labels, affine(), t), folder / f"{name}_seg.nii.gz")
    if not table:
        (folder / f"{name}_seg.labels.json").unlink()
    return {"image": f"{name}.nii.gz", "label": f"{name}_seg.nii.gz", "case": name}


@pytest.fixture
def datalist(tmp_path) -> Path:
    """Three cases numbering ball and box differently; the third names them only in its item."""
    folder = tmp_path / "data"
    folder.mkdir()
    items = [write_case(folder, "c1", {"ball": 1, "box": 2}, 1),
             write_case(folder, "c2", {"ball": 3, "box": 1}, 2, shift=2),
             write_case(folder, "c3", {"ball": 2, "box": 5}, 3, shift=-2, table=False)]
    items[2]["labels"] = {"Ball": 2, "box": 5}
    path = folder / "datalist.json"
    path.write_text(json.dumps({"name": "blobs", "training": items}))
    return path


def config(tmp_path, **kw) -> TrainConfig:
    # 32^3 patches: the network sees as much of these small cases, at an eighth of the cost of 64^3
    args = dict(base=BASE, new_id="blobs-ft", epochs=2, device="cpu", patch_size=(32, 32, 32), freeze_epochs=1,
                warmup_epochs=1, workdir=str(tmp_path / "work"))
    args.update(kw)
    return TrainConfig(**args)


# ---- data --------------------------------------------------------------------------------------------
def test_labels_are_merged_by_name_across_cases_numbered_differently(datalist):
    data = TrainingData.from_datalist(datalist)
    assert [(c["value"], c["name"]) for c in data.classes] == [(1, "ball"), (2, "box")]
    assert [c.original_values for c in data.cases] == [{"ball": [1], "box": [2]}, {"box": [1], "ball": [3]},
                                                       {"ball": [2], "box": [5]}]
    for case, (seed, shift) in zip(data.cases, [(1, 0), (2, 2), (3, -2)], strict=True):
        _, ball, box = blobs(seed, shift)
        assert case.labels.shape == case.volume.shape == SHAPE  # on the image grid
        assert np.array_equal(case.labels == 1, ball) and np.array_equal(case.labels == 2, box)
        assert case.sha256 == files_sha256(case.files)
    grouped = TrainingData.from_datalist(datalist, label_groups={"thing": ["ball"], "ghost": ["nothing"]})
    assert grouped.names == ["thing"]
    assert any("ghost" in n for n in grouped.notes) and any("box" in n for n in grouped.notes)
    assert int(grouped.cases[0].labels.max()) == 1


def _fake_cases(n: int) -> TrainingData:
    vol = Volume(np.zeros((8, 40, 12), np.int16), np.eye(4))
    labels = np.zeros((8, 40, 12), np.uint8)
    labels[2:6, 5:35, 3:9] = 1
    return TrainingData([CaseData(f"k{i}", vol, labels, [], "0") for i in range(n)],
                        [{"value": 1, "name": "thing", "color": [1, 2, 3, 255]}])


def _collect(job):
    """Every progress record of a job, and its result."""
    records = []
    while True:
        try:
            records.append(next(job))
        except StopIteration as stop:
            return records, stop.value


def test_split_holds_out_whole_cases():
    for n, n_val in ((2, 1), (3, 1), (10, 2)):
        split = _fake_cases(n).split(seed=0)
        assert split.kind == "hold-out" and len(split.val) == n_val and len(split.train) == n - n_val
        assert not {p.case for p in split.val} & {p.case for p in split.train}
        assert "hold-out" in split.description
    assert _fake_cases(10).split(seed=1).val != _fake_cases(10).split(seed=0).val
    several = _fake_cases(3).split(seed=0, slab="x-first")  # a slab is for one case: said, not used
    assert several.kind == "hold-out" and "slab (x-first) is for a single case: not used" in several.description


def test_k_folds_validate_every_case_exactly_once():
    data = _fake_cases(5)
    for k in (2, 3, 5):
        folds = data.folds(k, seed=0)
        assert len(folds) == k and all(f.kind == "k-fold" for f in folds)
        val = [p.case for f in folds for p in f.val]
        assert sorted(val) == [f"k{i}" for i in range(5)]  # every case once
        assert sorted(len(f.val) for f in folds) == sorted(len(a) for a in np.array_split(range(5), k))
        for i, f in enumerate(folds):
            assert not {p.case for p in f.val} & {p.case for p in f.train} and len(f.train) + len(f.val) == 5
            assert f"{k}-fold cross-validation (seed 0), fold {i + 1}:" in f.description
    assert [p.case for p in data.folds(5, 0)[0].val] != [p.case for p in data.folds(5, 1)[0].val]
    everything = data.all_cases()
    assert everything.kind == "all" and not everything.val and len(everything.train) == 5
    with pytest.raises(TrainingDataError, match="needs at least 2 cases; a single case is split by region"):
        _fake_cases(1).folds(2)
    with pytest.raises(TrainingDataError, match="4 folds need at least 4 cases and there are 3: use 2 to 3 folds"):
        _fake_cases(3).folds(4)
    with pytest.raises(TrainingDataError, match="needs 2 folds or more, not 1"):
        _fake_cases(3).folds(1)


def test_one_case_is_split_by_region_and_says_how():
    split = _fake_cases(1).split(seed=0, orientation=None)
    (train,), (val,) = split.train, split.val
    assert split.kind == "region" and train.case == val.case == "k0"
    axis = next(a for a in range(3) if train.box[a] != val.box[a])
    assert axis == 1  # the longest axis ([x, y, z] = 12, 40, 8) keeps the label on both sides
    covered = sorted([(train.box[axis].start, train.box[axis].stop), (val.box[axis].start, val.box[axis].stop)])
    assert covered[0][0] == 0 and covered[0][1] == covered[1][0] and covered[1][1] == 40  # disjoint, all of it
    # 25 % (10 voxels) would hold only 5 of the label's 30 rows: a third (13) holds 8, over the 20 % asked
    assert val.box[axis].stop - val.box[axis].start == 13
    assert "validation = the last 33 % of axis y" in split.description and "thing" in split.description
    # a label spread over the whole axis: 25 % is enough
    spread = np.zeros((12, 40, 8), np.uint8)
    spread[3:9, 2:38, 2:6] = 1
    _train, val_box, text = region_split(spread, ["thing"])
    assert val_box[1].stop - val_box[1].start == 10 and "the last 25 % of axis y" in text
    # paired structures either side of the middle of x: a half, one of the pair on each side
    pair = np.zeros((40, 12, 8), np.uint8)
    pair[12:18, 5, 4] = 1  # thin along y and z: only a cut across x leaves some on both sides
    pair[22:28, 5, 4] = 1
    _train, val_box, text = region_split(pair, ["hippocampus"])
    assert val_box[0].stop - val_box[0].start == 20 and "50 % of axis x" in text and "hippocampus 50 %" in text
    # the user's own slab: axis and end fixed, the size still chosen
    train_box, val_box, text = region_split(spread, ["thing"], slab="x-first")
    assert val_box[0] == slice(0, 6) and train_box[0] == slice(6, 12) and "the first 50 % of axis x" in text
    assert "slab size chosen" in text
    for bad in ("w-first", "x", "x-middle"):
        with pytest.raises(TrainingDataError, match="axis and an end"):
            region_split(spread, ["thing"], slab=bad)


def test_training_spacing_resampling_and_balanced_patches():
    card = Registry().get(BASE).card
    assert training_spacing(card) == (0.75, 0.75, 0.75)  # deepbet: a localizer's box resized to 256^3
    assert training_spacing(card, None) is None and training_spacing(card, 1) == (1.0, 1.0, 1.0)
    assert training_spacing({"input": {"spacing_mm": [1, 1, 2]}}) == (1.0, 1.0, 2.0)
    assert training_spacing({"input": {}}) is None  # no known scale: native
    with pytest.raises(ValueError):
        training_spacing(card, "big")
    label = torch.zeros((10, 12, 4), dtype=torch.uint8)
    label[2:6, 3:9, 1:3] = 2
    label[7:9, 1:4, :] = 1
    shape = resampled_shape(label.shape, (1.5, 1.5, 3.0), (0.75, 0.75, 0.75))
    assert shape == (20, 24, 16)
    up = resample_labels(label, shape, 2)
    assert up.dtype == torch.uint8 and set(up.unique().tolist()) == {0, 1, 2}
    assert abs(int((up == 2).sum()) - 8 * int((label == 2).sum()) * 2) < 0.25 * 16 * int((label == 2).sum())
    # patches centred on every class alike: the small class is in as many patches as the large one
    big = torch.zeros((64, 64, 64), dtype=torch.uint8)
    big[:, :, 32:] = 1
    big[5:8, 5:8, 5:8] = 2
    image = torch.rand(big.shape)
    sampler = PatchSampler([(image, big)], (32, 32, 32), patches_per_epoch=30, batch_size=30, augment=False)
    (_, y), = list(sampler.epoch(1))
    assert "each label equally often" in sampler.description
    assert int(((y == 2).flatten(1).any(1)).sum()) >= 5


def test_the_prior_head_starts_at_the_class_frequencies():
    tn = make_network(Registry().get(BASE), 2)
    weight = tn.net.tp_conv2.weight.detach().clone()
    freq = np.array([0.9, 0.09, 0.01])
    assert init_head_from_priors(tn.net, tn.head, freq)
    assert torch.allclose(tn.net.tp_conv2.weight, weight * 0.1)
    with torch.no_grad():
        out = tn.net(torch.rand(1, 1, 64, 64, 64))[0].mean((1, 2, 3))
    assert out.argmax() == 0 and abs(float(out[2]) - 0.01) < 0.01  # close to the priors from the start


# ---- the network ---------------------------------------------------------------------------------------
def test_the_head_is_new_and_from_scratch_starts_from_other_weights():
    base = Registry().get(BASE)
    base_state = base.state_dict()
    tuned = make_network(base, 1, transfer="encoder")  # 2 outputs, as deepbet: the head is still new
    scratch = make_network(base, 1, from_scratch=True)
    everything = make_network(base, 3, transfer="all")
    assert tuned.head == ["tp_conv2.weight", "tp_conv2.bias"] and tuned.softmax_in_network
    t, s, a = tuned.net.state_dict(), scratch.net.state_dict(), everything.net.state_dict()
    assert not torch.equal(t["tp_conv2.weight"], base_state["tp_conv2.weight"])
    assert torch.equal(t["init.0.weight"], base_state["init.0.weight"])  # pretrained encoder
    assert not torch.equal(s["init.0.weight"], base_state["init.0.weight"])  # random
    assert not torch.equal(t["up0.conv1.0.weight"], base_state["up0.conv1.0.weight"])  # encoder only
    assert torch.equal(a["up0.conv1.0.weight"], base_state["up0.conv1.0.weight"])  # transfer="all"
    assert not torch.equal(a["tp_conv2.bias"][:2], base_state["tp_conv2.bias"])
    assert a["tp_conv2.weight"].shape[1] == 4 and not scratch.pretrained
    assert all(k.startswith(("init.", "down")) for k in tuned.pretrained)


def test_another_architecture_only_when_the_card_allows_it(tmp_path):
    base = Registry().get(BASE)
    with pytest.raises(PackageError, match="trainable_architectures"):
        make_network(base, 2, architecture="monai.SwinUNETR")
    folder = tmp_path / "base"
    shutil.copytree(base.folder, folder)
    card = dict(base.card, id="swin-base", trainable_architectures={"monai.SwinUNETR": {"feature_size": 12}})
    write_card(folder, card)
    try:
        import einops  # noqa: F401 - monai's SwinUNETR needs it
    except ImportError:
        with pytest.raises(PackageError, match="einops"):
            make_network(ModelPackage.open(folder), 2, architecture="monai.SwinUNETR")
        pytest.skip("einops is not installed: SwinUNETR cannot be built (the error says so)")
    tn = make_network(ModelPackage.open(folder), 2, architecture="monai.SwinUNETR")
    assert type(tn.net).__name__ == "SwinUNETR" and not tn.pretrained and not tn.softmax_in_network
    assert tn.spec == {"name": "monai.SwinUNETR", "args": {"feature_size": 12, "spatial_dims": 3, "in_channels": 1,
                                                           "out_channels": 3}}
    assert "from scratch" in tn.notes[0] and encoder_parameters(tn.net)
    with torch.no_grad():
        assert tn.net.eval()(torch.zeros(1, 1, 32, 32, 64)).shape == (1, 3, 32, 32, 64)


# ---- training ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_writes_a_package_that_loads_and_infers_on_the_exact_grid(tmp_path, datalist):
    from medvision.ai.engine import InferenceOptions, infer_job
    from medvision.ai.preprocess import prepare

    data = TrainingData.from_datalist(datalist)
    records, result = _collect(train_job(config(tmp_path, patch_size=(64, 64, 64)), data))
    epochs = [r.preview for r in records if r.stage == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and [e["frozen"] for e in epochs] == [True, False]
    assert set(epochs[0]) >= {"epoch", "train_loss", "val_dice", "per_label", "lr", "seconds", "eta_s",
                              "best_val_dice", "frozen"}
    assert set(epochs[0]["per_label"]) == {"ball", "box"}
    assert result.epochs_run == 2 and len(result.history) == 2 and "hold-out" in result.split_description

    package = Registry().get("blobs-ft")
    assert package.folder == result.package_folder and package.version == "1"
    card = package.card
    assert card["architecture"]["args"]["out_channels"] == 3
    assert [la["name"] for la in card["labels"]] == ["ball", "box"]
    assert "resize_to" not in card["input"] and "localizer" not in card
    norm = card["input"]["normalization"]
    assert "quantiles_from" not in norm and norm["kind"] == "deepbet"
    assert card["inference"]["sliding_window"]["roi_size"] == [64, 64, 64]
    assert card["output"] == {"activation": "softmax", "in_network": True}
    assert card["license"] == "MIT" and (package.folder / "LICENSE").is_file()
    prov = card["provenance"]
    # the cases by number (their ids are file names, often patients' names) beside their content hashes
    assert prov["parent"] == "deepbet-t1-brain 1.0.2" and prov["cases"] == ["case-001", "case-002", "case-003"]
    assert prov["data_hashes"]["case-001"] == files_sha256([str(datalist.parent / "c1.nii.gz"),
                                                            str(datalist.parent / "c1_seg.nii.gz")])
    assert not {"c1", "c2", "c3"} & set(re.findall(r"\w+", json.dumps(prov)))
    assert set(prov["metrics"]["per_label"]) == {"ball", "box"} and "val_dice" in prov["metrics"]
    assert prov["created"] and prov["trained_by"] == "medvision train" and prov["epochs_run"] == 2
    assert prov["hyperparameters"]["lr"] == 1e-3
    assert prov["split"] == anonymous_cases({"split": result.split_description}, ["c1", "c2", "c3"])["split"]

    volume = data.cases[0].volume
    out = run_job(infer_job(package, volume, InferenceOptions(device="cpu")))
    assert out.labels.shape == volume.shape and np.allclose(out.labels.affine, volume.affine)
    assert [la.name for la in out.labels.table] == ["ball", "box"] and out.labels.array.max() <= 2
    # the engine prepares the image as training did: at the voxel size deepbet learnt at, same normalisation
    assert card["input"]["spacing_mm"] == [0.75, 0.75, 0.75] == prov["hyperparameters"]["spacing_mm_used"]
    image, _, spacing = data.cases[0].arrays("RAS")
    shape = resampled_shape(image.shape, spacing, card["input"]["spacing_mm"])
    prepared = prepare(card, volume).tensor[0, 0]
    trained = resample_image(normalize_for_training(card, image), shape)
    assert prepared.shape == trained.shape == (70, 64, 80)  # [x, y, z] 44 x 48 x 40 at 1.2 x 1 x 1.5 mm
    assert float((prepared - trained).abs().mean()) < 0.01  # normalised before or after resampling
    native = config(tmp_path, new_id="blobs-native", epochs=1, spacing_mm=None, workdir=str(tmp_path / "w2"))
    native_card = Registry().get(run_job(train_job(native, data)).package_id).card
    assert native_card["input"]["spacing_mm"] is None
    assert torch.allclose(prepare(native_card, volume).tensor[0, 0], normalize_for_training(native_card, image))


@pytest.mark.slow
def test_a_stopped_run_resumes_in_the_same_lineage(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, epochs=3)
    job = train_job(cfg, data)
    for record in job:
        if record.stage == "epoch":
            break
    job.close()  # the user cancels after epoch 1
    state = torch.load(Path(cfg.workdir) / ckpt.FILE, weights_only=True)
    assert state["epoch"] == 1 and len(state["lineage"]) == 1 and len(state["history"]) == 1
    assert {"model", "best_model", "optimizer", "scheduler", "scaler", "rng", "config", "run_id"} <= set(state)
    assert "blobs-ft" not in {p.id for p in Registry().packages()}

    records, result = _collect(train_job(cfg, data))
    assert any("resuming run" in r.message for r in records)
    assert [r.done for r in records if r.stage == "epoch"] == [2, 3]
    assert [h["epoch"] for h in result.history] == [1, 2, 3] and result.epochs_run == 3
    assert result.run_id == state["run_id"] and len(result.lineage) == 2
    assert result.lineage[1]["from_epoch"] == 1 and result.history[0] == state["history"][0]
    card = Registry().get("blobs-ft").card
    assert card["provenance"]["run_id"] == state["run_id"] and len(card["provenance"]["lineage"]) == 2
    # finished: the same config again starts a new run (the finished checkpoint is set aside)
    final = torch.load(Path(cfg.workdir) / ckpt.FILE, weights_only=True)
    assert final["finished"] and final["package"] == str(result.package_folder)


@pytest.mark.slow
def test_a_checkpoint_that_loads_but_holds_bad_contents_is_set_aside_and_a_new_run_starts(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    # (the head from the priors and few patches: only the checkpoint's checks matter here)
    cfg = config(tmp_path, epochs=3, head_init="prior", patches_per_epoch=8)
    job = train_job(cfg, data)
    for record in job:
        if record.stage == "epoch":
            break
    job.close()
    path = Path(cfg.workdir) / ckpt.FILE
    good = path.read_bytes()
    for damage in ("epoch-text", "epoch-huge", "wrong-shapes"):
        path.write_bytes(good)
        state = torch.load(path, weights_only=True)
        if damage == "epoch-text":
            state["epoch"] = "abc"
        elif damage == "epoch-huge":  # would install the untrained model as a finished one
            state["epoch"] = 10**9
        else:
            state["model"] = {k: torch.zeros(*(v.shape[:-1] or (1,)), 2) for k, v in state["model"].items()}
        torch.save(state, path)
        for old in Path(cfg.workdir).glob("checkpoint-bad*.pt"):
            old.unlink()
        job = train_job(cfg, data)
        for record in job:
            if record.stage == "epoch":
                break
        job.close()
        assert list(Path(cfg.workdir).glob("checkpoint-bad*.pt")), damage
        fresh = torch.load(path, weights_only=True)
        assert fresh["epoch"] == 1 and fresh["run_id"] != state["run_id"], damage
        assert "blobs-ft" not in {p.id for p in Registry().packages()}


def test_case_ids_become_numbers_in_the_card_unless_asked():
    prov = {"cases": ["Doe_John", "Roe_Jane"], "data_hashes": {"Doe_John": "ab", "Roe_Jane": "cd"},
            "split": "2 cases: training Doe_John, validation Roe_Jane", "parent": "Doe_John-model 1",
            "cross_validation": {"per_fold": [{"validation": ["Roe_Jane"]}]}, "note": "Doe_Johnny stays"}
    out = anonymous_cases(prov, ["Doe_John", "Roe_Jane"])
    assert out["cases"] == ["case-001", "case-002"] and out["data_hashes"] == {"case-001": "ab", "case-002": "cd"}
    assert out["split"] == "2 cases: training case-001, validation case-002"
    assert out["cross_validation"]["per_fold"][0]["validation"] == ["case-002"]
    assert out["parent"] == "Doe_John-model 1" and out["note"] == "Doe_Johnny stays"  # not a case id
    assert "anonymous" in out["case_names"]
    assert TrainConfig(base="b", new_id="n").case_names is False


@pytest.mark.slow
def test_k_fold_cross_validation_then_the_model_on_every_case(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, new_id="blobs-cv", folds=3, epochs=2, freeze_epochs=0, patience=1,
                 head_init="prior")  # (the probe and its check have tests of their own)
    records, result = _collect(train_job(cfg, data))
    runs = [r.preview["run"] for r in records if r.stage == "epoch" and r.preview]
    assert runs[0] == "fold 1 of 3" and runs[-1] == "the model (all cases)"
    assert [r for r in dict.fromkeys(runs)] == ["fold 1 of 3", "fold 2 of 3", "fold 3 of 3", "the model (all cases)"]
    assert all(r.message.startswith(("fold ", "the model")) for r in records)
    # every record says its run as fields (nobody parses the message)
    assert {(r.run, r.fold) for r in records} == {("fold 1 of 3", 1), ("fold 2 of 3", 2), ("fold 3 of 3", 3),
                                                  ("the model (all cases)", None)}
    assert [r.epoch for r in records if r.stage == "epoch" and r.run == "fold 1 of 3"] == [1, 2]

    cv = result.cross_validation
    folds = cv["per_fold"]
    assert sorted(c for f in folds for c in f["validation_cases"]) == ["c1", "c2", "c3"]
    dice = [f["val_dice"] for f in folds]
    assert all(d is not None for d in dice) and len({f["run_id"] for f in folds} | {result.run_id}) == 4
    assert cv["val_dice_mean"] == pytest.approx(np.mean(dice)) == result.best_val_dice
    assert cv["val_dice_sd"] == pytest.approx(np.std(dice, ddof=1))
    assert cv["final_epochs"] == max(1, int(np.median([f["best_epoch"] for f in folds]) + 0.5))
    # the model itself trained on every case, no validation: its last epoch
    assert result.epochs_run == cv["final_epochs"] and all(h["val_dice"] is None for h in result.history)
    assert "all 3 cases for training" in result.split_description and "3-fold" in result.split_description

    card = Registry().get("blobs-cv").card
    prov = card["provenance"]
    assert prov["cross_validation"]["per_fold"] == anonymous_cases({"f": folds}, ["c1", "c2", "c3"])["f"]
    assert prov["cases"] == ["case-001", "case-002", "case-003"]
    assert prov["metrics"]["val_dice"] == result.best_val_dice and "3-fold" in prov["metrics"]["validation"]
    assert set(prov["metrics"]["per_label"]) == {"ball", "box"}
    assert prov["hyperparameters"]["folds"] == 3 and prov["epochs_run"] == cv["final_epochs"]
    # the folds are done (the card holds them): their checkpoints go, the same command again is a new one
    for f in (1, 2, 3):
        assert not (Path(cfg.workdir) / f"fold-{f}").exists()
    assert torch.load(Path(cfg.workdir) / "final" / ckpt.FILE, weights_only=True)["finished"]


def test_the_folds_summary_chooses_the_models_epochs_by_the_folds_that_had_a_dice():
    from medvision.ai.training.config import TrainResult
    from medvision.ai.training.crossval import summarise

    data = _fake_cases(3)
    splits = data.folds(3, seed=0)
    results = [TrainResult(None, dice, {"thing": dice}, 10, [{"seconds": 2.0}] * 10, "", best_epoch=epoch,
                           head_init_used=head)
               for dice, epoch, head in ((0.5, 3, "probe"), (None, 10, "prior"), (0.7, 6, "probe"))]
    summary = summarise(results, splits, ["thing"], seed=0)
    assert summary["final_epochs"] == 5  # the median of 3 and 6 (rounded half up), not of 3, 10 and 6
    assert summary["val_dice_mean"] == pytest.approx(0.6) and summary["val_dice_sd"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["per_label_mean"] == {"thing": pytest.approx(0.6)} and summary["head_init_used"] == "probe"
    assert "over 2 of the 3 folds (the others' cases hold none of the labels)" in summary["description"]
    assert summary["seconds"] == 60.0 and [f["fold"] for f in summary["per_fold"]] == [1, 2, 3]
    assert [f["validation_cases"] for f in summary["per_fold"]] == [[p.case for p in s.val] for s in splits]


@pytest.mark.slow
def test_a_stopped_cross_validation_resumes_in_its_fold_and_keeps_the_finished_ones(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, new_id="blobs-cv2", folds=2, epochs=1, freeze_epochs=0, head_init="prior")
    job = train_job(cfg, data)
    for record in job:
        if record.stage == "validation" and record.message.startswith("fold 2 of 2"):
            break  # stopped in fold 2's first epoch: fold 1 is finished
    job.close()
    first = torch.load(Path(cfg.workdir) / "fold-1" / ckpt.FILE, weights_only=True)
    assert first["finished"] and not (Path(cfg.workdir) / "fold-2" / ckpt.FILE).exists()
    assert "blobs-cv2" not in {p.id for p in Registry().packages()}

    cfg = config(tmp_path, new_id="blobs-cv2", folds=2, epochs=2, freeze_epochs=0, head_init="prior")  # another
    # budget:
    job = train_job(cfg, data)  # fold 1 is trained again
    stages = []
    for record in job:
        stages.append(record.message.split(":")[0] + " " + record.stage)
        if record.stage == "validation" and record.message.startswith("fold 2 of 2"):
            break
    job.close()
    assert "fold 1 of 2 training" in stages
    first = torch.load(Path(cfg.workdir) / "fold-1" / ckpt.FILE, weights_only=True)
    assert first["finished"] and first["epoch"] == 2

    records, result = _collect(train_job(cfg, data))
    trained = {r.message.split(":")[0] for r in records if r.stage == "training"}
    assert trained == {"fold 2 of 2", "the model (all cases)"}  # fold 1 is not trained again
    assert any(r.message == "fold 1 of 2: finished earlier" for r in records)
    assert result.cross_validation["per_fold"][0]["run_id"] == first["run_id"]
    assert result.cross_validation["per_fold"][0]["val_dice"] == first["best_val_dice"]
    assert any(n.startswith("fold 1 of 2 finished in an earlier session") for n in result.notes)
    assert Registry().get("blobs-cv2").card["provenance"]["cross_validation"]["folds"] == 2


@pytest.mark.slow
def test_the_encoder_is_frozen_first_then_trained(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, epochs=2, freeze_epochs=1, freeze_part="encoder")
    base = Registry().get(BASE).state_dict()
    start = make_network(Registry().get(BASE), 2, seed=cfg.seed).net.state_dict()
    states = {}
    for record in train_job(cfg, data):
        if record.stage == "epoch":
            states[record.done] = torch.load(Path(cfg.workdir) / ckpt.FILE, weights_only=True)["model"]
    encoder = [k for k in base if k.startswith(("init.", "down"))]
    assert encoder and all(torch.equal(states[1][k], base[k]) for k in encoder)  # frozen in epoch 1
    assert not torch.equal(states[1]["tp_conv2.weight"], start["tp_conv2.weight"])  # the head learned
    assert not torch.equal(states[1]["up0.conv1.0.weight"], start["up0.conv1.0.weight"])  # and the decoder
    assert any(not torch.equal(states[2][k], base[k]) for k in encoder)  # unfrozen in epoch 2


@pytest.mark.slow
def test_a_linear_probe_first_holds_every_pretrained_layer_then_tunes_them(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, epochs=2, freeze_epochs=1, freeze_part="body", transfer="all")
    base = Registry().get(BASE).state_dict()
    tn = make_network(Registry().get(BASE), 2, seed=cfg.seed, transfer="all")
    start = tn.net.state_dict()
    states = {}
    for record in train_job(cfg, data):
        if record.stage == "epoch":
            states[record.done] = torch.load(Path(cfg.workdir) / ckpt.FILE, weights_only=True)["model"]
    assert tn.pretrained and all(torch.equal(states[1][k], base[k]) for k in tn.pretrained)  # held in epoch 1
    assert all(not torch.equal(states[1][k], start[k]) for k in tn.head)  # only the head learned
    decoder = [k for k in tn.pretrained if k.startswith("up")]
    assert decoder and any(not torch.equal(states[2][k], base[k]) for k in decoder)  # tuned in epoch 2
    assert any(not torch.equal(states[2][k], base[k]) for k in tn.pretrained if k.startswith("down"))
    with pytest.raises(ValueError, match="freeze_part"):
        next(x for x in train_job(config(tmp_path, freeze_part="decoder"), data) if x.stage == "training")


class _Tiny(torch.nn.Module):
    """A body (a 1x1x1 convolution at half resolution) and a head that up-samples each voxel."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.AvgPool3d(2), torch.nn.Conv3d(1, 6, 1), torch.nn.Tanh())
        self.head = head

    def forward(self, x):
        return self.head(self.body(x))


def _bands(seed: int, n: int = 4):
    """Batches of (image, labels): three classes by intensity band, constant over 2x2x2 blocks."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        low = torch.rand(2, 1, 8, 8, 8, generator=g)
        image = torch.nn.functional.interpolate(low, scale_factor=2)
        out.append((image, (image > 0.33).long() + (image > 0.66).long()))
    return out


@pytest.mark.parametrize("kind", ["transposed", "1x1"])
def test_the_probe_fits_the_head_alone_on_the_bodys_features(kind):
    from medvision.ai.training.probe import fit_head_probe

    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=2)  # noqa: E731
    if kind == "transposed":  # deepbet's head: each low-resolution voxel to a 2x2x2 block
        net = _Tiny(torch.nn.ConvTranspose3d(6, 3, 2, stride=2))
        forward = net.forward
    else:  # a 1x1x1 convolution at full resolution
        net = _Tiny(torch.nn.Conv3d(6, 3, 1))
        forward = lambda x: net.head(net.body(up(x)))  # noqa: E731
        after_head = lambda x: up(net.head(net.body(x)))  # noqa: E731
        assert fit_head_probe(net, after_head, ["head.weight", "head.bias"], _bands(0), 3) is None  # not the logits
    body = {k: v.clone() for k, v in net.body.state_dict().items()}

    def accuracy(batches):
        with torch.no_grad():
            return float(np.mean([(forward(x).argmax(1) == y[:, 0]).float().mean() for x, y in batches]))

    before = accuracy(_bands(1))
    probe = fit_head_probe(net, forward, ["head.weight", "head.bias"], _bands(0), 3)
    assert probe is not None and probe["loss_after"] < probe["loss_before"] and probe["patches"] == 8
    assert probe["accuracy"] > 0.8 and accuracy(_bands(1)) > max(0.8, before + 0.2)  # on patches it never saw
    assert all(torch.equal(v, body[k]) for k, v in net.body.state_dict().items())  # the body untouched


def test_the_probe_stops_once_the_loss_has_settled_and_not_while_it_falls():
    from medvision.ai.training.probe import fit_head_probe

    g = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 3, generator=g)
    batches = []
    for _ in range(4):  # six random features per low-resolution voxel; the classes a noisy linear function of them
        x = torch.randn(2, 6, 8, 8, 8, generator=g)
        scores = torch.einsum("bcdhw,ck->bkdhw", x, mix) + 1.5 * torch.randn(2, 3, 8, 8, 8, generator=g)
        y = torch.nn.functional.interpolate(scores.argmax(1, keepdim=True).float(), scale_factor=2).long()
        batches.append((x, y))

    def fit(steps):
        torch.manual_seed(0)  # the same starting head
        net = torch.nn.Sequential()
        net.add_module("head", torch.nn.ConvTranspose3d(6, 3, 2, stride=2))
        return fit_head_probe(net, net.forward, ["head.weight", "head.bias"], batches, 3, steps=steps)

    short, long = fit(8), fit(3000)
    assert short["steps"] == 8 and not short["stopped_early"]  # still falling: every step taken
    assert 8 < long["steps"] < 3000 and long["loss_after"] < short["loss_after"]  # settled: stopped there
    assert fit(long["steps"] + 100)["steps"] == long["steps"]  # at the same step whatever the limit


def test_a_head_that_mixes_neighbouring_voxels_is_not_probed():
    from medvision.ai.training.probe import fit_head_probe

    net = _Tiny(torch.nn.ConvTranspose3d(6, 3, 3, stride=2, padding=1, output_padding=1))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    assert fit_head_probe(net, net.forward, ["head.weight", "head.bias"], _bands(0), 3) is None
    assert fit_head_probe(net, net.forward, ["head.weight", "body.1.bias"], _bands(0), 3) is None
    assert all(torch.equal(v, start[k]) for k, v in net.state_dict().items())


def test_training_with_a_probed_head_says_so(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, epochs=1, freeze_epochs=0, transfer="all", head_init="probe", patches_per_epoch=4)
    result = run_job(train_job(cfg, data))
    note = next(n for n in result.notes if "linear probe" in n)
    assert "pretrained features of 16 training patches" in note and result.best_val_dice is not None
    card = json.loads((Path(result.package_folder) / "model.json").read_text())
    assert card["provenance"]["hyperparameters"]["head_init_used"] == "probe"
    with pytest.raises(ValueError, match="head_init"):
        next(x for x in train_job(config(tmp_path, head_init="copy"), data) if x.stage == "training")


# ---- out of GPU memory -----------------------------------------------------------------------------------
def _gpu_fills_up(monkeypatch) -> dict:
    """The training loss raises CUDA's out-of-memory error while ``full["on"]``."""
    from monai.losses import DiceCELoss

    full = {"on": False}
    real = DiceCELoss.forward

    def forward(self, *args, **kwargs):
        if full["on"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DiceCELoss, "forward", forward)
    return full


@pytest.mark.slow
def test_out_of_gpu_memory_while_training_keeps_the_finished_epoch_and_the_run_resumes(tmp_path, datalist,
                                                                                        monkeypatch):
    from medvision.ai.memory import is_out_of_memory

    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, epochs=2, patches_per_epoch=8)
    full = _gpu_fills_up(monkeypatch)
    with pytest.raises(RuntimeError, match="out of GPU memory while training; epoch 1's checkpoint is kept") as err:
        for record in train_job(cfg, data):
            if record.stage == "epoch":
                full["on"] = True  # the GPU fills up in epoch 2
    assert "--device" not in str(err.value) and "device cpu" in str(err.value) and is_out_of_memory(err.value)
    assert torch.load(Path(cfg.workdir) / ckpt.FILE, weights_only=True)["epoch"] == 1
    full["on"] = False  # e.g. on the CPU, or with the other program closed: the same run goes on
    records, result = _collect(train_job(cfg, data))
    assert [r.done for r in records if r.stage == "epoch"] == [2]
    assert [h["epoch"] for h in result.history] == [1, 2] and len(result.lineage) == 2
    # out of memory before any epoch finished says so
    full["on"] = True
    with pytest.raises(RuntimeError, match="out of GPU memory while training; no epoch had finished yet"):
        run_job(train_job(config(tmp_path, new_id="blobs-oom", epochs=1, patches_per_epoch=8,
                                 workdir=str(tmp_path / "w2")), data))


def test_validation_out_of_gpu_memory_stitches_in_cpu_memory():
    from medvision.ai.training import validation

    calls = []

    def sliding(x, roi, batch, predictor, **kw):
        calls.append((x.device.type, batch, kw.get("sw_device"), kw.get("device")))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return torch.ones(1, 2, *x.shape[2:])

    # "meta" stands in for the GPU here: a device that is not the CPU
    out = validation.sliding_windows(sliding, torch.zeros(8, 8, 8), (8, 8, 8), 4, None, "meta")
    assert calls == [("meta", 4, None, None), ("cpu", 1, "meta", "cpu")] and out.shape == (1, 2, 8, 8, 8)
    calls.clear()
    with pytest.raises(torch.cuda.OutOfMemoryError):  # on the CPU nothing is retried
        validation.sliding_windows(sliding, torch.zeros(8, 8, 8), (8, 8, 8), 4, None, "cpu")
    assert len(calls) == 1


def test_the_training_process_reports_running_out_of_memory(tmp_path, datalist, monkeypatch, medvision_home):
    import queue
    import threading

    from medvision.ai.train_process import _child

    _gpu_fills_up(monkeypatch)["on"] = True
    out = queue.Queue()
    cfg = dict(base=BASE, new_id="oom", epochs=1, device="cpu", patches_per_epoch=4, patch_size=(32, 32, 32),
               workdir=str(tmp_path / "w"))
    _child(cfg, {"datalist": str(datalist)}, out, threading.Event(), threading.Event())  # in this process
    messages = []
    while not out.empty():
        messages.append(out.get())
    kind, payload = messages[-1]
    assert kind == "error" and payload["out_of_memory"] and "out of GPU memory while training" in payload["message"]


# ---- a full disk ---------------------------------------------------------------------------------------------
def _disk_fills_up(monkeypatch) -> dict:
    """Flushing a file to the disk fails with ENOSPC while ``full["on"]`` is True (or returns True), as
    on a full disk."""
    import errno

    full = {"on": False}
    real = os.fsync

    def fsync(fd):
        on = full["on"]
        if on is True or (callable(on) and on()):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return full


def test_a_full_disk_leaves_the_previous_checkpoint_whole_and_says_so(tmp_path, monkeypatch):
    full = _disk_fills_up(monkeypatch)
    ckpt.save_checkpoint(tmp_path, {"epoch": 1, "model": {"w": torch.ones(3)}})
    full["on"] = True
    with pytest.raises(ckpt.CheckpointError, match=r"could not write the training checkpoint .*: the disk is full "
                                                     r"\(\d+ MiB free, \d+ MiB needed\)"):
        ckpt.save_checkpoint(tmp_path, {"epoch": 2, "model": {"w": torch.zeros(3)}})
    state = ckpt.load_checkpoint(tmp_path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.FILE]  # no temporary file left behind


@pytest.mark.slow
def test_training_on_a_full_disk_stops_clearly_and_goes_on_once_there_is_room(tmp_path, datalist, monkeypatch):
    import safetensors.torch

    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, new_id="blobs-full", epochs=2, patches_per_epoch=8)
    full = _disk_fills_up(monkeypatch)
    with pytest.raises(RuntimeError, match="the disk is full.*; epoch 1's checkpoint is kept"):
        for record in train_job(cfg, data):
            if record.stage == "epoch":
                full["on"] = True  # the disk fills up during epoch 2
    assert torch.load(Path(cfg.workdir) / ckpt.FILE, weights_only=True)["epoch"] == 1
    # room for the checkpoint, but not for the new model: the training is kept
    full["on"] = False
    real_save = safetensors.torch.save_file

    def no_room(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", no_room)
    with pytest.raises(RuntimeError, match="could not write the new model into .*: the disk is full.*the training is "
                                           "kept \\(epoch 2's checkpoint\\)"):
        run_job(train_job(cfg, data))
    with pytest.raises(PackageError):  # nothing half-written among the user's models
        Registry().get("blobs-full")
    assert not [p for p in user_dir().iterdir() if "blobs-full" in p.name]
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    # room for the model, but none left after it for marking the run finished
    full["on"] = lambda: any(p.name.startswith("blobs-full-") for p in user_dir().iterdir())
    records, result = _collect(train_job(cfg, data))
    assert not [r for r in records if r.stage == "epoch"]  # written from the checkpoint, not trained again
    assert result.epochs_run == 2 and Registry().get("blobs-full").card["provenance"]["epochs_run"] == 2
    assert not (Path(cfg.workdir) / ckpt.FILE).exists()  # set aside: the same settings again start a new run
    assert len(list(Path(cfg.workdir).glob("checkpoint-*-finished.pt"))) == 1


# ---- on an NVIDIA GPU (skipped without one: CI has none; run these on a machine that has one) -------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@cuda
def test_on_cuda_training_uses_mixed_precision_and_the_new_model_runs_there(tmp_path, datalist):
    from medvision.ai.engine import infer_job
    from medvision.ai.options import InferenceOptions

    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, new_id="blobs-cuda", epochs=2, device="cuda", patches_per_epoch=16)
    result = run_job(train_job(cfg, data))
    state = torch.load(Path(cfg.workdir) / ckpt.FILE, weights_only=True)
    assert state["scaler"]["scale"] > 0  # the grad scaler ran (AMP on) and is in the checkpoint
    assert result.lineage[0]["device"] == "cuda" and all(np.isfinite(h["train_loss"]) for h in result.history)
    volume = Volume(blobs(1)[0], affine(), None, {"modality": "MR"})
    package = Registry().get("blobs-cuda")
    gpu = run_job(infer_job(package, volume, InferenceOptions(device="cuda")))
    cpu = run_job(infer_job(package, volume, InferenceOptions(device="cpu")))
    assert gpu.device == "cuda" and cpu.device == "cpu" and gpu.labels.array.shape == SHAPE
    # float16 on the GPU, float32 on the CPU: the same labels but for a few voxels on the edges
    assert np.mean(gpu.labels.array == cpu.labels.array) > 0.99
    assert float(np.abs(gpu.probability - cpu.probability).mean()) < 0.01


@cuda
def test_on_cuda_running_out_of_memory_is_reported_and_the_next_run_works(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 2**30 / total))  # a 1 GiB GPU
    try:
        big = config(tmp_path, new_id="blobs-oom", epochs=1, device="cuda", batch_size=64, patches_per_epoch=128,
                     head_init="prior", workdir=str(tmp_path / "big"))
        with pytest.raises(RuntimeError, match="out of GPU memory while training; no epoch had finished yet"):
            run_job(train_job(big, data))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    small = config(tmp_path, new_id="blobs-oom", epochs=1, device="cuda", patches_per_epoch=8, head_init="prior",
                   workdir=str(tmp_path / "small"))
    assert run_job(train_job(small, data)).epochs_run == 1  # the GPU is usable again in the same process


# ---- the command ---------------------------------------------------------------------------------------
def _interrupted(cmd, env, prefix: str, group: bool = False) -> tuple[int, list[str]]:
    """Run ``cmd``; Ctrl+C (SIGINT: to its whole process group with ``group``, as a terminal sends it)
    once a line of its output starts with ``prefix``. Returns its exit code and its lines."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=group)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix) and group:
            os.killpg(proc.pid, signal.SIGINT)
        elif line.startswith(prefix):
            proc.send_signal(signal.SIGINT)
    return proc.wait(120), lines


@pytest.mark.slow
def test_cli_train_end_to_end_with_ctrl_c_and_resume(tmp_path, datalist, medvision_home):
    env = dict(os.environ, MEDVISION_HOME=str(medvision_home), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "medvision.cli", "train", "--base", BASE, "--datalist", str(datalist),
           "-o", "cli-blobs", "--epochs", "3", "--patch", "32", "--patches-per-epoch", "16", "--device", "cpu",
           "--freeze-epochs", "1", "--workdir", str(tmp_path / "work"), "-q"]
    code, lines = _interrupted(cmd, env, "epoch 1/3")
    assert code == 130, "".join(lines)
    assert any("run the same command again to resume" in ln for ln in lines), "".join(lines)
    assert "val Dice" in next(ln for ln in lines if ln.startswith("epoch 1/3"))

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "resuming run" in out and "epoch 3/3" in out and "epoch 1/3" not in out
    assert "new model cli-blobs 1" in out and "best validation Dice" in out
    card = json.loads((medvision_home / "data" / "models" / "cli-blobs-1" / "model.json").read_text())
    assert len(card["provenance"]["lineage"]) == 2 and card["weights"]["sha256"] == sha256_of(
        medvision_home / "data" / "models" / "cli-blobs-1" / "weights.safetensors")


@pytest.mark.slow
def test_cli_cross_validation_stopped_in_a_fold_resumes_there(tmp_path, datalist, medvision_home, capsys):
    env = dict(os.environ, MEDVISION_HOME=str(medvision_home), PYTHONUNBUFFERED="1")
    args = ["train", "--base", BASE, "--datalist", str(datalist),
            "-o", "cli-cv", "--epochs", "1", "--patch", "32", "--patches-per-epoch", "8", "--device", "cpu",
            "--folds", "2", "--head-init", "prior", "--spacing", "1.5", "--workdir", str(tmp_path / "work"), "-q"]
    cmd = [sys.executable, "-m", "medvision.cli", *args]
    for bad, said in ((["--folds", "4"], "4 folds need at least 4 cases and there are 3"),
                      (["--spacing", "fine"], "--spacing fine: give auto, native, or a voxel size in mm")):
        refused = run_cli(capsys, *args, *bad)  # (refused before anything runs: in this process)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    code, lines = _interrupted(cmd, env, "fold 2 of 2: fine-tuning on cpu")
    assert code == 130, "".join(lines)
    assert any(ln.startswith("fold 1 of 2: epoch 1/1") and "val Dice" in ln for ln in lines), "".join(lines)
    assert any("stopped in fold 2 of 2 before an epoch had finished: run the same command again to resume (the "
               "folds that finished are kept)" in ln for ln in lines), "".join(lines)

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "fold 1 of 2: finished earlier" in out and "fold 1 of 2: epoch" not in out
    assert "fold 2 of 2: epoch 1/1" in out and "the model (all cases): epoch 1/1  loss" in out
    assert "no validation" in out and "cross-validated Dice" in out and "new model cli-cv 1" in out
    card = json.loads((medvision_home / "data" / "models" / "cli-cv-1" / "model.json").read_text())
    assert card["input"]["spacing_mm"] == [1.5, 1.5, 1.5] and card["provenance"]["cross_validation"]["folds"] == 2


def test_one_process_is_a_group_of_one_whatever_world_size_says(monkeypatch):
    from medvision.ai.training.distributed import Group

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "4")  # left by something else: not torchrun
    group = Group.from_environment("cpu")
    assert (group.rank, group.world, group.main, group.several) == (0, 1, True, False)
    assert group.share(13) == 13 and group.mean(0.5) == 0.5 and group.broadcast("x") == "x"
    assert Group(1, 4).share(13) == 4 and not Group(1, 4).main


@pytest.mark.slow
def test_data_parallel_training_over_two_processes_with_torchrun(tmp_path, datalist, medvision_home):
    """torchrun, two CPU processes (gloo): one report, one package, the weights identical in both
    processes (the trainer checks it and fails otherwise); stopped after epoch 1, the same command resumes."""
    env = dict(os.environ, MEDVISION_HOME=str(medvision_home), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "medvision.cli", "train",
           "--base", BASE, "--datalist", str(datalist), "-o", "ddp-blobs", "--epochs", "3", "--patch", "32",
           "--patches-per-epoch", "16",
           "--device", "cpu", "--workdir", str(tmp_path / "work"), "-q"]
    _code, lines = _interrupted(cmd, env, "epoch 1/3", group=True)  # Ctrl+C: torchrun ends both processes
    assert sum(ln.startswith("epoch 1/3") for ln in lines) == 1, "".join(lines)  # process 0 alone reports
    assert torch.load(tmp_path / "work" / ckpt.FILE, weights_only=True)["epoch"] >= 1

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "resuming run" in out and out.count("epoch 3/3") == 1 and "epoch 1/3" not in out
    assert out.count("new model ddp-blobs 1") == 1
    assert "data-parallel over 2 processes (torchrun): each draws 8 of the epoch's patches" in out
    card = json.loads((medvision_home / "data" / "models" / "ddp-blobs-1" / "model.json").read_text())
    assert card["provenance"]["processes"] == 2 and len(card["provenance"]["lineage"]) == 2


def test_the_default_keeps_a_probed_head_only_when_it_beats_the_class_frequencies_on_validation(tmp_path, datalist):
    data = TrainingData.from_datalist(datalist)
    cfg = config(tmp_path, epochs=1, freeze_epochs=0, transfer="all", patches_per_epoch=4)  # head_init "auto"
    result = run_job(train_job(cfg, data))
    note = next(n for n in result.notes if "linear probe" in n)
    better = "predicts the labels better than the class frequencies" in note
    assert better or "predicts the labels worse than the class frequencies" in note
    probe_ce, prior_ce = (float(v) for v in note.split("cross-entropy ")[1].split(" nats")[0].split(" against "))
    assert better == (probe_ce < prior_ce)
    card = json.loads((Path(result.package_folder) / "model.json").read_text())
    assert card["provenance"]["hyperparameters"]["head_init_used"] == ("probe" if better else "prior")
