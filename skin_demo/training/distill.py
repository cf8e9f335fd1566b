"""Distillation: train a network toward a served entry's probabilities as well as the labels.

The default ensemble is four networks' compute and explains slowly; a single network trained toward its
probabilities can carry part of its gain (Hinton et al. 2015, offline: the teacher's answers are computed
once). The ensemble is far from one-hot on the training images (on 800 of them: top-class probability
0.80 on average, accuracy 0.81), so its probabilities say which classes an image resembles, which the
labels do not. Targets are (1 - weight) * one-hot + weight * teacher, the teacher's answer moved to
equal class priors as the balanced batches see the classes (`soft_targets`); label smoothing and batch
mixing then act on them as on one-hot labels. Measured in docs/ablation.md: distilling the ensemble into
Lite0 bought calibration and steadiness (validation log-loss 0.560 against 0.637), not balanced accuracy,
so no served network uses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..serving.classifier import Classifier
from ..serving.store import ModelStore
from .data import one_hot, predict_uint8

TEACHER_FILE = "teacher.npz"  # in the run folder: computed once, so a resumed run sees the same targets


def load_teacher(source: str):
    """A model folder, else an entry of the registry (TTA and ensembles too), as served."""
    if Path(source).is_dir():
        return Classifier.from_folder(source)
    return ModelStore(lazy=True).get(source)


def soft_targets(labels, teacher: np.ndarray, weight: float, prior=None) -> np.ndarray:
    """(1 - weight) * one-hot + weight * teacher: rows sum to 1; weight 0 gives the labels back.

    With `prior` (the class frequencies the teacher's probabilities carry), the teacher's answer is first
    moved to equal class priors (p / prior, renormalised): balanced batches (or class weights) show the
    student every class equally often, so a natural-prior answer would pull it toward the frequent classes."""
    teacher = np.asarray(teacher, dtype="float64")
    if prior is not None:
        teacher = teacher / np.asarray(prior, dtype="float64")
        teacher /= teacher.sum(axis=1, keepdims=True)
    return ((1.0 - weight) * one_hot(labels) + weight * teacher).astype("float32")


def cached_teacher_probabilities(run_path, source: str, images: np.ndarray, log=print) -> np.ndarray:
    """The teacher's probabilities for the run's training images, from the run folder if computed before."""
    path = Path(run_path) / TEACHER_FILE
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["source"]) == source and stored["probabilities"].shape[0] == len(images):
                log(f"teacher {source}: probabilities for {len(images)} training images read from {path.name}")
                return stored["probabilities"]
    probabilities = predict_uint8(load_teacher(source), images)  # the teacher fits them to its input
    np.savez(path, probabilities=probabilities, source=np.array(source))
    log(f"teacher {source}: probabilities for {len(images)} training images, mean top-class probability "
        f"{probabilities.max(axis=1).mean():.3f}")
    return probabilities
