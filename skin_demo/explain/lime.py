"""Fast LIME superpixel explanations: lime's method, with fewer and better-chosen forward passes.

lime 0.2.0.1 spends >85 % of an explanation in 1000 forward passes fed ten images at a time, after a
quickshift segmentation that takes ~0.5-1 s by itself. Here the segmentation is SLIC (cached per image),
the perturbed images are rendered for a whole mask matrix at once, the model sees large batches (through
onnxruntime when the classifier is accelerated), and the masks come in complementary pairs from
orthogonal (Hadamard) blocks (~172 samples at the default detail; 140 of them were as stable a top 5 as
~280 random pairs gave, measured below). The fit is lime's: lime_image's cosine kernel and lime_base's weighted Ridge
(alpha 1, with intercept), solved in closed form for all classes at once (`ridge_fit`; a unit test holds
it equal to `lime_base.LimeBase` to 1e-8), except that the two rows of a pair share their mean kernel
weight.

Detail (how many regions): coarse to fine
-----------------------------------------
`detail` is the number of regions wanted in the final map (`DETAIL_RANGE`, default `DEFAULT_DETAIL`
= 25). Up to `COARSE_REGIONS` (12) it is one SLIC segmentation, explained in one stage as before.
Above it the explanation runs in two stages on one shared mask stream:

1. occlusion: the image, then each of the ~12 coarse SLIC regions hidden alone (`occlusion_masks`,
   1 + 12 forward passes, no randomness). The coarse regions whose hiding moves the explained class
   most (summed over the compared models, each model's drops scaled to a maximum of 1) are refined;
2. fine: those K regions are cut by SLIC inside their own outline into pieces of about equal area
   (`refine`; more regions only if the map is still short of `detail`); the other coarse regions stay
   whole. Complementary pairs of masks from orthogonal blocks perturb only the pieces (by default two
   and a half blocks: 160 samples up to 31 pieces, 320 up to 63); the rest of the picture stays shown. The final
   weights come from one fit over all rows: an occlusion row is the fine row whose pieces share their
   parent's bit, hidden pieces are filled with their *parent's* mean colour (so both kinds of rows
   render exactly the same pixels), and each stage has its own intercept (`ridge_fit(strata=)`). A
   region left whole gets its weight from its occlusion row.

Why this shape (measured on the bundled EfficientNet-Lite0, top-5 Jaccard over 5 seeds; the first three
on 5 test images):
- one SLIC map of ~25 regions, lime's coin-flip masks in pairs: 0.68 at 200 samples, 0.78 at 400;
  KernelSHAP's design (paired Shapley-kernel coalitions, sizes 1 and S-1 enumerated) 0.69 at 150;
  hiding fewer regions per sample (each with p 0.1-0.3) 0.61-0.74 at 200. Every region competes for
  the top 5 and the 5th to 8th weights are close: one swap at the edge costs a third of the Jaccard.
- coarse to fine with a *sampled* coarse stage (this module until 2026-11): 0.58 at ~450 samples. Two
  seeds refined different coarse regions, so their maps and top 5s differed even where each seed's
  weights were precise (standard errors ~0.006 on weights of 0.05-0.25).
- occlusion to choose what to refine: the map no longer depends on the seed; 0.81 at 213 samples,
  0.95 at 413 with a fixed number of samples, and 0.86 at ~250 with an adaptive stop (sample in
  rounds until the top 5 stops changing); on the benchmark's 10 test images 0.845 at 277 (Lite0) and
  0.82 at 322 (the ensemble), where the sampled coarse stage had deletion / insertion AUC 0.375 /
  0.780 and this one 0.398 / 0.755 (random rankings: ~0.63 / ~0.59). The price: the map depends on
  the explained class (the refined regions are that class's important ones), and a coarse region
  that matters only together with another one (hidden alone it changes little) stays whole.
- orthogonal blocks and a pooled kernel for the fine stage (`orthogonal_pairs`, `ridge_fit`'s
  `pooled_kernel`), on 30 *validation* images x 5 seeds (chosen there; the benchmark's test images
  were not used), Lite0, 13 occlusion + 128 fine samples: random pairs 0.75, orthogonal blocks 0.80,
  random pairs with the pooled kernel 0.77, both 0.85 (the adaptive stop above: 0.84 at 281). With
  both, 77 samples give 0.78, 205 give 0.87 and 269 give 0.88; an adaptive stop in whole blocks
  (stop when the top 5 is unchanged after a block) took 179-195 samples for 0.85, no better than a
  fixed budget at the same cost, so the budget is fixed: `BLOCKS` blocks after the occlusion stage.
- how many blocks, for the default ensemble (four networks, the default entry), 30 validation images x
  5 seeds (2026-12-01; `agreement` = top-5 overlap with a 1000-sample explanation of the same design,
  i.e. how right the top 5 is, not only how steady):
  blocks 2 / 2.25 / 2.5 / 2.75 / 3 / 4: samples 140 / 156 / 172 / 188 / 204 / 268, stability 0.856 /
  0.868 / 0.888 / 0.882 / 0.889 / 0.892, agreement 0.895 / 0.904 / 0.910 / 0.900 / 0.898 / 0.918,
  seconds 0.91 / 0.93 / 1.02 / 1.11 / 1.32 / 1.72 (noisy: timed beside nothing, but in one long run;
  alternating 2 and 2.5 blocks on 10 test images, the time rose 22 %, as the samples did). Stability
  levels off from 2.5 blocks; 3 blocks would take 19 % more samples than 2.5, which would bring the
  default explanation under 10x lime's speed (~9.7x on the benchmark's timings). `BLOCKS` = 2.5: the
  half block is a random half of a third block's complementary pairs, so every pair stays complementary
  and every region is shown in half the rows, but two regions' columns are orthogonal only over the whole
  blocks (the standard errors below were checked with whole blocks).
- partial hiding (hidden pixels moved only part of the way to the fill, which makes the model more
  nearly linear in the masks), Lite0, the same 30 validation images: stability 0.90 / 0.93 at
  60 % / 35 % of the way against 0.85 fully hidden, but deletion AUC 0.202 -> 0.258 / 0.267 and
  insertion 0.61 -> 0.57 / 0.51 (both scored by hiding fully): a steadier ranking of what matters
  less for hiding. Not used.
- an ensemble explained as the mean of its members' explanations, each member on its own masks (the
  same forward passes; the hope: the members' aliasing errors would partly cancel), the default
  four-network ensemble, 7 validation images x 5 seeds: 0.83 against 0.90 with one shared mask set.
  Not used: the members err alike, and the shared set also keeps an ensemble comparable with its
  members in Compare.
Real-model numbers are for `python -m skin_demo benchmark-explain` (stability target: top-5 Jaccard
>= 0.85).

Uncertainty per region
----------------------
`Explanation.weight_errors` (classes, S) is the standard error of each weight from the weighted ridge
fit's cluster-robust sandwich covariance, A^-1 (sum over mask pairs of g g^T) A^-1 with A = X'WX + alpha
I and g the pair's summed w * residual * x. It estimates how much the weight would vary over fresh mask
sets (the residuals are the model's departure from the local linear fit, the masks are the random part);
clusters are the complementary pairs, whose residuals are correlated by construction. It costs no
forward pass and one small matrix product per class, where re-running with other seeds would cost the
explanation again. It shrinks like 1/sqrt(samples); on synthetic models the spread of weights over 6-12
seeds was 0.83-1.02x the mean standard error (one and two stages, random pairs); with the orthogonal
blocks, on Lite0 (10 validation images x 8 seeds, the refined pieces) 0.57-1.10x, median 0.91: a little
cautious, as a balanced design varies less than independent pairs (within a block a region's column is
also tied to some products of three others, which the pairs-as-clusters sandwich does not model). It
leaves out ridge's shrinkage bias (small at ~172 samples) and the choice of segmentation.

Works with any `predict_fn`: a batch (n, H, W, 3) of RGB 0-255 float32 images -> (n, classes)
probabilities, the same contract lime has (and `serving.classifier.Classifier` fulfils).
Deterministic for a given seed. Region columns are 0..S-1; people see them as ids 1..S
(`regions.region_id`); pictures and tables are drawn by `overlay.py`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from lime.lime_image import LimeImageExplainer
from scipy.linalg import hadamard
from scipy.ndimage import gaussian_filter
from skimage import segmentation
from sklearn.metrics import pairwise_distances

from .regions import TOP_K, top_superpixels

KERNEL_WIDTH = 0.25  # lime_image.LimeImageExplainer's default
RIDGE_ALPHA = 1.0  # lime_base.LimeBase's Ridge(alpha=1)
# Dermatoscopic images at ~150x200 are smooth, with one lesion and low-contrast borders: SLIC in Lab
# follows the lesion border, is deterministic and takes ~20 ms (quickshift with lime's parameters:
# 0.3-1 s, ~60-100 regions). The count decides how many samples a stable ranking needs: measured on
# MobileNetV2 with paired masks, top-5 stability over 5 seeds at 400 samples was 0.91 with ~11
# superpixels, 0.80-0.85 with ~14, 0.77 with ~23 and 0.65-0.75 with ~47; ~11 regions still cut a
# lesion into several parts, hence the coarse-to-fine refinement above. Felzenszwalb merges smooth
# skin into very few, very uneven regions.
SEGMENTATIONS = {
    "slic": dict(n_segments=12, compactness=10.0, sigma=1.0, start_label=0),
    "quickshift": dict(kernel_size=4, max_dist=200, ratio=0.2),  # lime's defaults
    "felzenszwalb": dict(scale=50, sigma=0.8, min_size=300),
}
DEFAULT_SEGMENTATION = "slic"
COARSE_REGIONS = SEGMENTATIONS["slic"]["n_segments"]  # the most regions one stage explains stably
DETAIL_RANGE = (5, 50)  # regions wanted: fewer than TOP_K makes the top 5 everything; more needs far more samples
DEFAULT_DETAIL = 25
REFINE_PARTS = 4  # an average coarse region is cut into this many pieces (more when detail asks for more)
MIN_ORDER = 32  # the smallest Hadamard order of a block (64 rows): a whole block or two even with few regions
BLOCKS = 2.5  # orthogonal blocks per explanation by default: 13 + 160 samples at the default detail (module docstring)
FILLS = ("mean", "blur")
_SEGMENT_CACHE_SIZE = 16
_segment_cache: OrderedDict[str, np.ndarray] = OrderedDict()


def check_detail(detail) -> int:
    """`detail` as an int, or ValueError with a sentence for a person."""
    low, high = DETAIL_RANGE
    if isinstance(detail, bool) or not isinstance(detail, numbers.Integral) or not low <= detail <= high:
        raise ValueError(f"detail must be a whole number of regions from {low} to {high}, not {detail!r}.")
    return int(detail)


def segment(image, method: str = DEFAULT_SEGMENTATION, **params) -> np.ndarray:
    """Superpixel labels 0..S-1 (read-only int array of the image's height and width).

    Cached by image content and parameters, so re-explaining or comparing models on the same
    image segments it once.
    """
    if method not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {', '.join(SEGMENTATIONS)}, not {method!r}.")
    image = np.ascontiguousarray(image, dtype="float32")
    settings = {**SEGMENTATIONS[method], **params}
    key = hashlib.sha1(image.tobytes() + repr((image.shape, method, sorted(settings.items()))).encode()).hexdigest()
    if key in _segment_cache:
        _segment_cache.move_to_end(key)
        return _segment_cache[key]
    labels = getattr(segmentation, method)(image / 255.0, **settings)
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)  # consecutive from 0
    labels.setflags(write=False)
    _segment_cache[key] = labels
    if len(_segment_cache) > _SEGMENT_CACHE_SIZE:
        _segment_cache.popitem(last=False)
    return labels


# ----------------------------------------------------------------------------- detail

def _bisect(mask: np.ndarray) -> np.ndarray:
    """Two labels (0/1) over the pixels of `mask`: cut across its longer extent at the median."""
    ys, xs = np.nonzero(mask)
    coordinate = ys if np.ptp(ys) >= np.ptp(xs) else xs
    return (coordinate > np.median(coordinate)).astype(np.int64) if np.ptp(coordinate) else (
        np.arange(len(ys)) >= len(ys) // 2).astype(np.int64)


def split_region(image, mask, parts: int) -> np.ndarray:
    """Labels 0..q-1 (q <= parts, q >= 2 when the region has 2+ pixels) for the pixels of `mask`, in
    `np.nonzero(mask)` order: SLIC inside the region's own outline, a straight cut if SLIC keeps it whole."""
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if len(ys) < 2 or parts < 2:
        return np.zeros(len(ys), dtype=np.int64)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    settings = {**SEGMENTATIONS["slic"], "n_segments": int(parts), "start_label": 1}
    labels = segmentation.slic(np.asarray(image, dtype="float32")[box] / 255.0, mask=mask[box], **settings)
    pieces = np.unique(labels[mask[box]], return_inverse=True)[1].reshape(-1).astype(np.int64)
    return pieces if pieces.max() >= 1 else _bisect(mask)


def _renumber(key: np.ndarray) -> np.ndarray:
    """Consecutive labels 0.. in the order regions first appear in reading order (ids read top-left first)."""
    _, first, inverse = np.unique(key.ravel(), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse].reshape(key.shape)


def _top_up(image, labels: np.ndarray, detail: int) -> np.ndarray:
    """Halve the largest region (SLIC, else a straight cut) until there are `detail` regions."""
    labels = np.array(labels, dtype=np.int64)
    while labels.max() + 1 < detail:
        areas = np.bincount(labels.ravel())
        largest = int(np.argmax(areas))
        if areas[largest] < 2:
            break
        mask = labels == largest
        pieces = split_region(image, mask, 2)
        labels[mask] = np.where(pieces == 0, largest, labels.max() + 1)
    return labels


def refine_parts(detail: int, n_coarse: int) -> int:
    """Pieces per average coarse region: REFINE_PARTS, or enough to reach `detail` refining about half of them."""
    return max(REFINE_PARTS, 1 + math.ceil(2 * max(detail - n_coarse, 0) / n_coarse))


def refine(image, coarse, order, detail: int, parts: int | None = None,
           at_least: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fine segments, parent coarse region of each fine region): the first `at_least` coarse regions
    in `order` (most important first), and more in that order while there are fewer than `detail`
    regions, are cut into pieces of about equal area.

    Pieces are sized so that an average coarse region gives `parts` of them (default: REFINE_PARTS,
    more when `detail` could not be reached by refining about half of the picture). The result
    depends only on which regions are refined, not on their order, and is numbered in reading order.
    """
    coarse = np.asarray(coarse)
    n_coarse = int(coarse.max()) + 1
    parts = refine_parts(detail, n_coarse) if parts is None else parts
    areas = np.bincount(coarse.ravel(), minlength=n_coarse)
    piece_area = coarse.size / n_coarse / parts
    sub = np.zeros(coarse.shape, dtype=np.int64)
    count = n_coarse
    for position, region in enumerate(order):
        if count >= detail and position >= at_least:
            break
        mask = coarse == region
        pieces = split_region(image, mask, max(2, int(round(areas[region] / piece_area))))
        sub[mask] = pieces
        count += int(pieces.max())
    fine = _renumber(coarse.astype(np.int64) * (int(sub.max()) + 1) + sub)
    if fine.max() + 1 < detail:
        fine = _renumber(_top_up(image, fine, detail))
    parents = np.zeros(int(fine.max()) + 1, dtype=np.int64)
    parents[fine.ravel()] = coarse.ravel()
    fine.setflags(write=False)
    return fine, parents


def coarse_segments(image, method: str = DEFAULT_SEGMENTATION, detail: int = DEFAULT_DETAIL) -> np.ndarray:
    """The first-stage map: SLIC with min(detail, COARSE_REGIONS) segments (others: their own settings),
    halved where needed to reach `detail` when one stage is enough (detail <= COARSE_REGIONS)."""
    detail = check_detail(detail)
    params = {"n_segments": min(detail, COARSE_REGIONS)} if method == "slic" else {}
    labels = segment(image, method, **params)
    if labels.max() + 1 < detail <= COARSE_REGIONS:
        labels = _top_up(image, labels, detail)
        labels.setflags(write=False)
    return labels


# ----------------------------------------------------------------------------- sampling

def block_rows(n_features: int) -> int:
    """Rows of one orthogonal block over `n_features` regions: twice the Hadamard order used, the smallest
    power of two above n_features and at least MIN_ORDER."""
    return 2 * max(MIN_ORDER, 1 << int(n_features).bit_length())


def orthogonal_pairs(n_samples: int, n_features: int, seed=0, first_shown: bool = False) -> np.ndarray:
    """(n_samples, n_features) 0/1 masks in complementary pairs, drawn block by block from a Hadamard matrix.

    Each block takes n_features random non-constant columns of a Sylvester Hadamard matrix with random
    signs and shuffled rows, every row followed by its complement: over a whole block each region is
    shown in exactly half the rows and any two regions are shown together in exactly a quarter, so the
    columns are orthogonal where lime's coin flips are only so on average (measured in the module
    docstring). With `first_shown`, the first block's signs make the first row show everything, as in lime.
    """
    n_samples, n_features = int(n_samples), int(n_features)
    order = block_rows(n_features) // 2
    columns = hadamard(order)[:, 1:]
    rng = np.random.default_rng(seed)
    blocks = []
    for block in range(-(-n_samples // (2 * order))):
        rows = columns[rng.permutation(order)][:, rng.choice(order - 1, n_features, replace=False)]
        rows = rows * (rows[:1] if first_shown and block == 0 else rng.choice((-1, 1), n_features))
        halves = (rows > 0).astype(np.int64)
        pairs = np.empty((2 * order, n_features), dtype=np.int64)
        pairs[0::2], pairs[1::2] = halves, 1 - halves
        blocks.append(pairs)
    return np.concatenate(blocks)[:n_samples] if blocks else np.ones((0, n_features), dtype=np.int64)


def perturbation_masks(n_samples: int, n_segments: int, seed: int = 0) -> np.ndarray:
    """One-stage masks: `orthogonal_pairs` over every superpixel, the first row showing everything (as in lime)."""
    return orthogonal_pairs(n_samples, n_segments, int(seed), first_shown=True)


def occlusion_masks(n_regions: int) -> np.ndarray:
    """(1 + S, S): the image, then each region hidden alone (the first stage of coarse to fine)."""
    masks = np.ones((n_regions + 1, n_regions), dtype=np.int64)
    masks[np.arange(1, n_regions + 1), np.arange(n_regions)] = 0
    return masks


def refined_masks(n_samples: int, parents, refined, seed: int = 0) -> np.ndarray:
    """Second-stage masks over the fine regions: `orthogonal_pairs` over the pieces of the `refined`
    coarse regions, every other region shown (1) in every row."""
    parents = np.asarray(parents)
    varied = np.isin(parents, list(refined))
    masks = np.ones((n_samples, len(parents)), dtype=np.int64)
    masks[:, varied] = orthogonal_pairs(n_samples, int(varied.sum()), [int(seed), 1])
    return masks


def hidden_fill(image, segments, fill: str = "mean") -> np.ndarray:
    """What a hidden superpixel looks like: its mean colour (lime's default) or a heavy blur."""
    image = np.asarray(image, dtype="float32")
    if fill == "mean":
        flat = segments.ravel()
        counts = np.bincount(flat)
        means = np.stack([np.bincount(flat, weights=image[..., c].ravel()) / np.maximum(counts, 1)
                          for c in range(3)], axis=1)
        return means.astype("float32")[segments]
    if fill == "blur":
        sigma = max(image.shape[:2]) / 20
        return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")
    raise ValueError(f"fill must be one of {', '.join(FILLS)}, not {fill!r}.")


def render(image, segments, masks, filler) -> np.ndarray:
    """Perturbed images (n, H, W, 3): pixels of superpixels whose mask entry is 0 come from `filler`.

    Read-only, so models that share a network (an ensemble and its members) may reuse one forward pass."""
    masks = np.asarray(masks, dtype=bool)
    batch = np.empty((len(masks), *segments.shape, 3), dtype="float32")  # C order: runtimes take it without a copy
    batch[:] = filler
    np.copyto(batch, np.asarray(image, dtype="float32"), where=masks[:, segments][..., None])
    batch.setflags(write=False)
    return batch


def predict_all(predict_fns: dict, image, segments, masks, filler, batch_size: int) -> dict[str, np.ndarray]:
    """Every model's probabilities on the perturbed images, each batch rendered once for all models."""
    outputs = {name: [] for name in predict_fns}
    for start in range(0, len(masks), batch_size):
        batch = render(image, segments, masks[start:start + batch_size], filler)
        for name, predict_fn in predict_fns.items():
            outputs[name].append(np.asarray(predict_fn(batch), dtype="float64"))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


# ----------------------------------------------------------------------------- the fit

@functools.cache
def _lime_base():
    """lime's LimeBase with exactly lime_image's kernel (sqrt(exp(-d^2 / w^2)), w = 0.25)."""
    return LimeImageExplainer(kernel_width=KERNEL_WIDTH).base


def lime_weights(masks, probabilities, label: int) -> tuple[np.ndarray, float]:
    """(per-superpixel weights, R^2) of lime's own LimeBase fit for one class: the reference `ridge_fit` matches.

    feature_selection='none' keeps every superpixel, which is what lime_image's default
    (num_features=100000 -> 'highest_weights' over all features) amounts to, minus one extra fit.
    """
    distances = pairwise_distances(masks, masks[:1], metric="cosine").ravel()
    _, pairs, score, _ = _lime_base().explain_instance_with_data(
        masks, probabilities, distances, label, masks.shape[1], feature_selection="none")
    weights = np.zeros(masks.shape[1])
    for feature, weight in pairs:
        weights[feature] = weight
    return weights, float(score)


def kernel_weights(masks) -> np.ndarray:
    """lime_image's sample weights: sqrt(exp(-d^2 / 0.25^2)), d the cosine distance to the unperturbed row
    (all ones): for 0/1 rows, d = 1 - sqrt(shown / S)."""
    masks = np.asarray(masks, dtype="float64")
    distances = 1 - np.sqrt(masks.sum(axis=1) / masks.shape[1])
    return np.sqrt(np.exp(-distances ** 2 / KERNEL_WIDTH ** 2))


@dataclass(frozen=True)
class RidgeFit:
    weights: np.ndarray  # (classes, S)
    intercepts: np.ndarray  # (classes,)
    scores: np.ndarray  # (classes,) weighted R^2, as LimeBase reports it
    errors: np.ndarray | None  # (classes, S) standard errors, when asked for


def ridge_fit(masks, probabilities, pairs=None, errors: bool = False, strata=None,
              pooled_kernel: bool = False) -> RidgeFit:
    """lime's weighted Ridge (kernel weights, alpha 1, unpenalised intercept) for every class in one solve.

    `pooled_kernel` gives every row of a cluster (`pairs`) the cluster's mean kernel weight. lime's
    kernel weighs a mask and its complement differently (the one showing more counts more), which
    undoes what pairing buys: with equal weights a pair's two rows cancel every even-order interaction
    of regions out of the weights (measured with orthogonal blocks: top-5 stability 0.80 -> 0.85).

    `strata` (one value per row; default all rows alike) gives each stratum its own unpenalised
    intercept: the coarse and the fine stage of a coarse-to-fine explanation, whose rows show the
    picture in different ways (half of it hidden, or only pieces of the lesion), so the difference
    in level between them is not pinned on the regions that are shown in all fine rows.
    With `errors`, also each weight's standard error: the cluster-robust sandwich
    A^-1 (sum_g s_g s_g^T) A^-1 * G/(G-1) * (n-1)/(n-df), A = Xc'WXc + alpha I, s_g the summed
    w_i r_i xc_i of cluster g, df the ridge's effective degrees of freedom plus the intercepts.
    `pairs` gives each row's cluster (default: row // 2, the complementary pairs; clusters must be
    runs of consecutive rows).
    """
    X = np.asarray(masks, dtype="float64")
    Y = np.asarray(probabilities, dtype="float64")
    n, p = X.shape
    groups = np.arange(n) // 2 if pairs is None else np.asarray(pairs)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])  # clusters are runs of rows
    w = kernel_weights(X)
    if pooled_kernel:
        sizes = np.diff(np.r_[starts, n])
        w = np.repeat(np.add.reduceat(w, starts) / sizes, sizes)
    strata = np.zeros(n, dtype=np.int64) if strata is None else np.unique(strata, return_inverse=True)[1].ravel()
    Xc, Yc = np.empty_like(X), np.empty_like(Y)
    means = []
    for stratum in range(int(strata.max()) + 1):
        rows = strata == stratum
        share = w[rows] / w[rows].sum()
        means.append((share @ X[rows], share @ Y[rows]))
        Xc[rows], Yc[rows] = X[rows] - means[-1][0], Y[rows] - means[-1][1]
    A = Xc.T @ (w[:, None] * Xc) + RIDGE_ALPHA * np.eye(p)
    A_inv = np.linalg.inv(A)
    beta = A_inv @ (Xc.T @ (w[:, None] * Yc))  # (S, classes)
    residuals = Yc - Xc @ beta
    total = w @ (Y - w @ Y / w.sum()) ** 2
    unexplained = w @ residuals ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1 - unexplained / total, np.where(unexplained > 0, 0.0, 1.0))
    x_mean, y_mean = means[strata[0]]
    standard_errors = None
    if errors:
        contributions = (w[:, None] * residuals)[:, None, :] * Xc[:, :, None]  # (n, S, classes)
        sums = np.add.reduceat(contributions, starts, axis=0)  # (G, S, classes)
        meat = np.einsum("gsc,gtc->cst", sums, sums)
        covariance = A_inv[None] @ meat @ A_inv[None]
        n_groups = len(starts)
        dof = p - RIDGE_ALPHA * np.trace(A_inv) + len(means)
        correction = n_groups / max(n_groups - 1, 1) * (n - 1) / max(n - dof, 1.0)
        standard_errors = np.sqrt(np.maximum(np.diagonal(covariance, axis1=1, axis2=2), 0) * correction)
    return RidgeFit(beta.T.copy(), y_mean - x_mean @ beta, scores, standard_errors)


# ----------------------------------------------------------------------------- explanations

@dataclass
class Explanation:
    """One model's explanation of one image; `weights[c]` is lime's weight per region for class c.

    Region j (column j of masks and weights, value j in `segments`) is shown to people as id j + 1."""

    image: np.ndarray  # float32 (H, W, 3) as explained (the model's input)
    segments: np.ndarray  # (H, W) region of each pixel, 0..S-1
    masks: np.ndarray  # (samples, S) the perturbations used, over the final regions
    probabilities: np.ndarray  # (samples, classes) the model's outputs on them; row 0 = the image
    label: int  # the explained class (the map is refined for it)
    weights: np.ndarray  # (classes, S)
    weight_errors: np.ndarray  # (classes, S) standard error of each weight
    scores: np.ndarray  # (classes,) R^2 of each local linear fit
    seconds: float
    parents: np.ndarray  # (S,) the coarse region each region belongs to (itself in a one-stage map)
    coarse_samples: int  # rows of `masks` from the occlusion stage (all of them in a one-stage map)

    @property
    def samples(self) -> int:
        return len(self.masks)

    @property
    def regions(self) -> int:
        return len(self.parents)

    @property
    def fill_segments(self) -> np.ndarray:
        """The map whose mean colours filled hidden regions (the coarse one): for `hidden_fill`."""
        return self.parents[self.segments]

    def top(self, k: int = TOP_K, label: int | None = None) -> np.ndarray:
        return top_superpixels(self.weights[self.label if label is None else label], k)


def _check_label(label, n_classes: int | None = None):
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or label < 0 or (
            n_classes is not None and label >= n_classes):
        upper = f" to {n_classes - 1}" if n_classes else ""
        raise ValueError(f"label must be a class index from 0{upper}, not {label!r}.")
    return int(label)


def default_samples(n_varied: int, n_first: int = 0) -> int:
    """The default number of samples: `n_first` rows of a first stage, then BLOCKS orthogonal blocks over the
    `n_varied` regions the second stage perturbs (160 rows up to 31 regions, 320 up to 63; whole pairs)."""
    return n_first + 2 * round(BLOCKS * block_rows(n_varied) / 2)


# what a default explanation of a ~150x200 lesion image costs: the occlusion rows of a 12-region coarse map,
# then the pieces (fewer than the regions wanted, so the same block size as DEFAULT_DETAIL regions)
TYPICAL_SAMPLES = default_samples(n_varied=DEFAULT_DETAIL, n_first=COARSE_REGIONS + 1)


def compare(predict_fns: dict, image, label: int | None = None, seed: int = 0, detail: int = DEFAULT_DETAIL,
            segmentation: str = DEFAULT_SEGMENTATION, fill: str = "mean", samples: int | None = None,
            max_samples: int = 1000, batch_size: int = 50) -> dict[str, Explanation]:
    """Explain several models on the same segmentation, the same perturbations and the same class.

    `label=None` explains the first model's predicted class, for every model (so the pictures can be
    compared); an int is that class for every model (ValueError when it is not a class index).
    `detail` is the number of regions wanted (DETAIL_RANGE; >= detail in the final map): above
    COARSE_REGIONS it runs coarse to fine (module docstring), sharing the refinement between models.

    `samples` is the number of perturbed images each model sees (default: `default_samples`, ~173 at
    the default detail), at most `max_samples`; a coarse-to-fine explanation always has its occlusion
    stage and one pair, even when that is more. Deterministic for a given seed.
    """
    start = time.perf_counter()
    if not predict_fns:
        raise ValueError("Give at least one model to explain.")
    detail = check_detail(detail)
    label = _check_label(label)
    for name, value in (("samples", samples), ("max_samples", max_samples)):
        if (value is not None or name == "max_samples") and (
                isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2):
            raise ValueError(f"{name} must be a whole number of at least 2, not {value!r}.")
    image = np.asarray(image, dtype="float32")
    coarse = coarse_segments(image, segmentation, detail)
    n_coarse = int(coarse.max()) + 1
    filler = hidden_fill(image, coarse, fill)
    n_classes: list[int] = []

    def checked(outputs: dict, rows: int) -> dict:
        for name, probabilities in outputs.items():
            if probabilities.ndim != 2 or len(probabilities) != rows:
                raise ValueError(f"The model {name!r} must return a (samples, classes) array of probabilities, "
                                 f"one row per image.")
            n_classes.append(probabilities.shape[1])
        if len(set(n_classes)) > 1:
            raise ValueError("The models to compare must return the same number of classes.")
        return outputs

    def explained_class(outputs: dict) -> int:
        """The class asked for, else the first model's top class on row 0 (the whole image)."""
        first = next(iter(outputs.values()))
        return int(np.argmax(first[0])) if label is None else _check_label(label, first.shape[1])

    def budget(n_varied: int, n_first: int) -> int:
        wanted = default_samples(n_varied, n_first) if samples is None else samples
        return max(min(wanted, max_samples), n_first + 2)

    if n_coarse < detail:  # 1. the image and each coarse region hidden alone, for every model: which to refine
        stage_masks = occlusion_masks(n_coarse)
        outputs_1 = checked(predict_all(predict_fns, image, coarse, stage_masks, filler, batch_size), len(stage_masks))
        label = explained_class(outputs_1)
        importance = np.zeros(n_coarse)
        for outputs in outputs_1.values():
            drops = np.abs(outputs[0, label] - outputs[1:, label])
            if drops.max() > 0:
                importance += drops / drops.max()  # every model counts the same
        parts = refine_parts(detail, n_coarse)
        refine_k = min(n_coarse, math.ceil((detail - n_coarse) / (parts - 1)))
        order = np.argsort(-importance, kind="stable")
        segments, parents = refine(image, coarse, order, detail, parts, at_least=refine_k)
        refined = np.flatnonzero(np.bincount(parents) > 1)
        n_1 = len(stage_masks)
        n_2 = budget(int(np.isin(parents, refined).sum()), n_1) - n_1
        masks = np.concatenate([stage_masks[:, parents], refined_masks(n_2, parents, refined, seed)])
        outputs_2 = checked(predict_all(predict_fns, image, segments, masks[n_1:], filler, batch_size), n_2)
        outputs = {name: np.concatenate([outputs_1[name], outputs_2[name]]) for name in predict_fns}
        rows = np.arange(len(masks))  # each occlusion row alone, then the pairs; each stage its own intercept
        pairs, strata = np.where(rows < n_1, rows, n_1 + (rows - n_1) // 2), rows >= n_1
    else:
        segments, parents, n_1 = coarse, np.arange(n_coarse), None
        masks = perturbation_masks(budget(n_coarse, 0), n_coarse, seed)
        outputs = checked(predict_all(predict_fns, image, coarse, masks, filler, batch_size), len(masks))
        label = explained_class(outputs)
        pairs, strata = np.arange(len(masks)) // 2, None

    explanations = {}
    for name, probabilities in outputs.items():
        fit = ridge_fit(masks, probabilities, pairs, errors=True, strata=strata, pooled_kernel=True)
        explanations[name] = Explanation(image, segments, masks, probabilities, label, fit.weights, fit.errors,
                                         fit.scores, 0.0, parents, len(masks) if n_1 is None else n_1)
    seconds = time.perf_counter() - start
    for explanation in explanations.values():
        explanation.seconds = seconds  # the whole comparison: what the person waited for
    return explanations


def explain(predict_fn, image, **options) -> Explanation:
    """One model's explanation; options as in `compare` (`label=None`: the model's predicted class)."""
    return compare({"model": predict_fn}, image, **options)["model"]
