"""What the app does, as plain Python: the Gradio UI, its API endpoints and the CLI all call this.

Every entry point takes an image from any source (path, bytes, array, PIL image) and a model name
from the registry, so the UI stays a thin layer of widgets over these functions.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from ..classes import CLASSES, display_name
from ..explain import gradcam, lime
from ..images import load_image
from ..metrics import fmt
from ..model_folder import CONFUSION_MATRIX_FILE
from .ood import OodUnavailable
from .store import ModelStore

EXPLAIN_METHODS = ("lime", "gradcam")
log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request a person can fix (no model ticked, an unknown method): its message is shown to them as is."""


@dataclass
class ExplainResult:
    overlay: np.ndarray  # uint8 (H, W, 3) at the model's input size
    label: str  # the class explained
    weights: dict[str, float]  # LIME: superpixel id -> weight; Grad-CAM: empty
    samples: int
    seconds: float
    method: str

    def summary(self) -> str:
        what = f"{self.samples} perturbed samples" if self.method == "lime" else "one gradient pass"
        return f"{self.method.upper()} for {display_name(self.label)}: {what}, {self.seconds:.2f} s."


class SkinDemo:
    """Predict, explain and compare with the models of one registry."""

    def __init__(self, store: ModelStore | None = None):
        self.store = store or ModelStore()

    # ------------------------------------------------------------------ models
    def model_names(self) -> list[str]:
        return list(self.store.available)

    def model_choices(self) -> list[tuple[str, str]]:
        """(label shown, name) for dropdowns; only models that loaded."""
        return [(self.store.entries[name].display_name, name) for name in self.store.available]

    def unavailable_report(self) -> str:
        lines = [f"- **{self.store.entries[n].display_name}** (`{n}`): {why}" for n, why in self.store.unavailable.items()]
        return ("Unavailable models:\n" + "\n".join(lines)) if lines else ""

    def accelerate(self) -> dict[str, str]:
        """Serve every loaded model through onnxruntime (engines.py), unless SKIN_DEMO_RUNTIME=keras.

        Returns model name -> why it stays on Keras. Takes ~3-5 s per model the first time (the
        converted graphs are cached on disk), so the app runs it in the background at start."""
        if os.environ.get("SKIN_DEMO_RUNTIME", "onnxruntime") == "keras":
            return {}
        reasons = {name: clf.accelerate() for name, clf in list(self.store.available.items())}
        for name, reason in reasons.items():
            if reason:
                log.warning("%s stays on Keras: %s", name, reason)
        return {name: reason for name, reason in reasons.items() if reason}

    def model_info(self, name: str) -> tuple[str, str | None]:
        """Markdown about a model (from its own folder's metrics) and its confusion matrix image path."""
        classifier = self.store.get(name)
        entry, info = self.store.entries[name], classifier.info
        height, width = classifier.input_size
        lines = [f"### {entry.display_name}", entry.description, "",
                 f"- backbone `{info.backbone}` ({info.pretrained}), "
                 f"{info.parameters or classifier.model.count_params():,} parameters, input {height}x{width}",
                 f"- source: `{entry.location}`; runs on {classifier.runtime}"]
        test = info.test_metrics
        if test:
            lines += [f"- internal lesion-disjoint test split ({test['n']} images): balanced accuracy "
                      f"**{fmt(test['balanced_accuracy'], '.3f')}**, macro AUC **{fmt(test['macro_auc'], '.3f')}**, "
                      f"accuracy {fmt(test['accuracy'], '.3f')}, ECE {fmt(test['ece'], '.3f')}", "",
                      "| class | recall | specificity | AUC |", "|---|---|---|---|"]
            for code in CLASSES:
                c = test["per_class"][code]
                lines.append(f"| {display_name(code)} | {c['recall']:.2f} | {c['specificity']:.2f} | "
                             f"{c['auc']:.3f} |" if c["auc"] is not None else f"| {display_name(code)} | – | – | – |")
        folder = classifier.folder
        matrix = folder / CONFUSION_MATRIX_FILE if folder else None
        return "\n".join(lines), str(matrix) if matrix and matrix.is_file() else None

    # ------------------------------------------------------------------ predict
    def probabilities(self, image, model: str) -> dict[str, float]:
        """Class code -> probability, highest first (raises ImageError / ModelUnavailable)."""
        return self.store.get(model).predict(image)

    def predict(self, image, model: str) -> dict[str, float]:
        """Display name ('Melanoma (mel) · malignant') -> probability: what gr.Label shows."""
        return {display_name(code): p for code, p in self.probabilities(image, model).items()}

    def ood_warning(self, image, model: str) -> str | None:
        """A sentence to show when the image does not look like a dermatoscopic lesion image, else None.

        None too when the model has no fitted detector: the warning is an extra, never a reason to fail."""
        try:
            score, is_outlier = self.store.get(model).ood(image)
        except OodUnavailable:
            return None
        if not is_outlier:
            return None
        return (f"This picture does not look like the dermatoscopic lesion images the model was trained on "
                f"(outlier score {score:.0f}); its answer is probably meaningless here.")

    # ------------------------------------------------------------------ explain
    def explain(self, image, model: str, num_features: int = 5, max_samples: int = 1000,
                method: str = "lime", seed: int = 0) -> ExplainResult:
        return self.compare(image, [model], num_features, max_samples, method, seed)[1][model]

    def compare(self, image, models: list[str], num_features: int = 5, max_samples: int = 1000,
                method: str = "lime", seed: int = 0) -> tuple[dict[str, dict[str, float]], dict[str, ExplainResult]]:
        """Probabilities of every model and their explanations.

        LIME runs on one segmentation and one mask set shared by all models (so the pictures are
        comparable); models of different input sizes share them at the first model's size.
        """
        if method not in EXPLAIN_METHODS:
            raise RequestError(f"method must be one of {EXPLAIN_METHODS}, not {method!r}")
        if not models:
            raise RequestError("Choose at least one model.")
        classifiers = {name: self.store.get(name) for name in dict.fromkeys(models)}
        rgb = load_image(image)
        fitted = next(iter(classifiers.values())).prepare(rgb)
        probs = {name: clf.predict(rgb) for name, clf in classifiers.items()}
        results = {}
        if method == "gradcam":
            no_network = [name for name, clf in classifiers.items() if not hasattr(clf, "model")]
            if no_network:
                raise RequestError(f"Grad-CAM needs a single network; {', '.join(no_network)} is an ensemble: "
                                   "use LIME for it.")

            for name, clf in classifiers.items():
                start = time.perf_counter()
                picture = clf.prepare(rgb)
                label = CLASSES.index(next(iter(probs[name])))
                heat = gradcam.gradcam(clf, picture, label)
                results[name] = ExplainResult(gradcam.gradcam_overlay(picture, heat), CLASSES[label], {}, 1,
                                              time.perf_counter() - start, method)
            return probs, results
        # each classifier resizes the shared picture to its own input size inside its call
        explanations = lime.compare(classifiers, fitted, seed=seed, max_samples=int(max_samples))
        for name, e in explanations.items():
            weights = e.weights[e.label]
            order = np.argsort(-np.abs(weights))
            results[name] = ExplainResult(
                lime.overlay(e, num_features=int(num_features)), CLASSES[e.label],
                {str(int(i)): round(float(weights[i]), 5) for i in order}, e.samples, e.seconds, method)
        return probs, results

