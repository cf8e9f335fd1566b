"""What the app does, as plain Python: the Gradio UI, its API endpoints and the CLI all call this.

Every entry point takes an image from any source (path, bytes, array, PIL image) and a model name
from the registry, so the UI stays a thin layer of widgets over these functions.

Explanations (`explain`, `compare`) explain one class for every model: the `target` class asked for
(a class code such as "mel" or its display name), else the first model's top class. LIME maps have
`detail` regions or more (`lime.DETAIL_RANGE`); the overlay is drawn on the uploaded picture at its own
resolution (`explain.overlay.draw`: regions numbered, legend), and every region's weight and standard
error is returned as data keyed by the region id drawn on the picture ("1".."S").
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..classes import CLASSES, FULL_NAMES, display_name
from ..explain import faithfulness, gradcam, lime, overlay
from ..explain.regions import TIE_Z, tied_with_rest
from ..images import fit_geometry, load_image
from ..metrics import fmt, interval_note
from ..model_folder import CONFUSION_MATRIX_FILE
from .ood import OodUnavailable
from .store import ModelStore

EXPLAIN_METHODS = ("lime", "gradcam")
DEFAULT_DETAIL = lime.DEFAULT_DETAIL
DETAIL_RANGE = lime.DETAIL_RANGE
SAMPLES_RANGE = (10, 10_000)  # LIME's cap on perturbed samples: a request cannot hold the explain lane for minutes
FEATURES_RANGE = (1, 50)  # regions numbered on the picture
TOP_CLASS = "top"  # target meaning "the first model's top class" (so do None and "")
ERROR_MEANING = ("± is one standard error: how far a weight would move with a fresh set of random samples; "
                 "a weight less than about two of them away from 0 could have either sign.")
log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request a person can fix (no model ticked, an unknown method): its message is shown to them as is."""


def resolve_target(target) -> int | None:
    """The class index asked for: a class code ("mel"), a display name or a full name (any case), or None
    for the first model's top class (also None, "" and "top"); else RequestError listing the codes."""
    if target is None:
        return None
    text = str(target).strip().lower()
    if text in ("", TOP_CLASS, "top class"):
        return None
    for index, code in enumerate(CLASSES):
        if text in (code, display_name(code).lower(), FULL_NAMES[code].lower()):
            return index
    raise RequestError(f"Unknown class {str(target)!r}: choose one of {', '.join(CLASSES)}, or none for the "
                       "first model's top class.")


def _whole(value, name: str, low: int, high: int, what: str) -> int:
    """`value` as an int in [low, high] (an integral float such as a slider's 25.0 too), else RequestError."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise RequestError(f"{name} must be a whole number of {what} from {low} to {high}, not {value!r}.")
    return int(value)


def check_detail(detail) -> int:
    """Regions wanted in a LIME map (`lime.DETAIL_RANGE`), or RequestError with one sentence."""
    return _whole(detail, "detail", *DETAIL_RANGE, "regions")


@dataclass
class ExplainResult:
    """One model's explanation of one class, ready to show and to serialise."""

    overlay: np.ndarray  # uint8 (H, W, 3) at the uploaded picture's size: numbered regions, legend when it fits
    label: str  # the class explained (code)
    weights: dict[str, float]  # LIME: region id ("1".."S") -> weight, every region, largest |weight| first
    # (Grad-CAM: {})
    samples: int
    seconds: float
    method: str
    errors: dict[str, float] = field(default_factory=dict)  # region id -> standard error of its weight (same keys)
    rows: list[tuple[int, float, float]] = field(default_factory=list)  # (id, weight, error) of the numbered regions
    legend: str = ""  # what the colours and numbers mean, one item a line
    detail: int | None = None  # LIME: regions asked for (the map has `regions` >= detail)

    @property
    def regions(self) -> int:
        return len(self.weights)

    @property
    def tied(self) -> list[int]:
        """Numbered regions whose weight is within TIE_Z standard errors of the largest one not numbered
        (`regions.tied_with_rest`): other samples could well rank that one above them. [] for Grad-CAM."""
        ids = list(self.weights)
        if not self.rows or len(ids) <= len(self.rows):
            return []
        flags = tied_with_rest([self.weights[i] for i in ids], [self.errors.get(i, np.nan) for i in ids],
                               len(self.rows))  # the numbered regions are the top len(rows), as `draw` numbers
        return [int(ids[j]) for j in np.flatnonzero(flags)]

    @property
    def runner_up(self) -> int | None:
        """The region with the largest |weight| that is not numbered (what `tied` regions are measured against)."""
        ids = list(self.weights)
        return int(ids[len(self.rows)]) if self.rows and len(ids) > len(self.rows) else None

    def tie_note(self) -> str:
        """One sentence on which numbered regions the samples cannot rank above the first one left out."""
        tied = self.tied
        if not tied:
            return ""
        names = (f"Region {tied[0]} is" if len(tied) == 1
                 else f"Regions {', '.join(map(str, tied[:-1]))} and {tied[-1]} are")
        return (f"{names} within {TIE_Z:g} standard errors of region {self.runner_up}, the largest one not "
                f"numbered: with other samples, region {self.runner_up} could rank above "
                f"{'it' if len(tied) == 1 else 'them'}.")

    def summary(self) -> str:
        """One line: method, class, cost."""
        what = (f"{self.samples} perturbed samples, {self.regions} regions" if self.method == "lime"
                else "one gradient pass")
        return f"{self.method.upper()} for {display_name(self.label)}: {what}, {self.seconds:.2f} s."

    def to_dict(self) -> dict:
        """JSON-ready: the class, the weights and errors by region id, the numbered regions (each with
        whether it is `tied` with the first region left out), the cost."""
        tied = set(self.tied)
        return {"explained": self.label, "method": self.method, "detail": self.detail, "regions": self.regions,
                "weights": self.weights, "errors": self.errors,
                "numbered": [{"region": r, "weight": w, "error": e, "tied": r in tied} for r, w, e in self.rows],
                "legend": self.legend, "samples": self.samples, "seconds": round(self.seconds, 3)}


@dataclass
class Comparison:
    """Every model's probabilities and explanation of one class on one image (`SkinDemo.compare`)."""

    probabilities: dict[str, dict[str, float]]  # model -> class code -> probability, highest first
    results: dict[str, ExplainResult]  # model -> its explanation, in the order asked for
    label: str  # the class every model explains
    chosen: bool  # True: the class asked for; False: the first model's top class
    agreement: dict[str, dict[str, float]]  # LIME: model -> model -> agreement in [0, 1]; Grad-CAM: {}
    agreement_k: int  # the top regions compared (the numbered ones)

    @property
    def first(self) -> str:
        return next(iter(self.results))


def _number(value: float) -> float:
    return float(f"{value:.6g}")  # 6 significant digits: small standard errors stay visible


def _training_lines(info) -> list[str]:
    """How a folder's network was trained, chosen and decides (Model info); the card has the whole recipe."""
    training, lines = info.training, []
    if info.training_seconds is not None and training:
        recipe = [f"balance: {training.get('balance')}", f"lr {training.get('lr')}"]
        recipe += [f"EMA {training['ema']}"] if training.get("ema") else []
        if training.get("average_from"):
            recipe.append(f"weights averaged from fine-tuning epoch {training['average_from']}")
        recipe += [f"extra data: {training['extra_data']}"] if training.get("extra_data") else []
        lines.append(f"- trained {info.epochs_run} epochs in {info.total_training_seconds / 60:.0f} min on 2 CPU "
                     f"cores ({', '.join(recipe)}); recipe ablation in `docs/ablation.md`")
    if info.selection:
        lines.append(f"- kept epoch {info.selection['epoch']}: {info.selection['rule']}")
    validation = info.metrics.get("val")
    if validation:
        lines.append(f"- validation split ({validation['n']} images), as served: balanced accuracy "
                     f"{fmt(validation['balanced_accuracy'], '.3f')}, macro AUC {fmt(validation['macro_auc'], '.3f')}, "
                     f"accuracy {fmt(validation['accuracy'], '.3f')}")
    adjustment = info.logit_adjustment
    rule = f"log p + {adjustment['tau']} · log(training class prior), chosen on validation; " if adjustment else ""
    if info.temperature is not None:
        lines.append(f"- decision rule: {rule}temperature {info.temperature:.2f} fitted on validation")
    return lines


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

    def default_comparison(self) -> list[str]:
        """What Compare opens with: the default entry and the first single network after it (not TTA, not an
        ensemble), else the next entry. A network in the default ensemble shares its forward passes with it,
        so the first comparison costs about what the default explanation does."""
        names = list(self.store.available)
        single = [n for n in names[1:] if not (self.store.entries[n].members or self.store.entries[n].tta)]
        return names[:1] + (single[:1] or names[1:2])

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

    def model_info(self, name: str, standing=None) -> tuple[str, str | None]:
        """Markdown about a model and its confusion matrix image path.

        The test metrics are the Leaderboard's when given its `standing` of the entry (scored from the
        stored test predictions, with intervals; TTA and ensemble entries have only these), else the
        model card's."""
        classifier = self.store.get(name)
        entry, info = self.store.entries[name], classifier.info
        height, width = classifier.input_size
        lines = [f"### {entry.display_name}", entry.description, "",
                 f"- backbone `{info.backbone}` ({info.pretrained}), "
                 f"{info.parameters or classifier.model.count_params():,} parameters, input {height}x{width}",
                 f"- source: `{entry.location}`; runs on {classifier.runtime}", *_training_lines(info)]
        scored = standing is not None and bool(standing.metrics)
        test, intervals = (standing.metrics, standing.intervals) if scored else (info.test_metrics, {})
        if test:
            lines += [f"- internal lesion-disjoint test split ({test['n']} images, as served): balanced accuracy "
                      f"**{fmt(test['balanced_accuracy'], '.3f')}**{interval_note(intervals, 'balanced_accuracy')}, "
                      f"macro AUC **{fmt(test['macro_auc'], '.3f')}**{interval_note(intervals, 'macro_auc')}, accuracy "
                      f"{fmt(test['accuracy'], '.3f')}, ECE {fmt(test['ece'], '.3f')}", "",
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
    def explain(self, image, model: str, num_features: int = 5, max_samples: int = 1000, method: str = "lime",
                seed: int = 0, target=None, detail: int = DEFAULT_DETAIL) -> ExplainResult:
        """One model's explanation of `target` (class code or display name; None: its top class)."""
        if not isinstance(model, str):
            raise RequestError("Choose one model to explain.")
        return self.compare(image, [model], num_features, max_samples, method, seed, target, detail).results[model]

    def compare(self, image, models: list[str], num_features: int = 5, max_samples: int = 1000,
                method: str = "lime", seed: int = 0, target=None, detail: int = DEFAULT_DETAIL) -> Comparison:
        """Probabilities of every model and their explanations of one class (`target`, else the first
        model's top class), with how far the models' top regions agree (LIME).

        LIME runs on one segmentation and one mask set shared by all models (so the pictures are
        comparable); models of different input sizes share them at the first model's size.
        """
        if method not in EXPLAIN_METHODS:
            raise RequestError(f"method must be one of {EXPLAIN_METHODS}, not {method!r}.")
        models = [models] if isinstance(models, str) else list(models or [])
        if not models:
            raise RequestError("Choose at least one model.")
        num_features = _whole(num_features, "num_features", *FEATURES_RANGE, "regions")
        max_samples = _whole(max_samples, "max_samples", *SAMPLES_RANGE, "samples")
        detail = check_detail(detail)
        chosen = resolve_target(target)
        classifiers = {name: self.store.get(name) for name in dict.fromkeys(models)}
        first = next(iter(classifiers))
        rgb = load_image(image)
        probs = {name: clf.predict(rgb) for name, clf in classifiers.items()}
        label = CLASSES.index(next(iter(probs[first]))) if chosen is None else chosen
        class_name = display_name(CLASSES[label])
        results = {}
        if method == "gradcam":
            no_network = [name for name, clf in classifiers.items() if not hasattr(clf, "model")]
            if no_network:
                raise RequestError(f"Grad-CAM needs a single network; {', '.join(no_network)} is an ensemble: "
                                   "use LIME for it.")
            for name, clf in classifiers.items():
                start = time.perf_counter()
                picture = clf.prepare(rgb)
                heat = gradcam.gradcam(clf, picture, label)
                legend = [f"warm colours: where the evidence for {class_name} is strongest", "blue: little or none"]
                if not fit_geometry(rgb.shape, clf.input_size).seen().all():
                    legend.append("hatched grey: not seen by the model")
                results[name] = ExplainResult(overlay.gradcam_overlay(picture, heat, picture=rgb), CLASSES[label], {},
                                              1, time.perf_counter() - start, method, legend="\n".join(legend))
            return Comparison(probs, results, CLASSES[label], chosen is not None, {}, num_features)
        fitted = classifiers[first].prepare(rgb)  # each classifier resizes it to its own input size inside its call
        explanations = lime.compare(classifiers, fitted, label=label, seed=seed, detail=detail,
                                    max_samples=max_samples)
        for name, e in explanations.items():
            drawn = overlay.draw(e, picture=rgb, num_features=num_features, class_name=class_name)
            every = overlay.region_rows(e)
            results[name] = ExplainResult(
                drawn.image, CLASSES[label], {str(r): _number(w) for r, w, _ in every}, e.samples, e.seconds, method,
                errors={str(r): _number(s) for r, _, s in every},
                rows=[(r, _number(w), _number(s)) for r, w, s in drawn.rows], legend=drawn.legend, detail=detail)
        k = min(num_features, next(iter(explanations.values())).regions)
        agreement = faithfulness.pairwise_agreement(explanations, k=k)
        return Comparison(probs, results, CLASSES[label], chosen is not None, agreement, k)
