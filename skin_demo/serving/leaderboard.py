"""The Leaderboard: every served entry side by side, built from what each model folder stores.

Nothing here re-evaluates the test split. A single model's row and curves come from its folder's
PREDICTIONS_FILE (`python -m skin_demo store-predictions`): the probabilities as served, scored with
`metrics.compute_metrics` as the model card is (same balanced accuracy, accuracy and recalls; ECE is the
card's after temperature scaling; macro AUC is of the served probabilities, while the card's is of those
before temperature scaling). Without the file, the row comes from the card (skin_demo.json) and there are
no curves. Composite entries have no folder:
- TTA needs its own forward passes, so its predictions are stored beside the base model's, as the base
  folder's TTA_PREDICTIONS_FILE (what every "tta": true entry on that folder serves);
- an ensemble serves the mean of its members' served probabilities at its own temperature, so its
  predictions are computed the same way from the members' stored ones (`ensemble_probabilities`; exact
  when the members share an input size, as the bundled ones do).
A stored file left behind by other weights or another decision rule is stale and not used.

Latency is one image through the model, in ms: the README benchmark table's number when it has a row
for that model (`python -m skin_demo benchmark`, Keras, on the machine that ran it), else measured here
once, with a few forward passes, on first use. Everything is built once and cached; the figures are
drawn per request from cached curves.
"""

from __future__ import annotations

import statistics
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from ..classes import CLASSES, display_name
from ..lesions import lesion_intervals
from ..metrics import LEVEL, RESAMPLES, compute_metrics, expected_calibration_error, fmt_interval, reliability_bins
from ..model_folder import WEIGHTS_FILE, ModelFolderError, fresh_predictions
from ..paths import REPO_ROOT
from ..plots import confusion_figure
from .composite import ensemble_probabilities, served_as
from .service import RequestError
from .store import ModelStore

DEFAULT_README = REPO_ROOT / "README.md"
BENCHMARK_START, BENCHMARK_END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"  # as bench.models writes
MACRO = "macro"
LATENCY_RUNS = 5  # timed single-image calls after one warm-up, when no benchmark number exists
RELIABILITY_BINS = 15  # as metrics.expected_calibration_error
ROC_GRID = np.linspace(0.0, 1.0, 401)  # false-positive rates the macro-average ROC curve is drawn at
MODEL_COLUMN, LATENCY_COLUMN, LATENCY_SOURCE_COLUMN = "model", "latency ms (1 image)", "latency from"
METRIC_COLUMNS = {"balanced_accuracy": "bal. acc.", "macro_auc": "macro AUC", "accuracy": "accuracy"}
INTERVAL_COLUMNS = {key: f"{METRIC_COLUMNS[key]} {LEVEL:.0%} CI" for key in ("balanced_accuracy", "macro_auc")}
ECE_COLUMN = "ECE (served)"
RECALL_COLUMNS = {code: f"recall {code}" for code in CLASSES}
COLUMNS = [MODEL_COLUMN, *[c for key, column in METRIC_COLUMNS.items()
                           for c in (column, INTERVAL_COLUMNS.get(key)) if c],
           ECE_COLUMN, *RECALL_COLUMNS.values(), "params (M)", "weights MiB", LATENCY_COLUMN, LATENCY_SOURCE_COLUMN]
TEXT_COLUMNS = (MODEL_COLUMN, *INTERVAL_COLUMNS.values(), LATENCY_SOURCE_COLUMN)
STORE_COMMAND = "python -m skin_demo store-predictions --model {folder}"


@dataclass
class Standing:
    """One served entry's row and the predictions its curves are drawn from (None: why not, in `missing`)."""

    name: str
    display_name: str
    kind: str  # "model", "tta" or "ensemble"
    folders: tuple[Path, ...]  # the model folders it runs (one; an ensemble's distinct members' folders)
    metrics: dict  # compute_metrics of the test split (the card's, or scored from the stored predictions)
    ece: float | None  # as served
    metrics_from: str
    parameters: int | None
    size_mib: float | None
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    image_ids: np.ndarray | None = None
    missing: str | None = None  # why there are no predictions to plot
    latency_ms: float | None = None
    latency_from: str = ""
    card_auc: float | None = None  # the model card's macro AUC (of the probabilities before temperature scaling)
    intervals: dict = field(default_factory=dict)  # metric -> (low, high), bootstrap over test lesions

    def score(self) -> None:
        """Metrics and their intervals from the stored predictions (`metrics.bootstrap_intervals`, lesions
        resampled whole: `lesions.lesion_intervals`)."""
        self.metrics = compute_metrics(self.labels, self.probabilities)
        self.ece = self.metrics["ece"]
        self.intervals = lesion_intervals(self.labels, self.probabilities, self.image_ids)

    @property
    def has_predictions(self) -> bool:
        return self.probabilities is not None


def read_benchmark(readme=DEFAULT_README) -> dict[tuple[str, str], float]:
    """(model, backbone column) -> single-image latency in ms, from the README's benchmark table; {} without one."""
    try:
        text = Path(readme).read_text()
    except OSError:
        return {}
    if BENCHMARK_START not in text or BENCHMARK_END not in text:
        return {}
    block = text[text.index(BENCHMARK_START) + len(BENCHMARK_START):text.index(BENCHMARK_END)]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in block.splitlines() if line.strip().startswith("|")]
    if not rows:
        return {}
    column = next((i for i, header in enumerate(rows[0]) if header.startswith("latency ms")), None)
    if column is None or len(rows[0]) < 2:
        return {}
    latencies = {}
    for row in rows[1:]:
        try:
            latencies[(row[0], row[1])] = float(row[column])
        except (IndexError, ValueError):  # the |---| line, or a row without a number
            continue
    return latencies


class Leaderboard:
    """The table and the overlaid curves of a store's served entries; built once, on first use."""

    def __init__(self, store: ModelStore, readme=DEFAULT_README, latency_runs: int = LATENCY_RUNS):
        self.store = store
        self.readme = Path(readme)
        self.latency_runs = latency_runs
        self._standings: dict[str, Standing] | None = None
        self._table: pd.DataFrame | None = None
        self._curves: dict[tuple[str, str], tuple] = {}
        self._scored: dict[str, Standing] = {}  # entries `standing` scored before the table was built
        self._building = threading.Lock()

    # ------------------------------------------------------------------ building, once
    def standings(self) -> dict[str, Standing]:
        """Name -> Standing of every served entry, in registry order."""
        with self._building:
            if self._standings is None:
                if self.store.pending:
                    self.store.load_all()
                benchmark = read_benchmark(self.readme)
                built: dict[str, Standing] = dict(self._scored)  # what Model info scored already
                for name in self.store.entries:
                    if name in self.store.available:
                        try:
                            self._standing(name, built)
                        except Exception as exc:  # one unreadable entry must not take the table down
                            built[name] = Standing(name, self.store.entries[name].display_name, "unreadable", (),
                                                   {}, None, "nothing readable", None, None,
                                                   missing=f"{type(exc).__name__}: {exc}")
                for standing in built.values():
                    self._time(standing, benchmark)
                self._standings = {name: built[name] for name in self.store.entries if name in built}
            return self._standings

    def standing(self, name: str) -> Standing | None:
        """One entry's Standing: the built table's, else this entry's alone (stored predictions scored once and
        kept, no latency timed), so the Model info tab never waits for the whole table. None when its stored
        numbers cannot be read (the table's row says why); a model that cannot be loaded raises as `store.get` does."""
        built = self._standings
        if built is not None and name in built:
            return built[name]
        self.store.get(name)
        try:
            return self._standing(name, self._scored)
        except Exception:  # as in `standings`: one unreadable folder must not take the tab down
            return None

    def _standing(self, name: str, built: dict) -> Standing:
        if name not in built:
            entry = self.store.entries[name]
            if entry.members:
                built[name] = self._ensemble(name, [self._standing(member, built) for member in entry.members])
            else:
                built[name] = self._single(name, tta=entry.tta)
        return built[name]

    def _single(self, name: str, tta: bool) -> Standing:
        classifier = self.store.available[name]
        network = classifier.base if tta else classifier
        folder, info = Path(network.folder), network.info
        standing = Standing(
            name=name, display_name=self.store.entries[name].display_name, kind="tta" if tta else "model",
            folders=(folder,), metrics={}, ece=None, metrics_from="", parameters=_parameters(network),
            size_mib=_size_mib(folder))
        rerun = f"run `{STORE_COMMAND.format(folder=folder)}{' --tta' if tta else ''}`"
        try:
            stored = fresh_predictions(folder, info, "test", tta, served_as(tta))
            standing.labels, standing.probabilities = stored.labels, stored.probabilities
            standing.image_ids = stored.image_ids
        except ModelFolderError as exc:  # unreadable, wrong or stale: a row from the card, no curves
            standing.missing = f"{str(exc).rstrip('.')} ({rerun})"
        card = info.test_metrics
        standing.card_auc = None if tta else card.get("macro_auc")
        if standing.has_predictions:
            standing.score()
            standing.metrics_from = f"stored {'TTA ' if tta else ''}predictions"
        elif card and not tta:
            standing.metrics, standing.metrics_from = card, "model card"
            standing.ece = info.served_test_ece
        else:
            standing.metrics_from = "nothing stored"
        return standing

    def _ensemble(self, name: str, members: list[Standing]) -> Standing:
        folders = tuple(dict.fromkeys(folder for member in members for folder in member.folders))
        parameters = {folder: member.parameters for member in members for folder in member.folders}
        sizes = {folder: member.size_mib for member in members for folder in member.folders}
        standing = Standing(
            name=name, display_name=self.store.entries[name].display_name, kind="ensemble", folders=folders,
            metrics={}, ece=None, metrics_from="nothing stored", parameters=_sum(parameters.values()),
            size_mib=_sum(sizes.values()))
        lacking = [member.display_name for member in members if not member.has_predictions]
        if lacking:
            standing.missing = f"member(s) without stored predictions: {', '.join(lacking)}"
            return standing
        first = members[0]
        if not all(np.array_equal(m.image_ids, first.image_ids) and np.array_equal(m.labels, first.labels)
                   for m in members):
            standing.missing = "its members' stored predictions are of different images"
            return standing
        standing.labels, standing.image_ids = first.labels, first.image_ids
        standing.probabilities = ensemble_probabilities([m.probabilities for m in members],
                                                        self.store.entries[name].temperature).astype("float32")
        standing.score()
        standing.metrics_from = "mean of its members' stored predictions"
        if self.store.entries[name].temperature is not None:
            standing.metrics_from += ", at the ensemble's temperature"
        sizes = {self.store.available[m.name].input_size for m in members}
        if len(sizes) > 1:
            standing.metrics_from += " (members of different input sizes: approximate)"
        return standing

    def _time(self, standing: Standing, benchmark: dict) -> None:
        """The README benchmark's latency when it has this very model, else a few forward passes here."""
        entry = self.store.entries[standing.name]
        weights_dir = (self.readme.parent / "weights").resolve()
        folders = [folder.resolve() for folder in standing.folders]
        in_weights = bool(folders) and all(folder.parent == weights_dir for folder in folders)
        if standing.kind == "model":
            key = (folders[0].name if folders else "", self.store.available[standing.name].info.backbone)
        else:
            key = (entry.name, entry.location)
        known = in_weights and key in benchmark
        if known:
            standing.latency_ms, standing.latency_from = benchmark[key], "README benchmark (Keras)"
            return
        classifier = self.store.available[standing.name]
        try:
            standing.latency_ms = measure_latency(classifier, self.latency_runs)
            standing.latency_from = f"measured here ({classifier.runtime})"
        except Exception as exc:  # a model failing here must not take the table down
            standing.latency_from = f"not measured: {type(exc).__name__}"

    # ------------------------------------------------------------------ the table
    def table(self) -> pd.DataFrame:
        """One row per served entry (best balanced accuracy first): the columns of COLUMNS, NaN where unknown."""
        standings = self.standings()
        with self._building:
            if self._table is None:
                rows = [_row(s) for s in standings.values()]
                table = pd.DataFrame(rows, columns=COLUMNS)
                scores = table[METRIC_COLUMNS["balanced_accuracy"]].fillna(-1)
                order = scores.sort_values(ascending=False, kind="stable")
                self._table = table.loc[order.index].reset_index(drop=True)
            return self._table.copy()

    def notes(self, chosen=()) -> str:
        """Markdown under the table: what the numbers are, where each row's come from, what is not plotted."""
        standings = self.standings()
        n = next((len(s.labels) for s in standings.values() if s.has_predictions),
                 next((s.metrics.get("n") for s in standings.values() if s.metrics.get("n")), None))
        lines = [f"Internal lesion-disjoint HAM10000 test split{f' ({n} images)' if n else ''}, one split, one "
                 "run per model: numbers to compare these models with each other, not a clinical validation. "
                 "ECE is after the model's temperature scaling, as served; recall per class code (akiec, bcc, "
                 f"mel: malignant). {LEVEL:.0%} CI: the central {LEVEL:.0%} of the score over {RESAMPLES} bootstrap "
                 "resamples of the test lesions (a lesion's images drawn together): how far the number could move "
                 "on another sample from the same clinics; rows whose intervals overlap widely are not shown apart "
                 "by this split.", ""]
        sources: dict[str, list[str]] = {}
        for s in standings.values():
            sources.setdefault(s.metrics_from, []).append(s.display_name)
        lines += [f"- numbers from {source}: {', '.join(names)}" for source, names in sources.items()]
        moved = [f"{s.display_name} {s.card_auc:.3f} -> {s.metrics['macro_auc']:.3f}" for s in standings.values()
                 if s.has_predictions and s.card_auc is not None and s.metrics.get("macro_auc") is not None
                 and f"{s.card_auc:.3f}" != f"{s.metrics['macro_auc']:.3f}"]
        if moved:
            lines.append("- macro AUC here is of the served probabilities (after temperature scaling); the model "
                         f"card's is before it: {', '.join(moved)}")
        latency = ", ".join(sorted({s.latency_from for s in standings.values() if s.latency_from}))
        lines.append(f"- latency: one image through the model ({latency}); the README's numbers are `python -m "
                     "skin_demo benchmark` on the machine that ran it, measured ones a few calls in this process")
        skipped = [s for name, s in standings.items() if name in chosen and not s.has_predictions]
        lines += [f"- not plotted, {s.display_name}: {s.missing}" for s in skipped]
        return "\n".join(lines)

    # ------------------------------------------------------------------ the figures
    def _chosen(self, names) -> tuple[list[Standing], list[Standing]]:
        """(chosen entries with predictions, chosen entries without), raising RequestError for unknown names."""
        standings = self.standings()
        unknown = [name for name in names if name not in standings]
        if unknown:
            raise RequestError(f"Unknown or unavailable model(s) {', '.join(map(str, unknown))}; the leaderboard "
                               f"has {', '.join(standings) or 'none'}.")
        chosen = [standings[name] for name in dict.fromkeys(names)]
        return [s for s in chosen if s.has_predictions], [s for s in chosen if not s.has_predictions]

    def _color(self, name: str):
        names = list(self.store.entries)
        return f"C{names.index(name) % 10}"

    def roc_curve(self, name: str, target: str = MACRO) -> tuple[np.ndarray, np.ndarray, float]:
        """(false-positive rates, true-positive rates, AUC) one-vs-rest for a class code, or their macro average
        (each class's curve at ROC_GRID, averaged; AUC = the mean of the classes' AUCs, as metrics' macro_auc)."""
        key = (name, target)
        if key not in self._curves:
            s = self.standings()[name]
            present = [i for i in range(len(CLASSES)) if 0 < (s.labels == i).sum() < len(s.labels)]
            if target == MACRO:
                tprs, aucs = [], []
                for i in present:
                    fpr, tpr, _ = roc_curve(s.labels == i, s.probabilities[:, i])
                    tprs.append(np.interp(ROC_GRID, fpr, tpr))
                    aucs.append(roc_auc_score(s.labels == i, s.probabilities[:, i]))
                tpr = np.mean(tprs, axis=0) if tprs else np.zeros_like(ROC_GRID)
                tpr[0] = 0.0
                self._curves[key] = (ROC_GRID, tpr, float(np.mean(aucs)) if aucs else float("nan"))
            else:
                i = CLASSES.index(target)
                if i not in present:
                    self._curves[key] = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan"))
                else:
                    fpr, tpr, _ = roc_curve(s.labels == i, s.probabilities[:, i])
                    self._curves[key] = (fpr, tpr, float(roc_auc_score(s.labels == i, s.probabilities[:, i])))
        return self._curves[key]

    def roc_figure(self, names, target: str = MACRO) -> Figure:
        """ROC curves of the chosen entries in one plot; entries without stored predictions are named in the legend."""
        if target != MACRO and target not in CLASSES:
            raise RequestError(f"The ROC curve is of one class code ({', '.join(CLASSES)}) or {MACRO!r}, "
                               f"not {target!r}.")
        plotted, skipped = self._chosen(names)
        fig, ax = _figure()
        for s in plotted:
            fpr, tpr, auc = self.roc_curve(s.name, target)
            ax.plot(fpr, tpr, color=self._color(s.name), lw=1.6, label=f"{s.display_name} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        what = "macro average over the classes" if target == MACRO else display_name(target)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate", ylabel="true-positive rate (recall)",
               title=f"ROC one vs rest: {what}")
        _finish(ax, plotted, skipped, "lower right")
        return fig

    def reliability_figure(self, names) -> Figure:
        """Reliability diagrams (top-label confidence vs accuracy, 15 bins) of the chosen entries in one plot."""
        plotted, skipped = self._chosen(names)
        fig, ax = _figure()
        ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfectly calibrated")
        for s in plotted:
            key = (s.name, "reliability")
            if key not in self._curves:
                self._curves[key] = (*reliability_bins(s.labels, s.probabilities, RELIABILITY_BINS),
                                     expected_calibration_error(s.labels, s.probabilities, RELIABILITY_BINS))
            confidence, accuracy, share, ece = self._curves[key]
            filled = share > 0
            ax.plot(confidence[filled], accuracy[filled], marker="o", ms=4, lw=1.4, color=self._color(s.name),
                    label=f"{s.display_name} (ECE {ece:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="confidence of the top class (bin mean)",
               ylabel="accuracy in the bin", title="Reliability diagram (as served)")
        _finish(ax, plotted, skipped, "upper left")
        return fig


# ----------------------------------------------------------------------------- helpers

def measure_latency(classifier, runs: int = LATENCY_RUNS) -> float:
    """Median ms of `runs` single-image calls, after one warm-up call (which traces)."""
    one = np.random.default_rng(0).uniform(0, 255, (1, *classifier.input_size, 3)).astype("float32")
    classifier(one)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        classifier(one)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _parameters(network) -> int | None:
    if network.info.parameters:
        return int(network.info.parameters)
    model = getattr(network, "model", None)
    return int(model.count_params()) if model is not None else None


def _size_mib(folder: Path) -> float | None:
    weights = folder / WEIGHTS_FILE
    return weights.stat().st_size / 2**20 if weights.is_file() else None


def _sum(values):
    values = list(values)
    return None if any(v is None for v in values) or not values else sum(values)


def _rounded(value, digits: int):
    return float("nan") if value is None else round(float(value), digits)


def _row(s: Standing) -> dict:
    per_class = s.metrics.get("per_class") or {}
    return {
        MODEL_COLUMN: s.display_name,
        **{column: _rounded(s.metrics.get(key), 3) for key, column in METRIC_COLUMNS.items()},
        **{column: fmt_interval(s.intervals.get(key), missing="") for key, column in INTERVAL_COLUMNS.items()},
        ECE_COLUMN: _rounded(s.ece, 3),
        **{column: _rounded((per_class.get(code) or {}).get("recall"), 2) for code, column in RECALL_COLUMNS.items()},
        "params (M)": _rounded(None if s.parameters is None else s.parameters / 1e6, 2),
        "weights MiB": _rounded(s.size_mib, 1),
        LATENCY_COLUMN: _rounded(s.latency_ms, 1),
        LATENCY_SOURCE_COLUMN: s.latency_from,
    }


def confusion_image(standing: Standing | None) -> np.ndarray | None:
    """An entry's row-normalised test confusion matrix (RGB) from its stored predictions, for entries whose
    folder has none of its own to show (TTA, ensembles); None without stored predictions."""
    if standing is None or not standing.has_predictions:
        return None
    fig = confusion_figure(standing.labels, standing.probabilities.argmax(axis=1),
                           f"{standing.display_name} (test, stored predictions)")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _figure():
    """A figure outside pyplot's registry (nothing to close; thread-safe to build per request)."""
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    return fig, fig.subplots()


def _finish(ax, plotted, skipped, where: str) -> None:
    """Legend, with a line naming the chosen entries that have no stored predictions (not plotted)."""
    if skipped:
        names = ", ".join(s.display_name for s in skipped)
        ax.plot([], [], " ", label=textwrap.fill(f"not plotted (no stored predictions): {names}", 48))
    if not plotted and not skipped:
        ax.text(0.5, 0.5, "Tick models to plot.", ha="center", va="center", transform=ax.transAxes)
    if plotted or skipped:
        ax.legend(loc=where, fontsize="small", frameon=True)
    ax.grid(alpha=0.3)
