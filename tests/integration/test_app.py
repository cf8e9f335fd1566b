"""The launched Gradio app, driven through gradio_client as a user's script would."""

import numpy as np
import pytest
from PIL import Image

from skin_demo import CLASSES, display_name

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
def test_api_explain_returns_an_overlay_of_the_image_size(client, test_images, method, tiny_classifier):
    from gradio_client import handle_file

    overlay, weights, summary = client.predict(handle_file(test_images["nv"]), "tiny_a", 5, 300, method,
                                               api_name="/explain")
    height, width = tiny_classifier.input_size
    assert Image.open(overlay).size == (width, height)
    assert method.upper() in summary
    if method == "lime":
        assert len(weights) >= 5 and all(isinstance(v, float) for v in weights.values())


def test_api_compare_gives_one_table_and_one_overlay_per_model(client, test_images):
    from gradio_client import handle_file

    table, gallery = client.predict(handle_file(test_images["mel"]), ["tiny_a", "tiny_b"], 5, 300, "lime",
                                    api_name="/compare")
    assert table["headers"] == ["class", "Tiny A", "Tiny B"]
    columns = np.array([row[1:] for row in table["data"]], dtype=float)
    assert columns.shape == (7, 2) and np.allclose(columns.sum(axis=0), 1.0, atol=1e-3)
    assert len(gallery) == 2 and all("LIME" in item["caption"] for item in gallery)


def test_compare_explanations_share_one_segmentation_and_mask_set(service, test_images):
    _, results = service.compare(test_images["bkl"], ["tiny_a", "tiny_b"], max_samples=300)
    a, b = results["tiny_a"], results["tiny_b"]
    assert a.samples == b.samples and set(a.weights) == set(b.weights)


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
