"""SkinDemo, what the UI, the API and the CLI call: predict, explain and describe the models of one store."""

import json
from pathlib import Path

import numpy as np
import pytest
from unit_helpers import assert_one_sentence

from skin_demo.classes import CLASSES, display_name
from skin_demo.explain.regions import tied_with_rest
from skin_demo.images import ImageError
from skin_demo.model_folder import ModelFolderError
from skin_demo.serving.service import DEFAULT_DETAIL, Comparison, ExplainResult, RequestError, SkinDemo


@pytest.fixture(scope="module")
def demo(store):
    return SkinDemo(store)


def test_the_app_offers_the_loaded_models_and_reports_the_missing_one(demo):
    assert demo.model_choices() == [("Tiny CNN", "tiny"), ("Tiny CNN + TTA", "tiny_tta"), ("Tiny ensemble", "both")]
    report = demo.unavailable_report()
    assert report.startswith("Unavailable models:") and "**Gone** (`gone`)" in report and "does not exist" in report


def test_compare_opens_with_the_default_entry_and_the_first_single_network(registry_file, tmp_path):
    from skin_demo.serving.store import ModelStore

    models = {m["name"]: m for m in json.loads(registry_file.read_text())["models"]}
    for order, expected in ((["both", "tiny_tta", "tiny"], ["both", "tiny"]),  # TTA is 8 networks' passes
                            (["tiny", "tiny_tta", "both"], ["tiny", "tiny_tta"])):  # no other single network
        path = tmp_path / f"{order[0]}.json"
        path.write_text(json.dumps({"models": [models[name] for name in order]}))
        assert SkinDemo(ModelStore(path)).default_comparison() == expected


@pytest.mark.parametrize("model", ["tiny", "tiny_tta", "both"])
def test_predict_labels_seven_classes_by_their_display_names(demo, lesion_jpg, model):
    labels = demo.predict(lesion_jpg, model)
    assert list(labels) == [display_name(code) for code in demo.probabilities(lesion_jpg, model)]
    assert sorted(labels) == sorted(display_name(code) for code in CLASSES)
    assert "Melanoma (mel) · malignant" in labels and "Melanocytic nevus (nv)" in labels
    assert list(labels.values()) == sorted(labels.values(), reverse=True)
    assert sum(labels.values()) == pytest.approx(1, abs=1e-5)


def test_lime_explanation_is_drawn_on_the_upload_with_every_region_s_weight_and_error(demo, lesion_jpg):
    result = demo.explain(lesion_jpg, "tiny", num_features=3, max_samples=100, method="lime")
    assert result.overlay.shape == (150, 200, 3) and result.overlay.dtype == np.uint8, "the upload's size"
    assert result.method == "lime" and result.samples == 100 and result.detail == DEFAULT_DETAIL
    assert result.label == next(iter(demo.probabilities(lesion_jpg, "tiny"))), "explains the predicted class"
    assert result.regions >= DEFAULT_DETAIL
    assert sorted(map(int, result.weights)) == list(range(1, result.regions + 1)), "one entry per region, ids 1..S"
    assert list(result.errors) == list(result.weights) and all(e >= 0 for e in result.errors.values())
    magnitudes = [abs(w) for w in result.weights.values()]
    assert magnitudes == sorted(magnitudes, reverse=True), "largest |weight| first"
    assert [str(r) for r, _, _ in result.rows] == list(result.weights)[:3], "the numbered regions"
    assert all(result.weights[str(r)] == w and result.errors[str(r)] == e for r, w, e in result.rows)
    assert "green: supports" in result.legend and display_name(result.label) in result.legend
    assert result.summary().startswith(f"LIME for {display_name(result.label)}: 100 perturbed samples, "
                                       f"{result.regions} regions")
    assert json.loads(json.dumps(result.to_dict()))["weights"] == result.weights


def test_numbered_regions_the_samples_cannot_rank_above_the_next_one_are_named_as_tied():
    weights = {"4": 0.30, "2": -0.20, "7": 0.11, "1": 0.10, "3": 0.02}  # largest |weight| first, as served
    result = ExplainResult(np.zeros((2, 2, 3), np.uint8), "mel", weights, 100, 0.1, "lime",
                           errors=dict.fromkeys(weights, 0.01), rows=[(4, 0.30, 0.01), (2, -0.20, 0.01), (7, 0.11, 0.01)])
    assert result.tied == [7] and result.runner_up == 1
    assert result.tie_note() == ("Region 7 is within 2 standard errors of region 1, the largest one not numbered: "
                                 "with other samples, region 1 could rank above it.")
    assert [r["tied"] for r in result.to_dict()["numbered"]] == [False, False, True]
    settled = ExplainResult(result.overlay, "mel", weights, 100, 0.1, "lime", errors=dict.fromkeys(weights, 0.001),
                            rows=result.rows)
    assert settled.tied == [] and settled.tie_note() == ""
    unsure_second = dict(settled.errors, **{"2": 0.1})  # -0.20 ± 0.1 reaches down to region 1's 0.10
    second = ExplainResult(result.overlay, "mel", weights, 100, 0.1, "lime", errors=unsure_second, rows=result.rows)
    assert second.tied == [2] and second.tie_note().startswith("Region 2 is within 2 standard errors of region 1")


def test_the_compare_summary_names_each_model_s_tied_regions():
    from skin_demo.serving.ui import _compare_summary

    weights = {"4": 0.30, "2": -0.20, "7": 0.11, "1": 0.10, "3": 0.02}
    rows = [(4, 0.30, 0.01), (2, -0.20, 0.01), (7, 0.11, 0.01)]
    unsure = ExplainResult(np.zeros((2, 2, 3), np.uint8), "mel", weights, 100, 0.1, "lime",
                           errors=dict.fromkeys(weights, 0.01), rows=rows)
    sure = ExplainResult(unsure.overlay, "mel", weights, 100, 0.1, "lime", errors=dict.fromkeys(weights, 0.001),
                         rows=rows)
    comparison = Comparison({}, {"a": unsure, "b": sure}, "mel", True, {}, 3)
    summary = _compare_summary(comparison, str.upper)
    assert "first region left out (other samples could rank that one above them): A 7." in summary, "b has none"


def test_the_class_asked_for_is_explained_by_code_or_display_name(demo, lesion_jpg):
    top = next(iter(demo.probabilities(lesion_jpg, "tiny")))
    other = next(code for code in CLASSES if code != top)
    by_code = demo.explain(lesion_jpg, "tiny", max_samples=100, target=other, detail=8)
    by_name = demo.explain(lesion_jpg, "tiny", max_samples=100, target=display_name(other), detail=8)
    assert by_code.label == by_name.label == other and by_code.weights == by_name.weights
    assert demo.explain(lesion_jpg, "tiny", max_samples=100, target="top", detail=8).label == top


def test_compare_explains_the_first_model_s_class_for_every_model_and_says_how_far_they_agree(demo, lesion_jpg):
    result = demo.compare(lesion_jpg, ["tiny", "both"], max_samples=100, detail=8)
    assert isinstance(result, Comparison) and list(result.results) == ["tiny", "both"] and not result.chosen
    assert result.label == next(iter(result.probabilities["tiny"]))
    assert {r.label for r in result.results.values()} == {result.label}
    assert set(result.agreement) == {"tiny", "both"} and result.agreement["tiny"]["tiny"] == 1.0
    assert 0 <= result.agreement["tiny"]["both"] == result.agreement["both"]["tiny"] <= 1
    assert result.agreement_k == 5
    chosen = demo.compare(lesion_jpg, ["tiny", "both"], max_samples=100, detail=8, target="vasc")
    assert chosen.chosen and chosen.label == "vasc" and {r.label for r in chosen.results.values()} == {"vasc"}


def test_gradcam_explains_a_single_network_on_the_upload_but_refuses_an_ensemble(demo, lesion_jpg):
    result = demo.explain(lesion_jpg, "tiny", method="gradcam", target="bcc")
    assert result.overlay.shape == (150, 200, 3) and result.samples == 1 and result.weights == {} == result.errors
    assert result.label == "bcc" and "Basal cell carcinoma" in result.legend
    with pytest.raises(RequestError, match="both is an ensemble: use LIME for it"):
        demo.explain(lesion_jpg, "both", method="gradcam")


def test_requests_a_person_can_fix_get_a_request_error(demo, lesion_jpg):
    with pytest.raises(RequestError, match="method must be one of \\('lime', 'gradcam'\\), not 'shap'"):
        demo.explain(lesion_jpg, "tiny", method="shap")
    with pytest.raises(RequestError, match="Choose at least one model"):
        demo.compare(lesion_jpg, [])


@pytest.mark.parametrize("options, phrases", [
    (dict(target="melanocytic"), ("Unknown class 'melanocytic'", "akiec, bcc, bkl, df, mel, nv, vasc")),
    (dict(target="MEL "), None),
    (dict(detail=4), ("detail must be a whole number of regions from 5 to 50, not 4",)),
    (dict(detail=51), ("from 5 to 50, not 51",)),
    (dict(detail=12.5), ("not 12.5",)),
    (dict(detail="many"), ("not 'many'",)),
    (dict(detail=True), ("not True",)),
    (dict(max_samples=1), ("max_samples must be a whole number of samples from 10 to 10000",)),
    (dict(max_samples=10**6), ("not 1000000",)),
    (dict(num_features=0), ("num_features must be a whole number of regions from 1 to 50",)),
])
def test_bad_settings_get_one_sentence_before_any_work(demo, lesion_jpg, options, phrases):
    if phrases is None:  # a class code in any case, with spaces around it, is still the class
        assert demo.explain(lesion_jpg, "tiny", max_samples=100, detail=5, **options).label == "mel"
        return
    with pytest.raises(RequestError) as error:
        demo.explain(lesion_jpg, "tiny", **options)
    assert_one_sentence(str(error.value), *phrases)


def test_an_unknown_model_gets_one_sentence_naming_the_registry(demo, lesion_jpg):
    with pytest.raises(ModelFolderError) as error:
        demo.compare(lesion_jpg, ["tiny", "nonesuch"], max_samples=100)
    assert_one_sentence(str(error.value), "Unknown model 'nonesuch'", "tiny")


def test_a_slider_s_whole_float_is_a_whole_number(demo, lesion_jpg):
    result = demo.explain(lesion_jpg, "tiny", num_features=2.0, max_samples=100.0, detail=6.0)
    assert result.detail == 6 and len(result.rows) == 2 and result.samples == 100


def test_an_unreadable_upload_gets_an_image_error(demo, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="The file is empty"):
        demo.predict(empty, "tiny")
    with pytest.raises(ImageError, match="The file is empty"):
        demo.explain(empty, "tiny", max_samples=100)


def test_model_info_describes_the_network_and_a_model_without_detector_gives_no_ood_warning(demo, lesion_jpg):
    text, matrix = demo.model_info("tiny")
    assert text.startswith("### Tiny CNN") and "backbone `custom_cnn`" in text and "input 48x64" in text
    assert "runs on keras" in text and matrix is None  # no test metrics, no confusion matrix in a fresh folder
    assert demo.ood_warning(lesion_jpg, "tiny") is None


# ------------------------------------------------------------------ the app's functions, called as the events call them
@pytest.fixture
def app_functions(demo, tmp_path, monkeypatch):
    """The named endpoints' functions of an app over the tiny models; Gradio's cache in the test's tmp dir."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from skin_demo.serving.ui import build_app

    app = build_app(demo)
    return {fn.api_name: fn.fn for fn in app.fns.values() if fn.api_name}


def test_explain_endpoint_gives_overlay_weights_summary_chart_and_errors(app_functions, lesion_jpg):
    old_call = app_functions["explain"](str(lesion_jpg), "tiny", 4, 100, "lime")  # scripts written before detail
    overlay, weights, summary, chart, errors = app_functions["explain"](str(lesion_jpg), "tiny", 4, 100, "lime",
                                                                        "mel", 30)
    assert len(old_call) == 5 and len(old_call[1]) >= DEFAULT_DETAIL
    assert overlay.shape == (150, 200, 3) and len(weights) >= 30 and list(errors) == list(weights)
    assert summary.startswith(f"LIME for {display_name('mel')}: 100 perturbed samples")
    assert "Numbered regions, weight ± standard error: **" in summary and "± is one standard error" in summary
    assert "green: supports Melanoma (mel)" in summary
    bars = chart.axes[0].patches
    assert len(bars) == len(weights) and [b.get_height() for b in bars] == pytest.approx(list(weights.values()))
    assert [t.get_text() for t in chart.axes[0].get_xticklabels()] == list(weights)
    flagged = tied_with_rest(list(weights.values()), list(errors.values()), 4)
    assert [bool(b.get_hatch()) for b in bars] == flagged.tolist(), "hatched: the numbered regions tied with the rest"
    assert ("could rank above" in summary) == flagged.any(), "the tied ones are named beside the picture"
    gradcam = app_functions["explain"](str(lesion_jpg), "tiny", 4, 100, "gradcam", "nv")
    assert gradcam[0].shape == (150, 200, 3) and gradcam[1] == {} and gradcam[3] is None
    assert gradcam[2].startswith("GRADCAM for Melanocytic nevus (nv): one gradient pass")


def test_compare_endpoint_gives_rows_per_model_agreement_downloads_and_short_captions(app_functions, lesion_jpg,
                                                                                      tmp_path):
    import pandas as pd

    table, gallery, agreement, files, summary = app_functions["compare"](
        str(lesion_jpg), ["tiny", "both"], 5, 100, "lime", "bcc", 8)
    assert list(table.columns) == ["model", *CLASSES, "top", "samples"]
    assert list(table["model"]) == ["Tiny CNN", "Tiny ensemble"]
    assert table[list(CLASSES)].sum(axis=1).tolist() == pytest.approx([100, 100], abs=0.5)
    assert [caption for _, caption in gallery] == ["Tiny CNN · bcc", "Tiny ensemble · bcc"]
    assert list(agreement.columns) == ["model", "1", "2"] and agreement.iloc[0, 1] == 1.0
    assert list(agreement["model"]) == ["1 · Tiny CNN", "2 · Tiny ensemble"]
    assert summary.startswith(f"Both models explain **{display_name('bcc')}**, the class chosen.")
    names = [Path(f).name for f in files]
    assert names == ["probabilities.csv", "agreement.csv", "1_tiny_bcc_lime.png", "2_both_bcc_lime.png"]
    assert all(Path(f).is_relative_to(tmp_path / "gradio") for f in files), "inside Gradio's cache"
    csv = pd.read_csv(files[0])
    assert list(csv["explained_class"]) == ["bcc", "bcc"] and {"samples", "seconds", *CLASSES} <= set(csv.columns)
    assert [Path(path).name for path, _ in gallery] == names[2:]
    top = app_functions["compare"](str(lesion_jpg), ["both", "tiny"], 5, 100, "lime")[4]
    assert "the top class of the first model (Tiny ensemble)" in top


def test_model_info_says_how_a_trained_model_was_trained_chosen_and_decides():
    from skin_demo.model_folder import ModelInfo
    from skin_demo.serving.service import _training_lines

    validation = {"n": 1495, "balanced_accuracy": 0.7512, "macro_auc": 0.9433, "accuracy": 0.7601}
    info = ModelInfo(name="m", backbone="efficientnet_lite0", input_size=(150, 200), epochs_run=42,
                     training={"balance": "oversample", "lr": 0.0003, "ema": 0.0}, training_seconds=3600.0,
                     metrics={"val": validation}, temperature=1.234,
                     selection={"epoch": 30, "rule": "the epoch with the highest validation macro AUC ..."},
                     logit_adjustment={"tau": 0.25, "prior": [1 / 7] * 7, "rule": "..."})
    text = "\n".join(_training_lines(info))
    assert "trained 42 epochs in 60 min" in text and "balance: oversample, lr 0.0003)" in text
    assert "kept epoch 30: the epoch with the highest validation macro AUC" in text
    assert "balanced accuracy 0.751, macro AUC 0.943, accuracy 0.760" in text
    assert "log p + 0.25 · log(training class prior)" in text and "temperature 1.23" in text
    assert _training_lines(ModelInfo(name="ensemble", backbone="ensemble of a, b", input_size=(150, 200))) == []
