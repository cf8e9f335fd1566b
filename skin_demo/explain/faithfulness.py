"""How faithful and how stable an explanation is: deletion/insertion curves, seed stability, agreement with lime."""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
from lime.lime_image import LimeImageExplainer

from .lime import KERNEL_WIDTH, TOP_K, Explanation, explain, hidden_fill, predict_all, top_superpixels


def ranking_from_heatmap(segments, heatmap) -> np.ndarray:
    """Superpixels ordered by their mean heat, hottest first (to score Grad-CAM like LIME)."""
    flat = segments.ravel()
    mean_heat = np.bincount(flat, weights=np.asarray(heatmap).ravel()) / np.bincount(flat)
    return np.argsort(-mean_heat, kind="stable")


def deletion_insertion_auc(predict_fn, image, segments, ranking, label: int, fill: str = "mean",
                           batch_size: int = 128) -> dict[str, float]:
    """RISE-style areas under the class-probability curves, x = fraction of pixels changed.

    Deletion hides superpixels in ranking order (a faithful ranking drops the probability fast:
    low is good); insertion reveals them on the fully hidden image (high is good).
    """
    image = np.asarray(image, dtype="float32")
    ranking = np.asarray(ranking)
    n_segments = int(segments.max()) + 1
    position = np.empty(n_segments, dtype=int)
    position[ranking] = np.arange(n_segments)
    steps = np.arange(n_segments + 1)[:, None]
    inserted = (position[None, :] < steps).astype(np.int64)  # row i: the first i superpixels shown
    area = np.bincount(segments.ravel(), minlength=n_segments)[ranking]
    x = np.concatenate([[0.0], np.cumsum(area) / area.sum()])
    filler = hidden_fill(image, segments, fill)
    masks = np.concatenate([1 - inserted, inserted])
    probabilities = predict_all({"model": predict_fn}, image, segments, masks, filler, batch_size)["model"][:, label]
    deletion, insertion = probabilities[:n_segments + 1], probabilities[n_segments + 1:]
    return {"deletion": float(np.trapezoid(deletion, x)), "insertion": float(np.trapezoid(insertion, x))}


def jaccard(a, b) -> float:
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def stability(predict_fn, image, seeds=range(5), top_k: int = TOP_K, **options) -> float:
    """Mean pairwise Jaccard of the top-k superpixels over explanations with different seeds."""
    tops = [explain(predict_fn, image, seed=seed, top_k=top_k, **options).top(top_k) for seed in seeds]
    return float(np.mean([jaccard(a, b) for a, b in itertools.combinations(tops, 2)]))


def lime_reference(predict_fn, image, segments, label: int, num_samples: int = 1000, seed: int = 0,
                   batch_size: int = 10) -> np.ndarray:
    """lime's own LimeImageExplainer weights per superpixel on our segmentation (for agreement).

    Its mean-colour fill and masks come from lime; `random_state` fixes the masks (lime's
    `random_seed` only reaches the segmentation, which scikit-image no longer randomises).
    lime 0.2.0.1 has no `progress_bar` keyword, so its tqdm bar is swallowed instead.
    """
    explainer = LimeImageExplainer(kernel_width=KERNEL_WIDTH, random_state=seed)
    with contextlib.redirect_stderr(io.StringIO()):
        result = explainer.explain_instance(
            np.asarray(image, dtype="float32"), predict_fn, labels=(label,), top_labels=None,
            num_samples=num_samples, batch_size=batch_size, segmentation_fn=lambda _: np.array(segments))
    weights = np.zeros(int(segments.max()) + 1)
    for feature, weight in result.local_exp[label]:
        weights[feature] = weight
    return weights


def agreement(explanation: Explanation, reference_weights, k: int = TOP_K) -> float:
    """Fraction of our top-k superpixels that are also in the reference's top-k."""
    return len(set(explanation.top(k).tolist()) & set(top_superpixels(reference_weights, k).tolist())) / k
