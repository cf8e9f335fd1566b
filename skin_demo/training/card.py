"""The model card (README.md of a model folder), written from skin_demo.json so the numbers have one source."""

from __future__ import annotations

from pathlib import Path

from ..classes import CLASSES, DISCLAIMER, FULL_NAMES
from ..lesions import lesion_intervals
from ..metrics import fmt, interval_note
from ..model_folder import CARD_FILE, CONFUSION_MATRIX_FILE, ModelFolderError, ModelInfo, fresh_predictions
from .augment import Augmentation


def _model_index(name: str, test: dict) -> list[str]:
    lines = ["model-index:", f"- name: {name}", "  results:", "  - task:", "      type: image-classification",
             "    dataset:", "      name: HAM10000 (lesion-disjoint internal test split)", "      type: ham10000",
             "    metrics:"]
    for key, label in (("balanced_accuracy", "balanced accuracy"), ("macro_auc", "macro AUC (one vs rest)"),
                       ("accuracy", "accuracy"), ("macro_f1", "macro F1")):
        if test.get(key) is not None:
            lines += [f"    - type: {key}", f"      value: {test[key]:.4f}", f"      name: {label}"]
    return lines


def _trust_sections(info: ModelInfo) -> list[str]:
    """Calibration (temperature, ECE/NLL before and after, reliability diagram) and the OOD warning."""
    lines = []
    if info.temperature is not None:
        lines += ["## Calibration", "",
                  f"Temperature scaling fitted on the validation split: T = {info.temperature:.3f} "
                  "(applied by `skin_demo.serving.classifier.Classifier`; the Keras model outputs the uncalibrated softmax).", "",
                  "| split | n | ECE before | ECE after | NLL before | NLL after |", "|---|---|---|---|---|---|"]
        for split in ("val", "test"):
            c = info.metrics.get(f"{split}_calibrated")
            if c:
                lines.append(f"| {split} | {c['n']} | {c['ece_before']:.4f} | {c['ece_after']:.4f} | "
                             f"{c['nll_before']:.4f} | {c['nll_after']:.4f} |")
        lines += ["", "![reliability diagram](reliability_diagram.png)", ""]
    ood = info.ood
    if ood:
        lines += ["## Out-of-distribution warning", "",
                  f"{ood['method']}. Threshold {ood['threshold']:.1f} lets {ood['coverage']:.0%} of validation "
                  f"lesions pass; {ood['test_lesions_flagged']:.1%} of test lesions are flagged. On a held-out mix of "
                  f"{ood['non_lesion_images']} non-lesion images (photos, crops, noise, text, flat colours, "
                  f"screenshots) {ood['non_lesions_flagged']:.1%} are flagged; AUROC against test lesions "
                  f"{ood['auroc']:.3f}.", ""]
    return lines


def _recipe_lines(info: ModelInfo) -> list[str]:
    """The recipe's elements and the decision rule, for runs that record them (older models did not)."""
    training, lines = info.training, []
    if "augmentation" in training:
        lines.append(f"- augmentation: {Augmentation.from_dict(training['augmentation']).describe()}")
        lines.append("- each element of the recipe, measured on the validation split: `docs/ablation.md` in the "
                     "skin_demo repository")
    kinds = [f"{kind} (alpha {training[kind]:g})" for kind in ("mixup", "cutmix") if training.get(kind)]
    if kinds:
        lines.append(f"- batch mixing: {' or '.join(kinds)} on {training['mix_probability']:.0%} of batches, labels "
                     "mixed in the same proportion")
    if training.get("ema"):
        lines.append(f"- weights: exponential moving average during fine-tuning, momentum {training['ema']}, scored every epoch")
    if training.get("average_from"):
        lines.append(f"- weights: the mean of the weights after each fine-tuning epoch from epoch "
                     f"{training['average_from']} on (stochastic weight averaging), scored every epoch")
    if training.get("extra_data"):
        lines.append(f"- extra training images: {training['extra_data']} (BCN_20000, another clinic; training only, "
                     "never validation or test)")
    if training.get("distill_from"):
        lines.append(f"- distillation: targets {1 - training['distill_weight']:g} x the label + "
                     f"{training['distill_weight']:g} x the served probabilities of {training['distill_from']} on the "
                     "training images (computed once, before training"
                     + ("; moved to equal class priors)" if training.get("distill_balanced") else ")"))
    if "label_smoothing" in training and "warmup_epochs" in training:
        lines.append(f"- label smoothing {training['label_smoothing']}, warm-up {training['warmup_epochs']} epochs "
                     "then cosine decay")
    speeds = [h["images_per_second"] for h in info.history if h.get("images_per_second")]
    if speeds:
        lines.append(f"- training speed on 2 CPU cores: median {sorted(speeds)[len(speeds) // 2]:.0f} images/s")
    if info.selection:
        weights = info.selection.get("scored_weights", "raw")
        lines.append(f"- kept: epoch {info.selection['epoch']} (weights: {weights}), by {info.selection['rule']}")
    adjustment = info.logit_adjustment
    if adjustment:
        lines.append(f"- decision rule: log p + {adjustment['tau']} · log(training class prior), "
                     f"{adjustment['rule']}, then temperature scaling; both applied by "
                     "`skin_demo.serving.classifier` (the Keras file outputs the plain softmax)")
    return [*lines, ""] if lines else []


def _schedule(training: dict) -> str:
    if training.get("from_scratch"):  # one phase: the head epochs do not apply
        return f"{training.get('epochs')} epochs from random weights"
    return f"head {training.get('head_epochs')} epochs, then fine-tuning {training.get('epochs')} epochs"


def render_model_card(info: ModelInfo, test_intervals: dict | None = None) -> str:
    """The card's Markdown; `test_intervals` (`lesions.lesion_intervals` of the stored test predictions) add a
    95 % interval to the test split's balanced accuracy and macro AUC."""
    metrics = info.metrics
    test = info.test_metrics
    front = ["---", "library_name: keras", "license: cc-by-nc-sa-4.0", "pipeline_tag: image-classification",
             "tags:", "- skin-lesion", "- dermatoscopy", "- ham10000", f"- {info.backbone}",
             "datasets:", "- ham10000"]
    if test:
        front += _model_index(info.name, test)
    front.append("---")
    h, w = info.input_size
    training = info.training
    body = [
        f"# {info.name}: {info.backbone} skin-lesion classifier (HAM10000, 7 classes)", "",
        f"> {DISCLAIMER}", "",
        f"Backbone `{info.backbone}` ({info.pretrained} initialisation), {info.parameters:,} "
        f"parameters. Input: RGB pixels 0-255 at {h}x{w} (height x width); preprocessing is inside the model. "
        f"Output: softmax over `{', '.join(CLASSES)}`.", "",
        "```python", "import keras", f'model = keras.saving.load_model("{info.name}", safe_mode=True)',
        f"probs = model.predict(images_rgb_0_255_{h}x{w})", "```", "",
        "## Training", "",
        f"Trained by `python -m skin_demo train --backbone {info.backbone}` on the training part of a fixed "
        f"lesion-disjoint split of HAM10000 ({info.split_file}, sha256 `{(info.split_sha256 or '')[:16]}…`): "
        f"{_schedule(training)} at lr {training.get('lr')} ({training.get('optimizer')}, balance: "
        f"{training.get('balance')}); "
        f"{info.epochs_run} epochs run in {info.training_seconds / 60:.0f} min on 2 CPU cores"
        + "".join(f", continuing a run of {r['epochs_run']} epochs ({(r['training_seconds'] or 0) / 60:.0f} min; "
                  f"{_schedule(r['training'])} at lr {r['training'].get('lr')})"
                  for r in info.continued_from) + ". "
        f"Weights (and whether to continue a run) were chosen on validation {'only' if info.selection else 'balanced accuracy only'}; test "
        "metrics are computed after training and never used for a choice.", "",
        *_recipe_lines(info),
    ]
    for split in ("val", "test"):
        m = metrics.get(split)
        if not m:
            continue
        intervals = (test_intervals or {}) if split == "test" else {}
        body += [f"## {'Validation' if split == 'val' else 'Test'} metrics ({m['n']} images)", "",
                 f"accuracy {fmt(m['accuracy'])} · balanced accuracy {fmt(m['balanced_accuracy'])}"
                 f"{interval_note(intervals, 'balanced_accuracy', ', lesions resampled')} · macro AUC "
                 f"{fmt(m['macro_auc'])}{interval_note(intervals, 'macro_auc', ', lesions resampled')} "
                 f"· macro F1 {fmt(m['macro_f1'])} · ECE {fmt(m['ece'])}", ""]
        if split == "test":
            body += ["| class | precision | recall | specificity | F1 | AUC | n |", "|---|---|---|---|---|---|---|"]
            for code in CLASSES:
                c = m["per_class"][code]
                auc = f"{c['auc']:.3f}" if c["auc"] is not None else "–"
                body.append(f"| {FULL_NAMES[code]} ({code}) | {c['precision']:.3f} | {c['recall']:.3f} | "
                            f"{fmt(c['specificity'], '.3f')} | {c['f1']:.3f} | {auc} | {c['support']} |")
            body.append("")
    body += [f"![confusion matrix]({CONFUSION_MATRIX_FILE})", "", *_trust_sections(info),
             "## Limitations", "",
             "HAM10000 images here are 200x150 (1/3 of the originals); the training population is mostly "
             "fair-skinned and from two centres; rare classes (df, vasc) have fewer than 20 test images, so "
             "their metrics are uncertain. Data licence: CC BY-NC-SA 4.0 (Tschandl et al., Sci. Data 2018).", ""]
    return "\n".join(front + [""] + body)


def write_model_card(folder) -> Path:
    """README.md of a model folder; with intervals once its test predictions are stored (`store-predictions`)."""
    info = ModelInfo.read(folder)
    try:
        stored = fresh_predictions(folder, info, "test")
        intervals = lesion_intervals(stored.labels, stored.probabilities, stored.image_ids)
    except ModelFolderError:  # not stored yet, or no longer what the folder serves
        intervals = None
    path = Path(folder) / CARD_FILE
    path.write_text(render_model_card(info, intervals))
    return path
