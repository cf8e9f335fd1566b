"""Evaluation of any classifier on a labelled image set or an internal split, the plots of the result, and the
split predictions a model folder keeps for the app's Leaderboard."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from sklearn.metrics import RocCurveDisplay

from ..classes import CLASSES
from ..images import ImageError, load_fitted
from ..lesions import lesion_intervals
from ..metrics import compute_metrics
from ..model_folder import WEIGHTS_FILE, StoredPredictions, decision_rule, file_sha256, predictions_file
from ..plots import confusion_figure
from ..serving.classifier import Classifier
from ..serving.composite import TtaClassifier, served_as
from .data import SPLIT_FILE, labelled_split, load_images, split_sample

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")


class EvaluationError(ValueError):
    """The evaluation input is unusable; the message says why."""


def save_plots(y_true, probs, out_dir, title: str = "") -> list[Path]:
    """Confusion matrices (counts and row-normalised) and one-vs-rest ROC curves as PNG."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_pred = np.asarray(probs).argmax(axis=1)
    written = []
    for normalize, name in ((None, "confusion_matrix.png"), ("true", "confusion_matrix_normalized.png")):
        confusion_figure(y_true, y_pred, title, normalize).savefig(out_dir / name, dpi=110)
        written.append(out_dir / name)
    fig, ax = plt.subplots(figsize=(6, 6))
    for i, code in enumerate(CLASSES):
        if 0 < (np.asarray(y_true) == i).sum() < len(y_true):
            RocCurveDisplay.from_predictions(np.asarray(y_true) == i, np.asarray(probs)[:, i], name=code, ax=ax)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_title(f"{title} ROC (one vs rest)")
    fig.tight_layout()
    fig.savefig(out_dir / "roc_curves.png", dpi=110)
    plt.close(fig)
    written.append(out_dir / "roc_curves.png")
    return written


def _find_image(directory: Path, image_id: str) -> Path | None:
    for suffix in ("", *IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)):
        candidate = directory / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def evaluate_images(classifier, images_dir, metadata_csv) -> tuple[dict, np.ndarray, np.ndarray]:
    """Score `classifier` on the rows of a CSV (image_id, dx) whose images are in `images_dir`.

    Rows with an unknown dx, a missing image or an unreadable image are skipped and counted.
    Returns (metrics with a `skipped` report, y_true, probabilities).
    """
    images_dir, metadata_csv = Path(images_dir), Path(metadata_csv)
    if not images_dir.is_dir():
        raise EvaluationError(f"Image folder {images_dir} does not exist.")
    try:
        table = pd.read_csv(metadata_csv)
    except FileNotFoundError:
        raise EvaluationError(f"Metadata file {metadata_csv} does not exist.") from None
    except Exception as exc:
        raise EvaluationError(f"Metadata file {metadata_csv} is not a readable CSV: {exc}") from None
    missing_columns = {"image_id", "dx"} - set(table.columns)
    if missing_columns:
        raise EvaluationError(f"{metadata_csv} needs the columns image_id and dx; missing {sorted(missing_columns)}.")
    known = table["dx"].isin(CLASSES)
    skipped = {"unknown_class": int((~known).sum()), "missing_image": [], "unreadable_image": []}
    y_true, batch = [], []
    for image_id, dx in table.loc[known, ["image_id", "dx"]].itertuples(index=False):
        path = _find_image(images_dir, str(image_id))
        if path is None:
            skipped["missing_image"].append(str(image_id))
            continue
        try:
            batch.append(load_fitted(path, classifier.input_size))
        except ImageError as exc:
            skipped["unreadable_image"].append(f"{image_id}: {exc}")
            continue
        y_true.append(CLASSES.index(dx))
    if not y_true:
        raise EvaluationError(
            f"No image of {metadata_csv} could be evaluated ({skipped['unknown_class']} unknown classes, "
            f"{len(skipped['missing_image'])} missing and {len(skipped['unreadable_image'])} unreadable images).")
    probs = classifier(np.stack(batch))
    y_true = np.asarray(y_true)
    result = compute_metrics(y_true, probs)
    result["skipped"] = skipped
    return result, y_true, probs


def evaluate_split(classifier, split: str = "test", limit: int | None = None) -> dict:
    """compute_metrics of any classifier (plain, calibrated, TTA, ensemble, exported) on an internal split,
    with "intervals" (`metrics.bootstrap_intervals`, the split's lesions resampled whole).

    Images are fitted to `classifier.input_size` once, as the app does; what is compared is only the
    classifier. `limit` scores a seeded random subset (quick checks)."""
    paths, labels = split_sample(split, limit)
    probabilities = classifier(load_images(paths, classifier.input_size).astype("float32"))
    result = compute_metrics(labels, probabilities)
    result["intervals"] = lesion_intervals(labels, probabilities, [Path(path).stem for path in paths])
    return result


def save_split_predictions(folder, classifier=None, split: str = "test", *, tta: bool = False,
                           directory=None) -> list[Path]:
    """Keep what a model folder serves on an internal split in the folder, for the app's Leaderboard.

    Writes `predictions_file(split)` (the served probabilities: the folder's decision rule applied) and,
    with tta=True, `predictions_file(split, tta=True)` (served with test-time augmentation, as a registry
    entry with "tta": true serves the folder). The split is decoded once, as `split_arrays` decodes it
    for every score in the model card, so the file reproduces the card. Returns the paths written."""
    folder = Path(folder)
    classifier = classifier or Classifier.from_folder(folder)
    paths, labels = labelled_split(split, directory)
    images = load_images(paths, classifier.input_size).astype("float32")
    ids = [Path(path).stem for path in paths]
    stamp = dict(split=split, split_sha256=file_sha256(SPLIT_FILE), weights_sha256=file_sha256(folder / WEIGHTS_FILE),
                 decision_rule=decision_rule(classifier.info))
    served = {False: classifier, **({True: TtaClassifier(classifier)} if tta else {})}
    written = []
    for is_tta, model in served.items():
        stored = StoredPredictions(labels, model(images), ids, served_as=served_as(is_tta), **stamp)
        written.append(stored.write(folder / predictions_file(split, tta=is_tta)))
    return written
