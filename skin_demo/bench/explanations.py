"""Measure the fast explainer against lime's reference path, in the same run on the same images.

`python -m skin_demo benchmark-explain (--model weights/NAME | --entry NAME) [--images N] [--detail N]
[--compare DIR ... | --compare-served] [--json]`

lime's reference runs the Keras model (the compiled call, as users pass it to lime); ours runs the
same model through onnxruntime when `Classifier.accelerate` allows, and is also timed on Keras so the
report separates what the runtime buys from what the algorithm buys.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
from lime.lime_image import LimeImageExplainer

from ..explain import faithfulness, gradcam, lime
from ..serving.classifier import Classifier
from ..training import data


def _lime_default_seconds(classifier, image) -> float:
    """lime's reference path as users call it: LimeImageExplainer defaults (quickshift, 1000 samples)."""
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # lime 0.2.0.1's tqdm bar has no off switch
        LimeImageExplainer().explain_instance(image, classifier)
    return time.perf_counter() - start


def _gradcam_map(classifier, image, label: int) -> np.ndarray:
    """Grad-CAM of a network; of an ensemble, the mean of its members' maps (each member is a network)."""
    networks = getattr(classifier, "members", None) or [classifier]
    return np.mean([gradcam.gradcam(network, image, label) for network in networks], axis=0)


def _faithfulness(classifier, image, result, seed: int) -> dict[str, dict[str, float]]:
    """Deletion/insertion AUC of the LIME, Grad-CAM and a random ranking of the explanation's regions, every
    one hiding regions the way the explanation's samples did (`fill_segments`: a coarse-to-fine map fills
    a hidden piece with its coarse parent's mean colour)."""
    segments = result.segments
    rankings = {
        "gradcam": faithfulness.ranking_from_heatmap(segments, _gradcam_map(classifier, image, result.label)),
        "random": np.random.default_rng(seed).permutation(int(segments.max()) + 1),
    }
    return {"lime": faithfulness.explanation_auc(classifier, result),
            **{name: faithfulness.deletion_insertion_auc(classifier, image, segments, ranking, result.label,
                                                         fill_segments=result.fill_segments)
               for name, ranking in rankings.items()}}


def _mean(values) -> float:
    return float(np.mean(values))


def benchmark(model_dir=None, n_images: int = 5, compare_dirs=(), compare_models: dict | None = None,
              seed: int = 0, detail: int = lime.DEFAULT_DETAIL, load=None) -> dict:
    """Timings, samples, agreement, stability and faithfulness averaged over real test images, at `detail`
    regions (the app's default unless given), of the model in `model_dir`, or of what `load()` returns
    (a fresh classifier on Keras each call, e.g. a registry entry: TTA and ensembles too).

    Compare mode times `compare_models` (name -> classifier, e.g. every served model) or, else, the
    model with the `compare_dirs` folders."""
    load = load or (lambda: Classifier.from_folder(model_dir))
    keras_classifier, classifier = load(), load()
    runtime_note = classifier.accelerate()
    paths, _ = data.labelled_split("test")
    chosen = np.random.default_rng(seed).choice(len(paths), n_images, replace=False)
    images = [classifier.prepare(paths[i]) for i in chosen]
    for warm in (classifier, keras_classifier):
        lime.explain(warm, images[0], max_samples=100, detail=detail)  # trace the forward passes once
    rows = []
    for index, image in zip(chosen, images):
        lime_seconds = _lime_default_seconds(keras_classifier, image)
        keras_seconds = lime.explain(keras_classifier, image, seed=seed, detail=detail).seconds
        result = lime.explain(classifier, image, seed=seed, detail=detail)
        reference = faithfulness.lime_reference(classifier, image, result.segments, result.label, seed=seed,
                                           batch_size=128)
        views = faithfulness.seed_views(classifier, image, detail=detail)
        rows.append({
            "image": str(paths[index]),
            "lime_seconds": lime_seconds,
            "seconds_keras_runtime": keras_seconds,
            "seconds": result.seconds,
            "samples": result.samples,
            "regions": result.regions,
            "agreement": faithfulness.agreement(result, reference),
            "stability": faithfulness.views_stability(views),
            "tie_flags_kept": faithfulness.tie_flags_kept(views),
            "auc": _faithfulness(classifier, image, result, seed + int(index)),
        })
    averaged = ("lime_seconds", "seconds_keras_runtime", "seconds", "samples", "regions", "agreement", "stability")
    report = {
        "model": classifier.name,
        "input_size": list(classifier.input_size),
        "runtime": classifier.runtime if runtime_note is None else f"keras ({runtime_note})",
        "images": len(rows),
        "detail": detail,
        **{key: _mean([r[key] for r in rows]) for key in averaged},
        "auc": {method: {curve: _mean([r["auc"][method][curve] for r in rows]) for curve in ("deletion", "insertion")}
                for method in rows[0]["auc"]},
        "per_image": rows,
    }
    report["speedup"] = report["lime_seconds"] / report["seconds"]
    # the images differ far more than the seeds: a few with near-equal regions decide the mean
    stabilities = [r["stability"] for r in rows]
    report["stability_se"] = float(np.std(stabilities, ddof=1) / np.sqrt(len(rows))) if len(rows) > 1 else None
    for flag in ("clear", "tied"):  # over every region and seed pair of every image, not per image
        shares = [share for r in rows for share in r["tie_flags_kept"][flag]]
        report[f"kept_when_{flag}"] = _mean(shares) if shares else None
        report[f"top_regions_{flag}"] = len(shares)
    models = compare_models
    if not models and compare_dirs:
        others = [Classifier.from_folder(folder) for folder in compare_dirs]
        models = {classifier.name: classifier, **{other.name: other for other in others}}
    if models:
        for model in models.values():
            model.accelerate()
            model(images[0][None])  # trace before timing
        views = [lime.compare(models, image, seed=seed, detail=detail) for image in images]
        report["compare"] = {
            "models": list(models),
            "seconds": _mean([next(iter(v.values())).seconds for v in views]),  # the whole comparison
            "samples": {name: _mean([v[name].samples for v in views]) for name in models},
        }
    return report
