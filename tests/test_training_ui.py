"""Fine-tuning from the window: the training dialog runs a real training in another process (live
curves, the new model in the registry at once), a killed training process is reported while the
window keeps working, and two models are compared on a case (Dice by label name)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from medvision.core.labels import LabelMap, LabelTable
from medvision.core.volume import Volume
from medvision.io import save
from medvision.io.labels import save_labels
from medvision.ui.dialogs.compare import dice_by_name

from .qtutil import click, open_and_wait, view_point


def tiny_case(folder, k: int, shape=(40, 40, 40)):
    """A T1-like head: bright ellipsoid with two darker blobs labelled 1 and 2 (numbered per case)."""
    rng = np.random.default_rng(k)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    c = np.asarray(shape) / 2
    head = ((z - c[0]) / 17) ** 2 + ((y - c[1]) / 17) ** 2 + ((x - c[2]) / 17) ** 2 < 1
    a = ((z - c[0]) ** 2 + (y - c[1] + 6) ** 2 + (x - c[2] - 5) ** 2) < 25
    b = ((z - c[0] + 3) ** 2 + (y - c[1] - 6) ** 2 + (x - c[2] + 5) ** 2) < 16
    image = np.where(head, 400, 0) + np.where(a, -200, 0) + np.where(b, 250, 0) + rng.normal(0, 10, shape)
    labels = np.zeros(shape, np.uint8)
    labels[a], labels[b] = 1, 2
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    save(Volume(image.astype(np.int16), affine, None, {"modality": "MR"}), folder / f"img{k}.nii.gz")
    table = LabelTable()
    table.add("dark blob", value=1)
    table.add("bright blob", value=2)
    save_labels(LabelMap(labels, affine, table), folder / f"lab{k}.nii.gz")
    return {"image": str(folder / f"img{k}.nii.gz"), "label": str(folder / f"lab{k}.nii.gz"), "case": f"c{k}"}


@pytest.fixture
def datalist(tmp_path):
    items = [tiny_case(tmp_path, k) for k in range(3)]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"labels": {"dark blob": 1, "bright blob": 2}, "training": items}))
    return path


def test_dice_by_name():
    t1, t2 = LabelTable(), LabelTable()
    t1.add("liver", value=1)
    t1.add("spleen", value=2)
    t2.add("spleen", value=5)
    a = LabelMap(np.array([[[1, 1, 2, 2, 0]]], np.uint8), np.eye(4), t1)
    b = LabelMap(np.array([[[0, 0, 5, 5, 5]]], np.uint8), np.eye(4), t2)
    assert dice_by_name(a, b) == {"liver": None, "spleen": pytest.approx(0.8)}


@pytest.mark.slow
def test_training_dialog_trains_a_new_model_in_another_process(qtbot, window, datalist, screenshot_dir):
    panel = window.annotating.models
    assert panel.select("deepbet-t1-brain")
    dialog = panel.open_training()
    assert dialog.base_combo.currentData() == "deepbet-t1-brain"  # the model chosen in the dock
    dialog.datalist_edit.setText(str(datalist))
    dialog.datalist_radio.setChecked(True)
    assert "3 cases" in dialog.cases_label.text()
    dialog.id_edit.setText("blobs")
    dialog.epochs_spin.setValue(2)
    assert dialog.start()
    assert dialog.process.pid is not None and dialog.process.running
    qtbot.waitUntil(lambda: dialog.final is not None, timeout=600_000)
    kind, payload = dialog.final
    assert kind == "done", (kind, payload)
    assert len(dialog.history) == 2 and dialog.dice_curve.getData()[0] is not None
    assert dialog.label_table.rowCount() == 2
    dialog.grab().save(str(screenshot_dir / "training_dialog.png"))
    # usable at once in the panel (and the registry)
    assert panel.package is not None and panel.package.id == "blobs"
    assert panel.package.card["provenance"]["parent"].startswith("deepbet-t1-brain")


@pytest.mark.slow
def test_the_dialog_cross_validates_then_trains_the_model_on_every_case(qtbot, window, datalist, screenshot_dir):
    panel = window.annotating.models
    assert panel.select("deepbet-t1-brain")  # (the synthetic blobs are no brain for brainchop's crop)
    dialog = panel.open_training()
    one = datalist.parent / "one.json"  # a single case: no k-fold offered
    one.write_text(json.dumps(dict(json.loads(datalist.read_text()), training=json.loads(datalist.read_text())
                                   ["training"][:1])))
    dialog.datalist_edit.setText(str(one))
    dialog.datalist_radio.setChecked(True)
    assert not dialog.validation_combo.model().item(1).isEnabled() and not dialog.folds_spin.isEnabled()
    dialog.datalist_edit.setText(str(datalist))
    assert dialog.validation_combo.model().item(1).isEnabled() and dialog.folds_spin.maximum() == 3
    dialog.validation_combo.setCurrentIndex(1)
    assert dialog.folds_spin.isEnabled()
    dialog.folds_spin.setValue(2)
    dialog.id_edit.setText("blobs-cv")
    dialog.epochs_spin.setValue(2)
    assert dialog.config()[0]["folds"] == 2
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.final is not None, timeout=900_000)
    kind, payload = dialog.final
    assert kind == "done", (kind, payload)
    assert list(dialog.run_curves) == ["fold 1 of 2", "fold 2 of 2", "the model (all cases)"]
    for run in ("fold 1 of 2", "fold 2 of 2"):
        assert len(dialog.run_curves[run][1].getData()[0]) >= 1  # its validation Dice, epoch by epoch
    assert dialog.run_curves["the model (all cases)"][1].getData()[0] is None  # no validation: no Dice curve
    cv = payload["cross_validation"]
    assert f"cross-validated Dice {payload['best_val_dice']:.3f}" in dialog.status.text()
    assert dialog.label_table.rowCount() == 2
    assert dialog.label_table.horizontalHeaderItem(1).text().startswith("Cross-validated Dice")
    dialog.grab().save(str(screenshot_dir / "training_dialog_kfold.png"))
    assert panel.package is not None and panel.package.id == "blobs-cv"
    card = panel.package.card["provenance"]
    assert card["cross_validation"]["folds"] == 2 and card["metrics"]["val_dice"] == cv["val_dice_mean"]
    shown = panel.card_view.toPlainText()  # the dock's card says what the figure is
    assert f"validation Dice {cv['val_dice_mean']:.3f} ± {cv['val_dice_sd']:.3f}" in shown
    assert "2-fold cross-validation (seed 0)" in shown


def test_the_dialog_says_where_a_stopped_cross_validation_stands(qtbot, window):
    dialog = window.annotating.models.open_training()
    dialog.config_sent = {"folds": 3}

    def epoch(run, n, validated=True):
        fold = int(run.split()[1]) if run.startswith("fold ") else None
        dialog._progress({"stage": "epoch", "done": n, "total": 5, "message": f"{run}: epoch {n}", "run": run,
                          "fold": fold,
                          "epoch": {"epoch": n, "run": run, "train_loss": 0.5, "val_dice": 0.4 if validated else None,
                                    "best_val_dice": 0.4 if validated else None, "validated": validated,
                                    "per_label": {"blob": 0.4 if validated else None}}})

    epoch("fold 1 of 3", 1)
    epoch("fold 1 of 3", 2)
    dialog._progress({"stage": "training", "done": 0, "total": 4, "message": "fold 2 of 3: fine-tuning on cpu",
                      "run": "fold 2 of 3", "fold": 2})
    dialog._final("cancelled", {"epochs_run": 2})
    assert dialog.status.text() == "cancelled; fold 2 of 3: no epoch had finished; the fold before it is kept too."
    epoch("fold 2 of 3", 1)
    dialog._final("crashed", {"exitcode": -9})
    assert dialog.status.text().endswith("fold 2 of 3: epoch 1's checkpoint is kept; the fold before it is kept "
                                         "too: Start with the same settings resumes from it.")
    dialog._progress({"stage": "training", "done": 0, "total": 4, "message": "the model (all cases): fine-tuning",
                      "run": "the model (all cases)", "fold": None})
    epoch("the model (all cases)", 1, validated=False)
    assert "no validation (every case trains)" in dialog.status.text()
    assert dialog.label_table.item(0, 1).text() == "0.400"  # the folds' last figures stay
    dialog._final("error", {"message": "boom"})
    assert dialog.status.text() == (
        "the training process failed in the model (all cases): boom\nNothing else was affected; the model (all "
        "cases): epoch 1's checkpoint is kept; the 3 folds before it are kept too: Start with the same settings "
        "resumes from it.")
    assert list(dialog.run_curves) == ["fold 1 of 3", "fold 2 of 3", "the model (all cases)"]


def test_a_cards_metrics_in_words():
    from medvision.ui.panels.model_panel import metrics_text

    assert metrics_text({"val_dice": 0.81234, "per_label": {"liver": 0.9, "spleen": None}, "best_epoch": 7}) == \
        "validation Dice 0.812 (epoch 7); liver 0.900, spleen n/a"
    assert metrics_text({"mean_dice": 0.96, "note": "bundle"}) == "mean_dice 0.960; note bundle"
    assert metrics_text({}) == "" and metrics_text(None) == ""


def test_a_killed_training_process_is_reported_and_the_window_keeps_working(qtbot, window, datalist):
    from medvision.ai.train_process import TrainingProcess

    panel = window.annotating.models
    dialog = panel.open_training()
    dialog.datalist_edit.setText(str(datalist))
    dialog.datalist_radio.setChecked(True)
    dialog.id_edit.setText("killed")
    dialog.epochs_spin.setValue(500)
    assert dialog.start()
    assert isinstance(dialog.process, TrainingProcess)
    qtbot.waitUntil(lambda: bool(dialog.history) or bool(dialog.last_message), timeout=600_000)
    dialog.process.kill()
    qtbot.waitUntil(lambda: dialog.final is not None, timeout=30_000)
    assert dialog.final[0] == "crashed"
    assert "ended unexpectedly" in dialog.status.text() and dialog.start_button.isEnabled()
    kept = (f"epoch {dialog.history[-1]['epoch']}'s checkpoint is kept" if dialog.history
            else "no epoch of this run had finished")
    assert kept in dialog.status.text()
    # the window is fine: open an image and paint
    assert open_and_wait(qtbot, window, datalist.parent / "img0.nii.gz")
    window.set_layout("1x1")
    QApplication.processEvents()
    window.annotating.panel.set_tool("paint")
    axial = window.views.slice_views["axial"]
    click(axial.viewport(), view_point(axial, [20, 20, int(window.viewer.cursor[2])]))
    assert window.annotating.annotation.labels.array.any()
    time.sleep(0.1)
