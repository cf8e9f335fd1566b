"""The Gradio Blocks app: a thin layer of widgets over `service.SkinDemo`.

Named API endpoints (usable from gradio_client): /predict, /explain, /compare, /model_info, /leaderboard.
Uploads reach our own loader (`images.load_image`, bounded and with clear messages) untouched:
events run with preprocess=False, so Gradio never decodes an upload itself.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import threading
from pathlib import Path

import gradio as gr
import pandas as pd

from ..classes import CLASSES, DISCLAIMER, display_name
from ..images import ImageError, load_image
from ..model_folder import ModelFolderError
from ..paths import RESOURCES
from .leaderboard import COLUMNS, LATENCY_SOURCE_COLUMN, MACRO, MODEL_COLUMN, Leaderboard
from .service import EXPLAIN_METHODS, RequestError, SkinDemo

EXAMPLES_DIR = RESOURCES / "examples"
PREDICT_CONCURRENCY = 4  # light: many at once
EXPLAIN_CONCURRENCY = 1  # heavy: one at a time, in its own lane so predictions never wait behind it
LEADERBOARD_CONCURRENCY = 1  # matplotlib drawing: one at a time, in its own lane
QUEUE_SIZE = 48

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


def build_app(demo: SkinDemo | None = None):
    demo = demo or SkinDemo()
    choices = demo.model_choices()
    default = choices[0][1] if choices else None
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))

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
    def explain(image, model, num_features=5, max_samples=1000, method="lime", progress=gr.Progress()):
        """Explanation overlay, the per-superpixel weights, and a one-line summary."""
        progress(0.1, desc=f"Explaining with {str(method).upper()}…")
        result = demo.explain(_image_source(image), model, int(num_features), int(max_samples), method)
        progress(1.0)
        return result.overlay, result.weights, result.summary()

    @_user_errors
    def compare(image, models, num_features=5, max_samples=1000, method="lime", progress=gr.Progress()):
        """One table of probabilities (a column per model) and each model's overlay, side by side."""
        if not models:
            raise RequestError("Tick at least one model to compare.")
        progress(0.1, desc=f"Running {len(models)} models on one segmentation…")
        probs, results = demo.compare(_image_source(image), list(models), int(num_features), int(max_samples), method)
        codes = list(next(iter(probs.values())))
        table = pd.DataFrame({"class": [display_name(code) for code in codes],
                              **{demo.store.entries[m].display_name: [round(probs[m][c], 4) for c in codes] for m in probs}})
        gallery = [(r.overlay, f"{demo.store.entries[m].display_name}: {r.summary()}") for m, r in results.items()]
        progress(1.0)
        return table, gallery

    @_user_errors
    def model_info(model):
        """Backbone, size and test metrics of a model, from its own folder."""
        return demo.model_info(model)

    with gr.Blocks(title="skin_demo: explainable skin-lesion classifier", analytics_enabled=False,
                   delete_cache=(600, 1800)) as app:
        gr.Markdown("# skin_demo: explainable skin-lesion classification (HAM10000, 7 classes)\n"
                    f"**{DISCLAIMER}**")
        if demo.unavailable_report():
            gr.Markdown(demo.unavailable_report())
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(label="Dermatoscopic image", type="filepath", image_mode=None,
                                     sources=["upload", "clipboard", "webcam"], elem_id="input-image")
                    model = gr.Dropdown(choices, value=default, label="Model", elem_id="model")
                    predict_button = gr.Button("Predict", variant="primary", elem_id="predict")
                    with gr.Accordion("Explanation settings", open=True):
                        method = gr.Radio(list(EXPLAIN_METHODS), value="lime", label="Method")
                        num_features = gr.Slider(1, 15, value=5, step=1, label="Superpixels to show")
                        max_samples = gr.Slider(200, 2000, value=1000, step=100,
                                                label="Max LIME samples (stops early once the top superpixels are stable)")
                    explain_button = gr.Button("Explain", elem_id="explain")
                with gr.Column():
                    label = gr.Label(num_top_classes=7, label="Probabilities (not a diagnosis)", elem_id="label")
                    overlay = gr.Image(label="Explanation: green supports, red opposes the class",
                                       type="numpy", interactive=False, elem_id="overlay")
                    summary = gr.Markdown(elem_id="explain-summary")
                    weights = gr.JSON(label="Superpixel weights (LIME)")
            gr.Examples(examples, inputs=[image], label="Examples from the lesion-disjoint test split",
                        example_labels=[Path(p).stem.replace("_", " ", 1) for p in examples], examples_per_page=14)
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column():
                    compare_image = gr.Image(label="Dermatoscopic image", type="filepath", image_mode=None,
                                             sources=["upload", "clipboard"], elem_id="compare-image")
                    compare_models = gr.CheckboxGroup(choices, value=[c[1] for c in choices[:2]],
                                                      label="Models", elem_id="compare-models")
                    compare_method = gr.Radio(list(EXPLAIN_METHODS), value="lime", label="Method")
                    compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                with gr.Column():
                    # long class names would push the model columns out of view: cap and wrap them
                    table = gr.Dataframe(label="Probabilities per model", wrap=True, column_widths=["55%"],
                                         elem_id="compare-table")
                    gallery = gr.Gallery(label="Explanations on one shared segmentation and mask set",
                                         columns=2, elem_id="compare-gallery")
            gr.Examples(examples, inputs=[compare_image], examples_per_page=14,
                        example_labels=[Path(p).stem.replace("_", " ", 1) for p in examples])
        with gr.Tab("Model info"):
            info_model = gr.Dropdown(choices, value=default, label="Model")
            info_text = gr.Markdown()
            info_matrix = gr.Image(label="Test confusion matrix (row-normalised)", interactive=False)
        _leaderboard_tab(Leaderboard(demo.store), choices)

        lane = dict(preprocess=False, show_progress="minimal")
        predict_button.click(predict, [image, model], label, api_name="predict",
                             concurrency_limit=PREDICT_CONCURRENCY, concurrency_id="predict", **lane)
        explain_button.click(explain, [image, model, num_features, max_samples, method], [overlay, weights, summary],
                             api_name="explain", concurrency_limit=EXPLAIN_CONCURRENCY, concurrency_id="explain", **lane)
        compare_button.click(compare, [compare_image, compare_models, num_features, max_samples, compare_method],
                             [table, gallery], api_name="compare", concurrency_limit=EXPLAIN_CONCURRENCY,
                             concurrency_id="explain", **lane)
        info_model.change(model_info, info_model, [info_text, info_matrix], api_name="model_info")
        app.load(model_info, info_model, [info_text, info_matrix], api_visibility="private")
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=PREDICT_CONCURRENCY)
    app.skin_demo = demo
    return app


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
                             column_widths=["250px"] + ["84px"] * (len(COLUMNS) - 2) + ["180px"],
                             datatype=["str" if c in (MODEL_COLUMN, LATENCY_SOURCE_COLUMN) else "number"
                                       for c in COLUMNS], elem_id="leaderboard-table")
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


def launch(app=None, **kwargs):
    """Serve on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860), analytics off."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    app = app or build_app()
    threading.Thread(target=app.skin_demo.accelerate, name="accelerate", daemon=True).start()
    return app.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                      server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                      footer_links=["api"], show_error=True, **kwargs)
