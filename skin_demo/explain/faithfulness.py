"""How faithful and how stable an explanation is: deletion/insertion curves, seed stability, agreement
with lime, and how far several models' explanations of one class agree (`pairwise_agreement`)."""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
from lime.lime_image import LimeImageExplainer

from .lime import KERNEL_WIDTH, TOP_K, Explanation, explain, hidden_fill, predict_all, top_superpixels
from .regions import tied_with_rest


def ranking_from_heatmap(segments, heatmap) -> np.ndarray:
    """Superpixels ordered by their mean heat, hottest first (to score Grad-CAM like LIME)."""
    flat = segments.ravel()
    mean_heat = np.bincount(flat, weights=np.asarray(heatmap).ravel()) / np.bincount(flat)
    return np.argsort(-mean_heat, kind="stable")


def deletion_insertion_auc(predict_fn, image, segments, ranking, label: int, fill: str = "mean",
                           batch_size: int = 128, fill_segments=None) -> dict[str, float]:
    """RISE-style areas under the class-probability curves, x = fraction of pixels changed.

    Deletion hides superpixels in ranking order (a faithful ranking drops the probability fast:
    low is good); insertion reveals them on the fully hidden image (high is good). Hidden pixels
    take the mean colour of their region in `fill_segments` (default `segments`); pass an
    explanation's `fill_segments` to hide regions exactly as its samples did (`explanation_auc`).
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
    filler = hidden_fill(image, segments if fill_segments is None else np.asarray(fill_segments), fill)
    masks = np.concatenate([1 - inserted, inserted])
    probabilities = predict_all({"model": predict_fn}, image, segments, masks, filler, batch_size)["model"][:, label]
    deletion, insertion = probabilities[:n_segments + 1], probabilities[n_segments + 1:]
    return {"deletion": float(np.trapezoid(deletion, x)), "insertion": float(np.trapezoid(insertion, x))}


def explanation_auc(predict_fn, explanation: Explanation, label: int | None = None, **options) -> dict[str, float]:
    """`deletion_insertion_auc` of an explanation's own ranking (by weight, for the class), on its
    regions and with its fill."""
    label = explanation.label if label is None else label
    ranking = np.argsort(-explanation.weights[label], kind="stable")
    return deletion_insertion_auc(predict_fn, explanation.image, explanation.segments, ranking, label,
                                  fill_segments=explanation.fill_segments, **options)


def jaccard(a, b) -> float:
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def top_overlap(a: Explanation, b: Explanation, k: int = TOP_K, label: int | None = None) -> float:
    """Jaccard of two explanations' top-k regions: of the region ids when both have the same map, else of
    the pixels they cover (coarse-to-fine maps of two seeds may refine different regions)."""
    top_a, top_b = a.top(k, label), b.top(k, label)
    if np.array_equal(a.segments, b.segments):
        return jaccard(top_a, top_b)
    pixels_a, pixels_b = np.isin(a.segments, top_a), np.isin(b.segments, top_b)
    union = np.logical_or(pixels_a, pixels_b).sum()
    return float(np.logical_and(pixels_a, pixels_b).sum() / union) if union else 1.0


def seed_views(predict_fn, image, seeds=range(5), **options) -> list[Explanation]:
    """The same image explained once per seed."""
    return [explain(predict_fn, image, seed=seed, **options) for seed in seeds]


def views_stability(views: list[Explanation], top_k: int = TOP_K) -> float:
    """Mean pairwise `top_overlap` of the top-k regions over explanations with different seeds."""
    return float(np.mean([top_overlap(a, b, top_k) for a, b in itertools.combinations(views, 2)]))


def stability(predict_fn, image, seeds=range(5), top_k: int = TOP_K, **options) -> float:
    """`views_stability` of fresh `seed_views`."""
    return views_stability(seed_views(predict_fn, image, seeds, **options), top_k)


def tie_flags_kept(views: list[Explanation], top_k: int = TOP_K) -> dict[str, list[float]]:
    """Whether the tie flag (`regions.tied_with_rest`) tells which top regions other seeds keep: for every
    top-k region of every view, the share of the other views whose top k hold it too, listed under
    "clear" or "tied" by that view's flag."""
    kept: dict[str, list[float]] = {"clear": [], "tied": []}
    tops = [set(view.top(top_k)) for view in views]
    for i, view in enumerate(views):
        flags = tied_with_rest(view.weights[view.label], view.weight_errors[view.label], top_k)
        for region in view.top(top_k):
            share = float(np.mean([region in top for j, top in enumerate(tops) if j != i]))
            kept["tied" if flags[region] else "clear"].append(share)
    return kept


def pairwise_agreement(explanations: dict[str, Explanation], k: int = TOP_K,
                       measure: str = "top_k") -> dict[str, dict[str, float]]:
    """How far models agree: {model: {other model: agreement in [0, 1]}}, 1.0 on the diagonal.

    For explanations of one class on one segmentation, as `lime.compare` makes them. "top_k": Jaccard
    of the top-k regions taken with their sign (a region that supports the class for one model and
    opposes it for the other is not shared); "weighted": weighted Jaccard of the signed weights, each
    model's scaled to a total |weight| of 1 (sum of min over sum of max of the parts that agree in sign),
    which also credits agreement below the top k.
    """
    if measure not in ("top_k", "weighted"):
        raise ValueError(f"measure must be 'top_k' or 'weighted', not {measure!r}.")
    views = list(explanations.items())
    if views:
        first = views[0][1]
        if any(e.label != first.label for _, e in views):
            raise ValueError("The explanations to compare must explain the same class (use lime.compare).")
        if any(not np.array_equal(e.segments, first.segments) for _, e in views):
            raise ValueError("The explanations to compare must share one segmentation (use lime.compare).")

    def agreement_of(a: Explanation, b: Explanation) -> float:
        wa, wb = a.weights[a.label], b.weights[b.label]
        if measure == "top_k":
            signed_a = {(int(j), bool(wa[j] > 0)) for j in a.top(k)}
            signed_b = {(int(j), bool(wb[j] > 0)) for j in b.top(k)}
            union = signed_a | signed_b
            return len(signed_a & signed_b) / len(union) if union else 1.0
        na, nb = wa / max(np.abs(wa).sum(), 1e-300), wb / max(np.abs(wb).sum(), 1e-300)
        positive = np.minimum(np.maximum(na, 0), np.maximum(nb, 0)).sum()
        negative = np.minimum(np.maximum(-na, 0), np.maximum(-nb, 0)).sum()
        total = np.maximum(np.abs(na), np.abs(nb)).sum()
        return float((positive + negative) / total) if total > 0 else 1.0

    return {name: {other: 1.0 if name == other else agreement_of(a, b) for other, b in views} for name, a in views}


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
