"""Temperature scaling: one number per model, fitted on the validation split, so confidences mean what they say.

Fine-tuned CNNs trained with class weights and label smoothing are not calibrated: a "90 %" is not right
90 % of the time. Dividing the log-probabilities by a temperature T (fitted to minimise validation NLL)
fixes most of it without changing any prediction's class. T is stored in skin_demo.json and applied by
`serving.classifier.Classifier`; the saved Keras model is untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib
import numpy as np
from scipy.optimize import minimize_scalar

from ..classes import CLASSES
from ..metrics import compute_metrics, expected_calibration_error, reliability_bins
from ..model_folder import TEMPERATURE_RANGE, ModelFolderError, ModelInfo, StoredPredictions, fresh_predictions
from ..serving.catalog import load_registry, registry_path
from ..serving.classifier import Classifier, adjust_logits, apply_temperature, log_probabilities
from ..serving.composite import ensemble_probabilities, served_as
from ..serving.leaderboard import STORE_COMMAND
from ..serving.store import entry_folder
from .card import write_model_card
from .data import split_arrays

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

DIAGRAM_FILE = "reliability_diagram.png"
LOG_T_BOUNDS = tuple(np.log(TEMPERATURE_RANGE))
TAUS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)  # the coarse grid of logit adjustments tried on validation
TAU_RULE = ("tau maximising the smaller of validation balanced accuracy and accuracy on a coarse grid; "
            "ties to the smaller |tau|")


def negative_log_likelihood(labels, probs, temperature: float = 1.0) -> float:
    scaled = log_probabilities(probs) / temperature
    log_norm = np.log(np.exp(scaled - scaled.max(axis=1, keepdims=True)).sum(axis=1)) + scaled.max(axis=1)
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(labels, probs) -> float:
    """The T minimising the NLL of `labels` (a bounded 1-D search on log T)."""
    labels = np.asarray(labels)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(labels, probs, np.exp(log_t)),
                             bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def save_reliability_diagram(labels, raw_probs, calibrated_probs, path, title: str = "") -> Path:
    """Accuracy against confidence per bin, before and after scaling, with the ECE of each."""
    bins = 10
    centres = (np.arange(bins) + 0.5) / bins
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, probs, label in ((axes[0], raw_probs, "before"), (axes[1], calibrated_probs, "after")):
        mean_confidence, accuracy, share = reliability_bins(labels, probs, bins)
        ax.bar(centres, np.nan_to_num(accuracy), width=1 / bins, edgecolor="black", alpha=0.75, label="accuracy")
        ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
        ax.plot(mean_confidence, accuracy, "o", color="crimson", ms=4, label="bin: mean confidence vs accuracy")
        ax.set_title(f"{label} scaling: ECE {expected_calibration_error(labels, probs):.3f}")
        ax.set_xlabel("top-class confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def class_prior(labels) -> list[float]:
    """Class frequencies of a label array, in CLASSES order (a class never seen gets a tiny share, not zero)."""
    counts = np.bincount(np.asarray(labels), minlength=len(CLASSES)).astype("float64") + 1e-3
    return [round(float(v), 6) for v in counts / counts.sum()]


def choose_logit_adjustment(labels, raw, prior, taus=TAUS) -> dict:
    """The tau of `adjust_logits` that maximises the smaller of validation balanced accuracy and accuracy.

    Both numbers matter to a user: balanced accuracy says rare cancers are found, accuracy says a common
    mole is not called one; an average would let the 67 % of nevi buy accuracy with missed cancers.
    Ties go to the smaller |tau|. The whole grid is kept for the model card."""
    grid = {}
    for tau in taus:
        m = compute_metrics(labels, adjust_logits(raw, tau, prior))
        grid[tau] = (m["balanced_accuracy"], m["accuracy"])
    best = max(taus, key=lambda tau: (round(min(grid[tau]), 4), -abs(tau)))
    return {"tau": best, "prior": list(prior), "rule": TAU_RULE,
            "grid": [{"tau": tau, "balanced_accuracy": round(b, 4), "accuracy": round(a, 4)}
                     for tau, (b, a) in grid.items()]}


def calibrate(folder, classifier=None, splits: dict | None = None, prior=None, score_test: bool = False) -> ModelInfo:
    """Choose the decision rule on validation and save it: logit adjustment toward `prior` (when given),
    then a temperature; score val and test as served and the calibration before/after, save the diagram,
    skin_demo.json and model card.

    `splits` maps "val" (and "test", unless an ablation run leaves it out) to (images, labels) already in
    memory (train passes its own); otherwise both are decoded from the data set at the model's input size.
    `score_test` scores the test split of a run trained with --no-test: once, after every choice was made
    on validation. Returns the updated info.
    """
    folder = Path(folder)
    classifier = classifier or Classifier.from_folder(folder)
    scored = ("val", "test") if score_test or "test" in classifier.info.metrics else ("val",)  # ablations: never
    splits = splits or {name: split_arrays(name, classifier.input_size) for name in scored}
    raw = {name: classifier.raw_probabilities(np.asarray(x, dtype="float32")) for name, (x, _) in splits.items()}
    info = classifier.info
    if prior is not None:
        info.logit_adjustment = choose_logit_adjustment(splits["val"][1], raw["val"], prior)
    adjustment = info.logit_adjustment or {"tau": 0.0, "prior": None}
    adjusted = {name: adjust_logits(probs, adjustment["tau"], adjustment["prior"]) for name, probs in raw.items()}
    info.temperature = round(fit_temperature(splits["val"][1], adjusted["val"]), 5)
    calibrated = {name: apply_temperature(probs, info.temperature) for name, probs in adjusted.items()}
    for name, (_, labels) in splits.items():
        before, after = compute_metrics(labels, adjusted[name]), compute_metrics(labels, calibrated[name])
        info.metrics[name] = after  # the split's metrics as served
        info.metrics[f"{name}_calibrated"] = {
            "n": int(len(labels)), "ece_before": before["ece"], "ece_after": after["ece"],
            "nll_before": before["log_loss"], "nll_after": after["log_loss"]}
    shown = "test" if "test" in splits else "val"
    save_reliability_diagram(splits[shown][1], adjusted[shown], calibrated[shown], folder / DIAGRAM_FILE,
                             f"{info.name or folder.name}: {shown} split, T = {info.temperature:.2f} "
                             "fitted on validation")
    info.write(folder)
    write_model_card(folder)
    return info


def stored_served(entry, split: str = "val") -> StoredPredictions:
    """What a single registry entry serves on a split, as its folder stores it (`fresh_predictions`); a
    sentence with the command that stores them when they are missing or out of date."""
    folder = entry_folder(entry)
    try:
        return fresh_predictions(folder, ModelInfo.read(folder), split, entry.tta, served_as(entry.tta))
    except ModelFolderError as exc:
        raise ModelFolderError(f"{str(exc).rstrip('.')}: run `{STORE_COMMAND.format(folder=folder)} --split {split}"
                               f"{' --tta' if entry.tta else ''}` first.") from exc


def calibrate_ensemble(name: str, registry=None) -> dict:
    """Fit an ensemble entry's own temperature on validation and write it into its registry entry.

    A mean of calibrated networks is under-confident where their errors differ (the bundled default: mean
    top probability 0.72 at validation accuracy 0.77), so the mean is scaled like one network's output
    (`composite.ensemble_probabilities`). It is fitted on the members' stored validation predictions, so no
    network runs; the class of every prediction stays the same. Returns T and validation ECE/NLL before
    and after."""
    path = registry_path(registry)
    entries = {entry.name: entry for entry in load_registry(path)}
    entry = entries.get(name)
    if entry is None or not entry.members:
        ensembles = [e.name for e in entries.values() if e.members]
        raise ModelFolderError(f"{name!r} is not an ensemble of the registry {path} (its ensembles: "
                               f"{', '.join(ensembles) or 'none'}).")
    stored = [stored_served(entries[member]) for member in entry.members]
    labels = stored[0].labels
    if not all(np.array_equal(s.image_ids, stored[0].image_ids) and np.array_equal(s.labels, labels) for s in stored):
        raise ModelFolderError(f"The members of {name} stored predictions of different validation images.")
    mean = ensemble_probabilities([s.probabilities for s in stored])
    temperature = round(fit_temperature(labels, mean), 5)
    calibrated = apply_temperature(mean, temperature)
    data = json.loads(path.read_text())
    for item in data["models"]:
        if item.get("name") == name:
            item["temperature"] = temperature
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(partial, path)  # a running app never reads half a registry
    return {"temperature": temperature, "n": int(len(labels)),
            "ece_before": expected_calibration_error(labels, mean),
            "ece_after": expected_calibration_error(labels, calibrated),
            "nll_before": negative_log_likelihood(labels, mean),
            "nll_after": negative_log_likelihood(labels, calibrated)}
