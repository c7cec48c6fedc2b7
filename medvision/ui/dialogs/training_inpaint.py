"""The Fine-tune dialog with an inpainting model as its base: no labels (random holes on the images of
the chosen cases), a time budget, no folds; the curves are the batch's L1 on the hole and the masked PSNR
on the images' held-out slices; at the end, the new model or why it was not registered (below its base)."""

from __future__ import annotations

__all__ = ["is_finetunable_inpainting", "apply_mode", "show_progress", "show_final", "PLAIN_TITLES"]

#: the plots' titles and the table's header for a segmentation base
PLAIN_TITLES = ("training loss", "validation Dice")


def is_finetunable_inpainting(package) -> bool:
    """An inpainting package with medvision's network (the built-in fill and imported ones have none)."""
    from ...ai.inpainting.train import ARCHITECTURE

    if package.card.get("task") != "inpainting" or getattr(package, "builtin", False):
        return False
    return (package.card.get("architecture") or {}).get("name") == ARCHITECTURE


def apply_mode(dialog, inpainting: bool) -> None:
    """Settings and plots for an inpainting base (or back to a segmentation one)."""
    if inpainting:
        dialog.minutes_radio.setChecked(True)
        dialog.validation_combo.setCurrentIndex(0)
        dialog.scratch_check.setChecked(False)
    for w in (dialog.epochs_radio, dialog.epochs_spin, dialog.validation_combo, dialog.folds_spin,
              dialog.scratch_check):
        w.setEnabled(not inpainting)
    if not hasattr(dialog, "plain_validation_text"):
        dialog.plain_validation_text = dialog.validation_combo.itemText(0)
    dialog.validation_combo.setItemText(0, "Hold out the last fifth of each image's slices (no hole is centred there "
                                           "in training)" if inpainting else dialog.plain_validation_text)
    dialog.validation_combo.setToolTip(
        "an inpainting model is measured on its images' held-out slices (the last fifth of each)" if inpainting
        else "k-fold: one run per fold, each validated on cases it did not see (every case once); the model "
             "is then trained on all the cases, and its card records the folds' Dice. Takes k + 1 runs.")
    loss_title, val_title = ("training L1 on the hole", "held-out masked PSNR (dB)") if inpainting else PLAIN_TITLES
    x = "step" if inpainting else "epoch"
    dialog.loss_plot.setTitle(loss_title)
    dialog.dice_plot.setTitle(val_title)
    for plot in (dialog.loss_plot, dialog.dice_plot):
        plot.setLabel("bottom", x)
    if inpainting:
        dialog.dice_plot.enableAutoRange(axis="y")
    else:
        dialog.dice_plot.setYRange(0, 1)
    dialog.label_table.setVisible(not inpainting)
    if not dialog.sync_folds_enabled():
        dialog.folds_spin.setEnabled(False)


def show_progress(dialog, figures: dict) -> None:
    """One measurement of the run: the curves and the status line."""
    dialog.history.append(figures)
    steps = [h["step"] for h in dialog.history]
    dialog.dice_curve.setData(steps, [h["val_masked_psnr"] for h in dialog.history])
    losses = [(h["step"], h["l1_hole"]) for h in dialog.history if "l1_hole" in h]
    dialog.loss_curve.setData([s for s, _ in losses], [v for _, v in losses])
    base = dialog.history[0]
    coarse = base.get("coarse_fill_masked_psnr")
    dialog.status.setText(
        f"step {figures['step']} ({figures.get('minutes', 0):.1f} min): held-out masked PSNR "
        f"{figures['val_masked_psnr']:.2f} dB (base {base['val_masked_psnr']:.2f} dB"
        + (f", the smooth fill alone {coarse:.2f} dB)" if coarse is not None else ")"))


def show_final(dialog, payload: dict) -> bool:
    """The end of the run; True when a new model was registered."""
    figures = payload["inpainting"]
    said = (f"held-out masked PSNR {figures['final_psnr']:.2f} dB against its base's {figures['base_psnr']:.2f} dB "
            f"(the smooth fill alone {figures['coarse_psnr']:.2f} dB) after {figures['steps']} steps in "
            f"{figures['minutes']:.1f} min")
    if payload.get("package"):
        dialog.status.setText(f"done: {payload['package']}\n{said}")
        return True
    notes = " ".join(figures.get("notes") or [])
    dialog.status.setText(f"not registered: {said}. {notes}".strip())
    return False
