"""onnxruntime as the fast engine: same answers as Keras on real images, and Keras whenever it cannot be trusted."""

from pathlib import Path

import numpy as np
import pytest

from skin_demo.serving import engines
from skin_demo.serving.classifier import Classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lesions(tiny_classifier, test_images):
    return np.stack([tiny_classifier.prepare(path) for path in test_images.values()])


def test_accelerated_model_gives_the_keras_answers_on_real_lesions(tiny_model_dir, lesions, test_images):
    keras_model, fast = Classifier.from_folder(tiny_model_dir), Classifier.from_folder(tiny_model_dir)
    assert fast.accelerate() is None and fast.runtime == "onnxruntime"
    np.testing.assert_allclose(fast(lesions), keras_model(lesions), atol=engines.TOLERANCE)
    for path in test_images.values():
        assert list(fast.predict(path)) == list(keras_model.predict(path))  # same ranking of the 7 classes
    assert list(engines.cache_dir().glob("*.onnx")), "the converted graph is cached for the next start"


def test_a_stale_cached_graph_is_refused_and_keras_keeps_serving(tiny_model_dir, second_tiny_model_dir, lesions):
    """Another model's graph under this model's cache name (a stale or tampered cache) fails the probe check."""
    model = Classifier.from_folder(tiny_model_dir)
    other = Classifier.from_folder(second_tiny_model_dir)
    expected = model(lesions)
    path = engines.cache_dir() / f"{engines._digest(model.model, model.input_size)}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(engines.to_onnx(other.model, other.input_size))
    try:
        reason = model.accelerate()
    finally:
        path.unlink()
    assert "differs from Keras" in reason and model.runtime == "keras"
    np.testing.assert_array_equal(model(lesions), expected)


def test_runtime_can_be_pinned_to_keras(monkeypatch, registry_file):
    from skin_demo.serving.store import ModelStore
    from skin_demo.serving.service import SkinDemo

    monkeypatch.setenv("SKIN_DEMO_RUNTIME", "keras")
    demo = SkinDemo(ModelStore(registry_file))
    assert demo.accelerate() == {}
    assert {clf.runtime for clf in demo.store.available.values()} == {"keras"}


def test_model_info_says_what_runs_the_model(registry_file):
    """A person reading the Model info tab can tell Keras from onnxruntime, and sees the test metrics."""
    from skin_demo.serving.store import ModelStore
    from skin_demo.serving.service import SkinDemo

    demo = SkinDemo(ModelStore(registry_file))
    text, matrix = demo.model_info("tiny_a")
    assert "runs on keras" in text and "balanced accuracy" in text
    assert demo.accelerate() == {}
    text, _ = demo.model_info("tiny_a")
    assert "runs on onnxruntime" in text
    assert Path(matrix).is_file()  # the confusion matrix picture from the model's own folder
