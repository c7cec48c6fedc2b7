"""A training run's time budget covers the whole run: loading, the linear probe (bounded by a share of
the budget, stopping early), every epoch's iterations, validation and checkpoint, and the package.
Checked on a real case (MRIcrop, ../shared/data) with a short budget, measured from the run's start."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from medvision.ai.training.budget import SLACK, Budget, window_count
from medvision.ai.training.config import TrainConfig
from medvision.ai.training.data import TrainingData
from medvision.ai.training.job import train_job

from .test_training import _bands, _Tiny


@pytest.fixture
def one_thread():
    """One torch thread (two fight over a shared 2-core machine: several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(78, 69, 64), (64, 64, 64), (30, 100, 65), (129, 33, 200)])
def test_the_windows_counted_are_monais(shape, one_thread):
    from monai.inferers import sliding_window_inference

    calls = []

    def predictor(x):
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros((1, 1, *shape)), (64, 32, 32), 1, predictor, overlap=0.5)
    assert window_count(shape, (64, 32, 32)) == len(calls)


def test_room_is_what_the_run_measured_against_what_is_left():
    budget = Budget(1.0, start=time.perf_counter() - 40)  # 20 s of 60 left
    assert budget.room_for_iteration(validate=True)  # nothing measured yet
    budget.saw_iteration(2.0, 1)
    budget.saw_validation(12.0)
    budget.saw_checkpoint(1.0)  # 1 s, and 3 s for the package and the finished mark
    assert budget.room_for_iteration(validate=False)  # 2 + 1 + 3 (+ 3 s slack) < 20
    assert not budget.room_for_iteration(validate=True)  # 2 + 12 + 1 + 3 + 3 > 20 - a little
    assert budget.room_for_validation()  # 12 + 1 + 3 + 3 < 20 - a little
    budget.saw_validation(5.0)  # the longest validation seen counts
    assert budget.validation_s == 12.0 and SLACK * budget.seconds == pytest.approx(3.0)
    assert not Budget(None).limited and Budget(None).room_for_iteration(True) and Budget(None).part(0.2) is None


def test_the_probe_stops_at_its_deadline(one_thread):
    from medvision.ai.training.probe import fit_head_probe

    net = _Tiny(torch.nn.ConvTranspose3d(6, 3, 2, stride=2))
    full = fit_head_probe(net, net.forward, ["head.weight", "head.bias"], _bands(0), 3, steps=50)
    assert full["patches"] == 8 and full["steps"] == 50 and not full["stopped_early"]
    net = _Tiny(torch.nn.ConvTranspose3d(6, 3, 2, stride=2))
    cut = fit_head_probe(net, net.forward, ["head.weight", "head.bias"], _bands(0), 3, deadline=time.perf_counter())
    assert cut["patches"] == 2 and cut["steps"] == 1 and cut["stopped_early"]  # the first batch, one step
    assert cut["loss_after"] < cut["loss_before"] and cut["voxels"] < full["voxels"]


@pytest.mark.slow
def test_a_short_budget_bounds_the_whole_run_on_a_real_case(shared_data, tmp_path):
    """0.15 min on MRIcrop (five of its labels): the run, from its start to the package written, ends
    within the budget and 10 %, having trained and said why it stopped; the card has the five labels."""
    data_dir = shared_data / "labeled"
    asked = {1: "vent-lat", 4: "hippo-R", 5: "hippo-L", 7: "caudates", 8: "corpus-callosum"}
    data = TrainingData.from_datalist({"labels": {"0": "background", **{str(v): n for v, n in asked.items()}},
                                       "training": [{"image": str(data_dir / "MRIcrop-orig.gipl.gz"),
                                                     "label": str(data_dir / "MRIcrop-seg.gipl.gz")}]})
    minutes = 0.15
    config = TrainConfig(base="deepbet-t1-brain", new_id="mricrop-budget", minutes=minutes, device="cpu",
                         patch_size=(32, 32, 32), spacing_mm=None, threads=1, workdir=str(tmp_path / "work"),
                         patience=10_000)  # only the budget ends it (a fast machine met early stopping first)
    job = train_job(config, data)
    started = time.perf_counter()  # the run's start: its first step
    records = [next(job)]
    try:
        while True:
            records.append(next(job))
    except StopIteration as stop:
        result = stop.value
    took = time.perf_counter() - started
    assert took <= 1.1 * minutes * 60, f"{took:.1f} s for a budget of {minutes * 60:.0f} s"
    assert result.epochs_run >= 1 and result.stopped_because == f"time budget of {minutes:g} min used"
    assert any(r.stage == "training" for r in records)
    card = json.loads((Path(result.package_folder) / "model.json").read_text())
    assert [la["name"] for la in card["labels"]] == list(asked.values())
