"""SkinDemo, what the UI, the API and the CLI call: predict, explain and describe the models of one store."""

import numpy as np
import pytest
from unit_helpers import TINY_SIZE

from skin_demo.classes import CLASSES, display_name
from skin_demo.images import ImageError
from skin_demo.serving.service import RequestError, SkinDemo


@pytest.fixture(scope="module")
def demo(store):
    return SkinDemo(store)


def test_the_app_offers_the_loaded_models_and_reports_the_missing_one(demo):
    assert demo.model_choices() == [("Tiny CNN", "tiny"), ("Tiny CNN + TTA", "tiny_tta"), ("Tiny ensemble", "both")]
    report = demo.unavailable_report()
    assert report.startswith("Unavailable models:") and "**Gone** (`gone`)" in report and "does not exist" in report


@pytest.mark.parametrize("model", ["tiny", "tiny_tta", "both"])
def test_predict_labels_seven_classes_by_their_display_names(demo, lesion_jpg, model):
    labels = demo.predict(lesion_jpg, model)
    assert list(labels) == [display_name(code) for code in demo.probabilities(lesion_jpg, model)]
    assert sorted(labels) == sorted(display_name(code) for code in CLASSES)
    assert "Melanoma (mel) · malignant" in labels and "Melanocytic nevus (nv)" in labels
    assert list(labels.values()) == sorted(labels.values(), reverse=True)
    assert sum(labels.values()) == pytest.approx(1, abs=1e-5)


def test_lime_explanation_is_an_overlay_of_the_model_input_size(demo, lesion_jpg):
    result = demo.explain(lesion_jpg, "tiny", num_features=3, max_samples=100, method="lime")
    assert result.overlay.shape == (*TINY_SIZE, 3) and result.overlay.dtype == np.uint8
    assert result.method == "lime" and result.samples == 100
    assert result.label == next(iter(demo.probabilities(lesion_jpg, "tiny"))), "explains the predicted class"
    assert len(result.weights) >= 3 and all(key.isdigit() for key in result.weights)
    assert result.summary().startswith(f"LIME for {display_name(result.label)}: 100 perturbed samples")


def test_gradcam_explains_a_single_network_but_refuses_an_ensemble(demo, lesion_jpg):
    result = demo.explain(lesion_jpg, "tiny", method="gradcam")
    assert result.overlay.shape == (*TINY_SIZE, 3) and result.samples == 1 and result.weights == {}
    with pytest.raises(RequestError, match="both is an ensemble: use LIME for it"):
        demo.explain(lesion_jpg, "both", method="gradcam")


def test_requests_a_person_can_fix_get_a_request_error(demo, lesion_jpg):
    with pytest.raises(RequestError, match="method must be one of \\('lime', 'gradcam'\\), not 'shap'"):
        demo.explain(lesion_jpg, "tiny", method="shap")
    with pytest.raises(RequestError, match="Choose at least one model"):
        demo.compare(lesion_jpg, [])


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
