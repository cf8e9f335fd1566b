"""Classification metrics over the 7 classes (scikit-learn), and the calibration error scikit-learn lacks."""

from __future__ import annotations

import numpy as np
from sklearn import metrics

from .classes import CLASSES


TIE = 0.005  # validation balanced accuracy differences below this are noise (14-19 images in df and vasc)
RESAMPLES = 1000  # bootstrap resamples of an interval
LEVEL = 0.95  # central share of the bootstrap distribution an interval covers


def rank_by_validation(scores: dict[str, dict]) -> list[str]:
    """Names best first by the selection rule of the training code, over models instead of epochs: the
    highest macro AUC among those within TIE of the best balanced accuracy, then the same for the rest."""
    left, ranked = dict(scores), []
    while left:
        top = max(s["balanced_accuracy"] for s in left.values())
        close = [name for name, s in left.items() if s["balanced_accuracy"] >= top - TIE]
        best = max(close, key=lambda name: (left[name]["macro_auc"] or 0.0, left[name]["balanced_accuracy"]))
        ranked.append(best)
        del left[best]
    return ranked


def reliability_bins(y_true, probs, bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: mean top-label confidence, accuracy, share of images (NaN when empty)."""
    probs = np.asarray(probs)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    mean_confidence, accuracy, share = np.full(bins, np.nan), np.full(bins, np.nan), np.zeros(bins)
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            mean_confidence[b], accuracy[b], share[b] = confidence[in_bin].mean(), correct[in_bin].mean(), in_bin.mean()
    return mean_confidence, accuracy, share


def expected_calibration_error(y_true, probs, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins (scikit-learn has no ECE)."""
    mean_confidence, accuracy, share = reliability_bins(y_true, probs, bins)
    return float(np.nansum(share * np.abs(accuracy - mean_confidence)))


def fmt(value, spec: str = ".4f") -> str:
    """Format a metric that may be None (e.g. AUC with a single class present)."""
    return "–" if value is None else format(value, spec)


def fmt_interval(bounds, dash: str = "–", missing: str = "–") -> str:
    """A (low, high) interval as text; `missing` when there is none (nothing scored, or one class absent)."""
    return missing if bounds is None else f"{bounds[0]:.3f}{dash}{bounds[1]:.3f}"


def interval_note(intervals: dict, key: str, how: str = "") -> str:
    """" (95% interval low–high{how})" to follow a metric, or "" when `intervals` has none for `key`."""
    bounds = intervals.get(key)
    return "" if bounds is None else f" ({LEVEL:.0%} interval {fmt_interval(bounds)}{how})"


def _clipped(probs) -> np.ndarray:
    """Probabilities kept away from 0 (log loss of an exact 0 is infinite), still summing to 1 per row."""
    clipped = np.clip(probs, 1e-7, 1)
    return clipped / clipped.sum(axis=1, keepdims=True)


def compute_metrics(y_true, probs) -> dict:
    """Accuracy, balanced accuracy, macro AUC, per-class precision/recall/specificity/F1/AUC, ECE."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype="float64")
    probs = probs / probs.sum(axis=1, keepdims=True)  # float32 softmax rows may sum to 1 +- 1e-7
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(CLASSES)))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    per_label = metrics.multilabel_confusion_matrix(y_true, y_pred, labels=labels)
    present = np.unique(y_true)
    per_class = {}
    aucs = []
    for i, code in enumerate(CLASSES):
        tn, fp = per_label[i][0]
        auc = None
        if 0 < (y_true == i).sum() < len(y_true):
            auc = float(metrics.roc_auc_score(y_true == i, probs[:, i]))
            aucs.append(auc)
        per_class[code] = {
            "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
            "specificity": float(tn / (tn + fp)) if tn + fp else None, "auc": auc, "support": int(support[i]),
        }
    return {
        "n": int(len(y_true)),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, y_pred)) if len(present) else None,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_f1": float(metrics.f1_score(y_true, y_pred, labels=list(present), average="macro", zero_division=0)),
        "log_loss": float(metrics.log_loss(y_true, _clipped(probs), labels=labels)),
        "ece": expected_calibration_error(y_true, probs),
        "per_class": per_class,
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(CLASSES),
    }


def bootstrap_intervals(y_true, probs, groups=None, resamples: int = RESAMPLES, level: float = LEVEL,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of balanced accuracy, accuracy, macro AUC and each class's recall.

    Why: one test split of ~1500 images holds 17-20 dermatofibromas and vascular lesions, so a
    difference of a few points in balanced accuracy can be a handful of images; an interval says how
    far a number could move on another sample from the same clinics. `groups` (one id per image, e.g.
    the lesion) makes the resampling unit the group: all images of a lesion are drawn together, as they
    are not independent. Every resample is scored with the same definitions as `compute_metrics`
    (AUC one-vs-rest with ties counted half, classes absent from a resample left out), computed for all
    resamples at once from per-image multiplicities. Deterministic for `seed`.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype="float64")
    groups = np.arange(len(y_true)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n_groups = int(groups.max()) + 1
    drawn = np.random.default_rng(seed).integers(0, n_groups, (resamples, n_groups))
    counts = np.bincount((drawn + n_groups * np.arange(resamples)[:, None]).ravel(),
                         minlength=resamples * n_groups).reshape(resamples, n_groups)
    weight = np.ascontiguousarray(counts.T[groups], dtype="float32")  # (images, resamples): times drawn
    correct = probs.argmax(axis=1) == y_true
    stats = {"accuracy": correct @ weight / weight.sum(axis=0)}
    recalls, aucs = [], []
    for c, code in enumerate(CLASSES):
        positive = y_true == c
        if not positive.any():
            continue
        shown = weight[positive].sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(shown > 0, weight[positive & correct].sum(axis=0) / shown, np.nan)
        stats[f"recall_{code}"] = recall
        recalls.append(recall)
        if not positive.all():
            aucs.append(_weighted_auc(probs[:, c], positive, weight))
    stats["balanced_accuracy"] = np.nanmean(recalls, axis=0)
    if aucs:
        stats["macro_auc"] = np.nanmean(aucs, axis=0)
    tail = (1 - level) / 2
    return {name: (float(np.nanquantile(values, tail)), float(np.nanquantile(values, 1 - tail)))
            for name, values in stats.items()}


def _weighted_auc(scores, positive, weight) -> np.ndarray:
    """One-vs-rest ROC AUC per column of `weight` (images x resamples, multiplicities), ties counted half:
    the Mann-Whitney form, from the cumulative weight of the negatives below each positive's score."""
    order = np.argsort(scores[~positive], kind="stable")
    negatives = scores[~positive][order]
    cumulative = np.zeros((len(negatives) + 1, weight.shape[1]), dtype=weight.dtype)
    np.cumsum(weight[~positive][order], axis=0, out=cumulative[1:])
    pos_scores, pos_weight = scores[positive], weight[positive]
    below = cumulative[np.searchsorted(negatives, pos_scores, side="left")]
    up_to = cumulative[np.searchsorted(negatives, pos_scores, side="right")]
    pairs = pos_weight.sum(axis=0) * cumulative[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos_weight * (below + up_to)).sum(axis=0) / (2 * pairs), np.nan)
