"""The launched Gradio app, driven through gradio_client as a user's script would."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_demo import CLASSES, display_name
from skin_demo.explain.lime import default_samples
from skin_demo.serving.service import DEFAULT_DETAIL

pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False, analytics_enabled=False)  # else it pings huggingface.co


def test_api_predict_returns_seven_labelled_probabilities(client, test_images):
    from gradio_client import handle_file

    result = client.predict(handle_file(test_images["bcc"]), "tiny_a", api_name="/predict")
    confidences = {c["label"]: c["confidence"] for c in result["confidences"]}
    assert set(confidences) == {display_name(c) for c in CLASSES}
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-4)
    assert "Basal cell carcinoma (bcc) · malignant" in confidences


@pytest.mark.parametrize("method", ["lime", "gradcam"])
def test_api_explain_as_scripts_called_it_returns_an_overlay_of_the_upload_s_size(client, test_images, method):
    """The call of scripts written before the class and detail inputs: they take their defaults."""
    from gradio_client import handle_file

    overlay, weights, summary, chart, errors = client.predict(handle_file(test_images["nv"]), "tiny_a", 5, 300,
                                                              method, api_name="/explain")
    assert Image.open(overlay).size == Image.open(test_images["nv"]).size  # drawn on the upload, not the model input
    assert method.upper() in summary
    if method == "lime":
        assert len(weights) >= DEFAULT_DETAIL and all(isinstance(v, float) for v in weights.values())
        assert sorted(map(int, weights)) == list(range(1, len(weights) + 1)), "one entry per region, ids 1..S"
        assert list(errors) == list(weights) and all(e >= 0 for e in errors.values())
        assert "± is one standard error" in summary and chart["type"] == "matplotlib"
    else:
        assert weights == {} and errors == {}


def test_api_explain_honours_the_class_asked_for(client, test_images):
    from gradio_client import handle_file

    upload = handle_file(test_images["mel"])
    maps = {}
    for code in ("mel", "bkl"):
        overlay, weights, summary, _, _ = client.predict(upload, "tiny_a", 5, 300, "lime", code,
                                                         api_name="/explain")  # at the default detail
        assert summary.startswith(f"LIME for {display_name(code)}:")
        maps[code] = (np.asarray(Image.open(overlay).convert("RGB")), weights)
    assert not np.array_equal(maps["mel"][0], maps["bkl"][0]), "another class, another picture"
    assert maps["mel"][1] != maps["bkl"][1]
    by_name = client.predict(upload, "tiny_a", 5, 300, "lime", display_name("bkl"), api_name="/explain")
    assert by_name[1] == maps["bkl"][1], "a display name is the same class as its code"


def test_api_compare_gives_rows_of_probabilities_one_class_agreement_and_downloads(client, test_images):
    from gradio_client import handle_file

    table, gallery, agreement, files, summary = client.predict(
        handle_file(test_images["mel"]), ["tiny_a", "tiny_b"], 5, 300, "lime", "bcc", 12, api_name="/compare")
    assert table["headers"] == ["model", *CLASSES, "top", "samples"]
    assert [row[0] for row in table["data"]] == ["Tiny A", "Tiny B"]
    percents = np.array([row[1:8] for row in table["data"]], dtype=float)
    assert percents.shape == (2, 7) and np.allclose(percents.sum(axis=1), 100, atol=0.5)
    assert [item["caption"] for item in gallery] == ["Tiny A · bcc", "Tiny B · bcc"]
    assert summary.startswith(f"Both models explain **{display_name('bcc')}**, the class chosen.")
    assert agreement["headers"] == ["model", "1", "2"]  # the models numbered, as the rows name them
    assert [row[0] for row in agreement["data"]] == ["1 · Tiny A", "2 · Tiny B"]
    matrix = np.array([row[1:] for row in agreement["data"]], dtype=float)
    assert np.allclose(np.diag(matrix), 1) and np.allclose(matrix, matrix.T) and ((0 <= matrix) & (matrix <= 1)).all()
    names = [Path(f).name for f in files]
    assert names == ["probabilities.csv", "agreement.csv", "1_tiny_a_bcc_lime.png", "2_tiny_b_bcc_lime.png"]
    csv = pd.read_csv(files[0])
    assert list(csv["model"]) == ["tiny_a", "tiny_b"] and set(csv["explained_class"]) == {"bcc"}
    assert np.allclose(csv[list(CLASSES)].sum(axis=1), 1, atol=1e-4) and (csv["samples"] >= default_samples(0)).all()
    assert Image.open(files[2]).size == Image.open(test_images["mel"]).size


def test_api_compare_explains_the_first_model_s_top_class_by_default(client, test_images):
    from gradio_client import handle_file

    upload = handle_file(test_images["bkl"])
    table, gallery, _, _, summary = client.predict(upload, ["tiny_b", "tiny_a"], 5, 300, "lime", api_name="/compare")
    top = table["data"][0][8]
    assert summary.startswith(f"Both models explain **{display_name(top)}**, "
                              "the top class of the first model (Tiny B).")
    assert [item["caption"] for item in gallery] == [f"Tiny B · {top}", f"Tiny A · {top}"]


def test_compare_explanations_share_one_segmentation_and_mask_set(service, test_images):
    comparison = service.compare(test_images["bkl"], ["tiny_a", "tiny_b"], max_samples=300)
    a, b = comparison.results["tiny_a"], comparison.results["tiny_b"]
    assert a.label == b.label == comparison.label and set(a.weights) == set(b.weights)
    assert comparison.agreement["tiny_a"]["tiny_b"] == comparison.agreement["tiny_b"]["tiny_a"]


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"%PDF-1.4\n1 0 obj\n", "PDF"),
    (b"hello, I am not a picture", "not a readable image"),
])
def test_bad_uploads_get_a_clear_message_and_the_server_keeps_serving(client, tmp_path, content, message, test_images):
    from gradio_client import handle_file

    bad = tmp_path / "upload.jpg"
    bad.write_bytes(content)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(bad)), "tiny_a", api_name="/predict")
    result = client.predict(handle_file(test_images["df"]), "tiny_a", api_name="/predict")
    assert len(result["confidences"]) == 7


def test_unknown_or_unavailable_model_gets_a_clear_message(client, test_images):
    from gradio_client import handle_file

    with pytest.raises(Exception, match="unavailable"):
        client.predict(handle_file(test_images["df"]), "gone", api_name="/predict")


@pytest.mark.parametrize("api_name, inputs, message", [
    ("/explain", ("tiny_a", 5, 300, "lime", "melanomma", 12), "Unknown class 'melanomma': choose one of akiec, bcc"),
    ("/explain", ("nonesuch", 5, 300, "lime", "mel", 12), "Unknown model 'nonesuch'"),
    ("/explain", ("tiny_a", 5, 300, "lime", "mel", 80), "detail must be a whole number of regions from 5 to 50"),
    ("/explain", ("tiny_a", 5, 300, "lime", "mel", 2.5), "not 2.5"),
    ("/compare", (["tiny_a", "tiny_b"], 5, 300, "lime", "Melanomas", 12), "Unknown class 'Melanomas'"),
    ("/compare", (["tiny_a", "nonesuch"], 5, 300, "lime", "mel", 12), "Unknown model 'nonesuch'"),
    ("/compare", (["tiny_a", "tiny_b"], 5, 300, "lime", "mel", 4), "from 5 to 50, not 4"),
])
def test_bad_settings_get_one_sentence_and_the_server_keeps_serving(client, test_images, api_name, inputs, message):
    from gradio_client import handle_file

    with pytest.raises(Exception, match=re.escape(message)) as refusal:
        client.predict(handle_file(test_images["akiec"]), *inputs, api_name=api_name)
    assert "\n" not in str(refusal.value)
    result = client.predict(handle_file(test_images["df"]), "tiny_a", api_name="/predict")
    assert len(result["confidences"]) == 7
