"""The Gradio Blocks app: a thin layer of widgets over `service.SkinDemo`.

Named API endpoints (usable from gradio_client): /predict, /explain, /compare, /model_info, /leaderboard.
Uploads reach our own loader (`images.load_image`, bounded and with clear messages) untouched:
events run with preprocess=False, so Gradio never decodes an upload itself.

    overlay, weights, summary, chart, errors = client.predict(
        image, model, num_features=5, max_samples=1000, method="lime", target="top", detail=25, api_name="/explain")
    table, gallery, agreement, files, summary = client.predict(
        image, models, num_features=5, max_samples=1000, method="lime", target="top", detail=25, api_name="/compare")

`target` is a class code ("mel"), a display name, or "top" (the first model's top class); `weights` and
`errors` map every region id ("1".."S", the numbers drawn on the overlay) to its LIME weight and standard
error; `table` has a row per model (% per class), `agreement` is model x model, `files` the CSV and PNGs.
The inputs after `method` were added last, with defaults, so older calls with five inputs still work.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image

from ..classes import CLASSES, DISCLAIMER, FULL_NAMES, display_name
from ..explain import overlay
from ..explain.lime import TYPICAL_SAMPLES
from ..explain.regions import TIE_Z
from ..images import ImageError, load_image
from ..model_folder import ModelFolderError
from ..paths import RESOURCES
from .leaderboard import (COLUMNS, INTERVAL_COLUMNS, LATENCY_SOURCE_COLUMN, MACRO, MODEL_COLUMN, TEXT_COLUMNS,
                          Leaderboard, confusion_image)
from .service import (DEFAULT_DETAIL, DETAIL_RANGE, ERROR_MEANING, EXPLAIN_METHODS, TOP_CLASS, Comparison,
                      ExplainResult, RequestError, SkinDemo)

EXAMPLES_DIR = RESOURCES / "examples"
PREDICT_CONCURRENCY = 4  # light: many at once
EXPLAIN_CONCURRENCY = 1  # heavy: one at a time, in its own lane so predictions never wait behind it
LEADERBOARD_CONCURRENCY = 1  # matplotlib drawing: one at a time, in its own lane
QUEUE_SIZE = 48
SAMPLES_SLIDER = (20, 1000)  # LIME's cap on samples; the default design stops far below it
SAMPLES_LABEL = (f"Max LIME samples (the default design uses ~{TYPICAL_SAMPLES} at detail {DEFAULT_DETAIL}; fewer: "
                 "faster, less sure)")
# Served by `launch` (Gradio 6 takes CSS there, not in Blocks). Gradio shows an output image at its natural size
# at most, so the overlay of a 200x150 upload would stay a thumbnail with tiny numbers: it fills its column
# instead (whole, never cropped). The Compare gallery shows every row and whole captions, not 55vh and "…".
CSS = """
#overlay .image-frame { width: 100%; }
#overlay .image-frame img { width: 100%; height: auto; max-height: 70vh; object-fit: contain; }
#compare-gallery .fixed-height { max-height: none; }
#compare-gallery .caption-label { white-space: normal; max-width: 100%; }
"""

log = logging.getLogger(__name__)


def _image_source(payload):
    """What the Image component sent (file data, data URL, path) -> something `load_image` reads."""
    if payload is None:
        raise ImageError("Upload an image first (or pick an example).")
    if isinstance(payload, dict):
        url = payload.get("url") or ""
        if payload.get("path"):
            return payload["path"]
        if url.startswith("data:"):
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=False)
            except (ValueError, IndexError):
                raise ImageError("The pasted image could not be read.") from None
        raise ImageError("Upload an image first (or pick an example).")
    return payload


def _user_errors(fn):
    """Turn every failure into a gr.Error a person can read; the server keeps serving."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ImageError, ModelFolderError, RequestError) as exc:  # not every ValueError: Keras raises them too
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # a model failing mid-request must not take the app down
            log.error("request failed: %s: %s", type(exc).__name__, exc)  # no image data is logged
            raise gr.Error("The model failed on this image; try another image or model.", print_exception=False) from None

    return wrapper


def _target_choices(top_label: str) -> list[tuple[str, str]]:
    return [(top_label, TOP_CLASS)] + [(display_name(code), code) for code in CLASSES]


PROBABILITY_WIDTHS = ["260px"] + ["70px"] * len(CLASSES) + ["64px", "80px"]  # model, the classes, top, samples
CLASS_LEGEND = ("Probabilities in % (each row sums to 100; not a diagnosis). " +
                " · ".join(f"**{code}** {FULL_NAMES[code]}" for code in CLASSES) + ".")


def weights_figure(result: ExplainResult) -> Figure | None:
    """Bar chart of every region's LIME weight for the explained class, largest |weight| first, with
    ± one standard error; the regions numbered on the picture in full colour, the others faded, and
    numbered ones hatched where they are tied with the first one left out (`ExplainResult.tied`)."""
    if not result.weights:
        return None
    ids = list(result.weights)
    weights = np.array([result.weights[i] for i in ids])
    errors = np.array([result.errors.get(i, np.nan) for i in ids])
    numbered = {str(region) for region, _, _ in result.rows}
    tied = {str(region) for region in result.tied}
    colours = [(*(overlay.GREEN if w > 0 else overlay.RED) / 255, 1.0 if i in numbered else 0.35)
               for i, w in zip(ids, weights)]
    fig = Figure(figsize=(5.6, 3.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(ids))
    bars = ax.bar(x, weights, color=colours, width=0.75, edgecolor="none")
    for bar, region in zip(bars, ids):
        if region in tied:
            bar.set(hatch="////", edgecolor="white", linewidth=0)
    ax.errorbar(x, weights, yerr=np.nan_to_num(errors), fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, ids, fontsize=8 if len(ids) > 20 else 9, rotation=90 if len(ids) > 20 else 0)
    for tick in ax.get_xticklabels():
        tick.set_fontweight("bold" if tick.get_text() in numbered else "normal")
    ax.set_xlim(-0.7, len(ids) - 0.3)
    ax.set_xlabel("region id (bold: numbered on the picture), largest |weight| first", fontsize=9)
    ax.set_ylabel(f"weight for {result.label}", fontsize=9)
    ax.tick_params(axis="y", labelsize=9)
    ax.set_title(f"LIME weights of the {len(ids)} regions for {display_name(result.label)}", fontsize=10)
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    handles = [Patch(color=overlay.GREEN / 255, label="supports"), Patch(color=overlay.RED / 255, label="opposes"),
               Patch(color=(0.5, 0.5, 0.5, 0.35), label="not numbered"),
               Line2D([], [], color="black", marker="|", linestyle="none", markersize=8, label="± 1 standard error")]
    if tied:
        handles.append(Patch(facecolor=(0.5, 0.5, 0.5), edgecolor="white", hatch="////",
                             label=f"within {TIE_Z:g} s.e. of region {result.runner_up}"))
    ax.legend(handles=handles, fontsize=8, loc="best", ncols=2, frameon=True)
    return fig


def _legend_line(result: ExplainResult, numbers: str = "region ids, as in the chart") -> str:
    """The picture's legend as one line, its "numbers" item saying where else the ids appear on this tab."""
    lines = [f"numbers: {numbers}" if line.startswith("numbers:") else line for line in result.legend.splitlines()]
    return "Legend of the picture — " + "; ".join(lines) + "." if lines else ""


def explain_summary(result: ExplainResult) -> str:
    """Markdown beside the overlay: what was explained, the numbered regions with their errors, the legend."""
    lines = [result.summary()]
    if result.rows:
        largest = max(abs(weight) for _, weight, _ in result.rows)
        places = max(3, 1 - int(np.floor(np.log10(largest)))) if largest > 0 else 3  # 2+ significant digits
        regions = " · ".join(f"**{region}** {weight:+.{places}f} ± {error:.{places}f}"
                             for region, weight, error in result.rows)
        lines.append(f"Numbered regions, weight ± standard error: {regions}")
        lines.append(result.tie_note())
    if result.legend:
        lines.append(_legend_line(result))
    if result.rows:
        lines.append(ERROR_MEANING)
    return "\n\n".join(line for line in lines if line)


class _Downloads:
    """A fresh folder per comparison inside Gradio's cache (so the files are served, aged out by
    `delete_cache` and removed at shutdown like uploads); folders Gradio has emptied are removed."""

    def __init__(self, cache: str | os.PathLike):
        self.cache = Path(cache)

    def folder(self) -> Path:
        self.cache.mkdir(parents=True, exist_ok=True)
        for old in self.cache.glob("compare_*"):
            try:
                if time.time() - old.stat().st_mtime > 60:  # not one being written right now
                    old.rmdir()  # only empty ones
            except OSError:
                pass
        return Path(tempfile.mkdtemp(prefix="compare_", dir=self.cache))


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def build_app(demo: SkinDemo | None = None):
    demo = demo or SkinDemo()
    choices = demo.model_choices()
    default = choices[0][1] if choices else None
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
    downloads: _Downloads | None = None

    def name_of(model: str) -> str:
        return demo.store.entries[model].display_name

    @_user_errors
    def predict(image, model):
        """Ranked probabilities of the 7 classes (display name -> probability).

        A picture unlike the training lesions gets a warning toast that stays; the answer is unchanged."""
        rgb = load_image(_image_source(image))  # decoded once for the prediction and the OOD check
        probabilities = demo.predict(rgb, model)
        warning = demo.ood_warning(rgb, model)
        if warning:
            gr.Warning(warning, duration=None)
        return probabilities

    @_user_errors
    def explain(image, model, num_features=5, max_samples=1000, method="lime", target=TOP_CLASS,
                detail=DEFAULT_DETAIL, progress=gr.Progress()):
        """Explain one class (`target`: a class code, or "top" for the model's top class) with `detail` regions.

        Returns the overlay (on the upload, at its size), the weights (region id -> weight, every region),
        a summary (Markdown), a bar chart of the weights, and the standard errors (region id -> error)."""
        progress(0.1, desc=f"Explaining with {str(method).upper()}…")
        result = demo.explain(_image_source(image), model, num_features, max_samples, method, target=target,
                              detail=detail)
        progress(1.0)
        return result.overlay, result.weights, explain_summary(result), weights_figure(result), result.errors

    @_user_errors
    def compare(image, models, num_features=5, max_samples=1000, method="lime", target=TOP_CLASS,
                detail=DEFAULT_DETAIL, progress=gr.Progress()):
        """Every ticked model explains one class (`target`, else the first model's top class).

        Returns the probabilities (a row per model, % per class), the overlays (model · class), how far
        the models' numbered regions agree (model x model), the files (CSV, PNGs) and a summary."""
        models = [models] if isinstance(models, str) else list(models or [])
        if not models:
            raise RequestError("Tick at least one model to compare.")
        progress(0.1, desc=f"Running {len(models)} models on one segmentation…")
        result = demo.compare(_image_source(image), models, num_features, max_samples, method, target=target,
                              detail=detail)
        table = pd.DataFrame([{"model": name_of(m), **{c: round(100 * p[c], 1) for c in CLASSES},
                               "top": next(iter(p)), "samples": result.results[m].samples}
                              for m, p in result.probabilities.items()])
        number = {m: str(i) for i, m in enumerate(result.agreement, 1)}  # long names as headers would not read
        agreement = pd.DataFrame([{"model": f"{number[m]} · {name_of(m)}", **{number[o]: round(v, 2)
                                                                            for o, v in row.items()}}
                                  for m, row in result.agreement.items()]) if result.agreement else \
            pd.DataFrame({"model": []})
        folder = downloads.folder()
        try:
            files = _write_downloads(result, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # Gradio only deletes the files it was handed
            raise
        shown = [(str(path), f"{name_of(m)} · {result.label}")
                 for (m, _), path in zip(result.results.items(), files[2:])]
        progress(1.0)  # plain values, no gr.update: API clients get the data itself
        return table, shown, agreement, [str(f) for f in files], _compare_summary(result, name_of)

    def _write_downloads(result: Comparison, folder: Path) -> list[Path]:
        """probabilities.csv, agreement.csv and one PNG overlay per model, in `folder`."""
        rows = []
        for m, p in result.probabilities.items():
            r = result.results[m]
            rows.append({"model": m, "display_name": name_of(m), **{c: round(p[c], 6) for c in CLASSES},
                         "top_class": next(iter(p)), "explained_class": result.label,
                         "explained_probability": round(p[result.label], 6), "method": r.method,
                         "detail": r.detail, "regions": r.regions, "samples": r.samples,
                         "seconds": round(r.seconds, 3)})
        probabilities = folder / "probabilities.csv"
        pd.DataFrame(rows).to_csv(probabilities, index=False)
        agreement = folder / "agreement.csv"
        pd.DataFrame(result.agreement).T.rename_axis("model").to_csv(agreement)
        pictures = []
        for index, (m, r) in enumerate(result.results.items(), 1):
            path = folder / f"{index}_{_safe(m)}_{result.label}_{r.method}.png"
            Image.fromarray(r.overlay).save(path)
            pictures.append(path)
        return [probabilities, agreement, *pictures]

    board = Leaderboard(demo.store)

    @_user_errors
    def model_info(model):
        """Backbone, size and test metrics of a model: the Leaderboard's (stored test predictions, intervals), and
        its test confusion matrix (the folder's, else drawn from the stored predictions: TTA, ensembles)."""
        standing = board.standing(model)  # scored once, for the text and, if needed, the picture
        text, matrix = demo.model_info(model, standing)
        return text, matrix if matrix is not None else confusion_image(standing)

    with gr.Blocks(title="skin_demo: explainable skin-lesion classifier", analytics_enabled=False,
                   delete_cache=(600, 1800)) as app:
        gr.Markdown("# skin_demo: explainable skin-lesion classification (HAM10000, 7 classes)\n"
                    f"**{DISCLAIMER}**")
        unavailable = demo.unavailable_report()
        if unavailable:
            gr.Markdown(unavailable)
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(label="Dermatoscopic image", type="filepath", image_mode=None,
                                     sources=["upload", "clipboard", "webcam"], elem_id="input-image")
                    model = gr.Dropdown(choices, value=default, label="Model", elem_id="model")
                    predict_button = gr.Button("Predict", variant="primary", elem_id="predict")
                    with gr.Accordion("Explanation settings", open=True):
                        method = gr.Radio(list(EXPLAIN_METHODS), value="lime", label="Method", elem_id="method")
                        target = gr.Dropdown(_target_choices("Top class (the model's answer)"), value=TOP_CLASS,
                                             label="Class to explain", elem_id="target")
                        detail = gr.Slider(*DETAIL_RANGE, value=DEFAULT_DETAIL, step=1, elem_id="detail",
                                           label="Detail: regions in the LIME map (more: finer, slower, less sure)")
                        num_features = gr.Slider(1, 15, value=5, step=1, label="Regions to number on the picture",
                                                 elem_id="num-features")
                        max_samples = gr.Slider(*SAMPLES_SLIDER, value=1000, step=10, elem_id="samples",
                                                label=SAMPLES_LABEL)
                    explain_button = gr.Button("Explain", elem_id="explain")
                with gr.Column():
                    label = gr.Label(num_top_classes=7, label="Probabilities (not a diagnosis)", elem_id="label")
                    overlay_image = gr.Image(label="Explanation on your picture: green supports, red opposes the "
                                             "class", show_label=False, type="numpy", interactive=False,
                                             format="png", elem_id="overlay")  # numbers and outlines stay sharp
                    summary = gr.Markdown(label="Summary", elem_id="explain-summary")
                    chart = gr.Plot(label="Region weights", show_label=False, format="png", elem_id="weights-chart")
                    with gr.Accordion("Region weights as data (what /explain returns)", open=False):
                        weights = gr.JSON(label="Weight of each region (region id -> weight)",
                                          elem_id="weights")
                        errors = gr.JSON(label="Standard error of each weight (region id -> error)",
                                         elem_id="weight-errors")
            gr.Examples(examples, inputs=[image], label="Examples from the lesion-disjoint test split",
                        example_labels=[Path(p).stem.replace("_", " ", 1) for p in examples], examples_per_page=14)
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    compare_image = gr.Image(label="Dermatoscopic image", type="filepath", image_mode=None,
                                             sources=["upload", "clipboard"], elem_id="compare-image")
                with gr.Column(scale=1, min_width=260):
                    compare_models = gr.CheckboxGroup(choices, value=demo.default_comparison(),
                                                      label="Models", elem_id="compare-models")
                with gr.Column(scale=1, min_width=260):
                    compare_method = gr.Radio(list(EXPLAIN_METHODS), value="lime", label="Method",
                                              elem_id="compare-method")
                    compare_target = gr.Dropdown(_target_choices("Top class of the first ticked model"),
                                                 value=TOP_CLASS, label="Class every model explains",
                                                 elem_id="compare-target")
                    compare_detail = gr.Slider(*DETAIL_RANGE, value=DEFAULT_DETAIL, step=1, elem_id="compare-detail",
                                               label="Detail: regions in the LIME map")
                    with gr.Accordion("More settings", open=False):
                        compare_features = gr.Slider(1, 15, value=5, step=1, elem_id="compare-num-features",
                                                     label="Regions to number (and to compare between models)")
                        compare_samples = gr.Slider(*SAMPLES_SLIDER, value=1000, step=10, elem_id="compare-samples",
                                                    label=SAMPLES_LABEL)
                    compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
            compare_summary = gr.Markdown(label="Summary", elem_id="compare-summary")
            table = gr.Dataframe(label="Probabilities per model (%)", wrap=True, interactive=False,
                                 column_widths=PROBABILITY_WIDTHS, elem_id="compare-table")
            gr.Markdown(CLASS_LEGEND, elem_id="compare-legend")
            gallery = gr.Gallery(label="Explanations on one shared segmentation and mask set", columns=3,
                                 object_fit="contain", preview=False, elem_id="compare-gallery")
            agreement = gr.Dataframe(label="Agreement of the numbered regions between models (1 = the same regions "
                                     "with the same signs, 0 = none in common)", wrap=True, interactive=False,
                                     column_widths=["260px"], elem_id="compare-agreement")
            compare_files = gr.File(label="Download: probabilities.csv, agreement.csv, the overlays (PNG)",
                                    file_count="multiple", interactive=False, elem_id="compare-files")
            gr.Examples(examples, inputs=[compare_image], examples_per_page=14,
                        example_labels=[Path(p).stem.replace("_", " ", 1) for p in examples])
        with gr.Tab("Model info"):
            info_model = gr.Dropdown(choices, value=default, label="Model")
            info_text = gr.Markdown()
            info_matrix = gr.Image(label="Test confusion matrix (row-normalised)", interactive=False)
        _leaderboard_tab(board, choices)

        downloads = _Downloads(compare_files.GRADIO_CACHE)
        lane = dict(preprocess=False, show_progress="minimal")
        predict_button.click(predict, [image, model], label, api_name="predict",
                             concurrency_limit=PREDICT_CONCURRENCY, concurrency_id="predict", **lane)
        explain_button.click(explain, [image, model, num_features, max_samples, method, target, detail],
                             [overlay_image, weights, summary, chart, errors], api_name="explain",
                             concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain", **lane)
        compare_button.click(compare, [compare_image, compare_models, compare_features, compare_samples,
                                       compare_method, compare_target, compare_detail],
                             [table, gallery, agreement, compare_files, compare_summary], api_name="compare",
                             concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain", **lane)
        info_model.change(model_info, info_model, [info_text, info_matrix], api_name="model_info")
        app.load(model_info, info_model, [info_text, info_matrix], api_visibility="private")
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=PREDICT_CONCURRENCY)
    app.skin_demo, app.leaderboard = demo, board
    return app


def _compare_summary(result: Comparison, name_of) -> str:
    """Markdown over the Compare results: the one class explained, how, the legend, what agreement means."""
    first = result.first
    why = "the class chosen" if result.chosen else f"the top class of the first model ({name_of(first)})"
    n = len(result.results)
    who = "The model explains" if n == 1 else "Both models explain" if n == 2 else f"All {n} models explain"
    lines = [f"{who} "
             f"**{display_name(result.label)}**, {why}."]
    one = result.results[first]
    if one.method == "lime":
        lines.append(f"LIME on one segmentation of {one.regions} regions and one mask set: {one.samples} perturbed "
                     f"samples, the same for every model, {one.seconds:.2f} s in all.")
        lines.append(f"Agreement: the share of the top {result.agreement_k} regions two models have in common, "
                     "counted only where both give them the same sign.")
        tied = {name: r.tied for name, r in result.results.items() if r.tied}
        if tied:
            lines.append(f"Numbered regions within {TIE_Z:g} standard errors of the first region left out (other "
                         "samples could rank that one above them): " + "; ".join(
                             f"{name_of(name)} {', '.join(map(str, regions))}" for name, regions in tied.items()) + ".")
    else:
        lines.append(f"Grad-CAM, one gradient pass per model, {sum(r.seconds for r in result.results.values()):.2f} s "
                     "in all; agreement is measured for LIME only.")
    lines.append(_legend_line(one, "region ids, the same regions in every picture"))
    return "\n\n".join(line for line in lines if line)


_LEADERBOARD_WIDTHS = {MODEL_COLUMN: "250px", LATENCY_SOURCE_COLUMN: "180px",
                       **dict.fromkeys(INTERVAL_COLUMNS.values(), "110px")}


def _leaderboard_tab(board: Leaderboard, choices) -> None:
    """The Leaderboard tab and its events (call inside the Blocks): every served entry's stored test-split
    numbers as rows, and the ROC curves and reliability diagrams of the ticked ones overlaid. Filled when
    the tab is opened; nothing is evaluated during a request (serving.leaderboard)."""

    @_user_errors
    def leaderboard():
        """One row per served model: test metrics, per-class recall, size and latency (serving.leaderboard)."""
        return board.table()

    @_user_errors
    def leaderboard_plots(models, target=MACRO):
        models = list(models or [])
        return board.notes(models), board.roc_figure(models, target), board.reliability_figure(models)

    with gr.Tab("Leaderboard", elem_id="leaderboard-tab") as tab:
        gr.Markdown("Every served model side by side on the internal lesion-disjoint test split, from what "
                    "each model folder stores (nothing is re-evaluated here). Internal numbers to compare the "
                    "models with each other, not evidence that any of them is safe to use on a patient.")
        table = gr.Dataframe(headers=COLUMNS, label="Test split, best balanced accuracy first (click a header "
                             "to sort)", interactive=False, wrap=True, pinned_columns=1,
                             column_widths=[_LEADERBOARD_WIDTHS.get(c, "84px") for c in COLUMNS],
                             datatype=["str" if c in TEXT_COLUMNS else "number" for c in COLUMNS],
                             elem_id="leaderboard-table")
        with gr.Row():
            models = gr.CheckboxGroup(choices, value=[name for _, name in choices], label="Models in the plots",
                                      elem_id="leaderboard-models", scale=3)
            target = gr.Dropdown([("Macro average over the classes", MACRO)] +
                                 [(display_name(code), code) for code in CLASSES], value=MACRO,
                                 label="ROC curve of", elem_id="leaderboard-roc-class", scale=1)
        with gr.Row():
            roc = gr.Plot(label="ROC curves (one vs rest)", show_label=False, format="png", elem_id="leaderboard-roc")
            reliability = gr.Plot(label="Reliability diagrams", show_label=False, format="png",
                                  elem_id="leaderboard-reliability")
        notes = gr.Markdown(elem_id="leaderboard-notes")

    lane = dict(concurrency_limit=LEADERBOARD_CONCURRENCY, concurrency_id="leaderboard", show_progress="minimal")
    plots = dict(fn=leaderboard_plots, inputs=[models, target], outputs=[notes, roc, reliability],
                 api_visibility="private", trigger_mode="always_last", **lane)
    tab.select(leaderboard, None, table, api_name="leaderboard", **lane).then(**plots)
    models.change(**plots)
    target.change(**plots)


def _warm_up(app) -> None:
    """In the background at start: every model onto onnxruntime, then the Leaderboard's table (its metrics
    and bootstrap intervals take about half a second), so neither waits for the first visitor."""
    app.skin_demo.accelerate()
    try:
        app.leaderboard.table()
    except Exception:  # the tab builds it again on first opening, and says there what went wrong
        log.exception("the Leaderboard could not be built in advance")


def launch(app=None, **kwargs):
    """Serve on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860), analytics off."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    app = app or build_app()
    threading.Thread(target=_warm_up, args=(app,), name="warm-up", daemon=True).start()
    return app.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                      server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                      footer_links=["api"], show_error=True, **{"css": CSS, **kwargs})
