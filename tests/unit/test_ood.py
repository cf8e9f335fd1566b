"""The out-of-distribution warning: a distance from the training features, stored as plain numpy in the folder."""

import numpy as np
import pytest
from unit_helpers import TINY_SIZE, synthetic_lesion

from skin_demo.model_folder import OOD_FILE, ModelInfo
from skin_demo.serving.classifier import Classifier
from skin_demo.serving.ood import OodDetector, OodUnavailable
from skin_demo.serving.service import SkinDemo

DIM = 16


@pytest.fixture(scope="module")
def training_features():
    rng = np.random.default_rng(0)
    scales = np.linspace(0.5, 4, DIM)  # unequal spreads, so whitening matters
    return rng.normal(0, 1, (400, DIM)) * scales + 10


@pytest.mark.parametrize("components", [128, 4], ids=["all-directions", "4-directions-plus-residual"])
def test_training_like_features_score_near_their_dimension_and_far_ones_far_above(training_features, components):
    detector = OodDetector.fit(training_features, components=components)
    fresh = np.random.default_rng(1).normal(0, 1, (400, DIM)) * np.linspace(0.5, 4, DIM) + 10
    assert 0.7 * DIM < detector.score(fresh).mean() < 1.3 * DIM  # about chi-square with DIM degrees of freedom
    far = 10 + 8 * np.linspace(0.5, 4, DIM)[None]  # 8 standard deviations out in every direction
    assert detector.score(far)[0] > 20 * DIM


def test_the_detector_round_trips_through_plain_numpy_and_flags_above_its_threshold(training_features, tmp_path):
    detector = OodDetector.fit(training_features)
    path = detector.save(tmp_path)
    assert path.name == OOD_FILE
    with np.load(path, allow_pickle=False) as arrays:
        assert set(arrays.files) == {"mean", "components", "variances", "residual_variance"}
    loaded = OodDetector.load(tmp_path, threshold=30.0)
    np.testing.assert_allclose(loaded.score(training_features[:5]), detector.score(training_features[:5]), rtol=1e-5)
    assert list(loaded.is_outlier(np.array([29.0, 31.0]))) == [False, True]
    with pytest.raises(OodUnavailable, match="ood-fit"):
        OodDetector.from_folder(tmp_path, ModelInfo(name="x", backbone="y", input_size=(8, 8)))  # no threshold


def test_a_model_with_a_fitted_detector_warns_in_the_app(folder_copy, tmp_path):
    """Wiring only: random weights cannot tell lesions from anything, so the threshold is set by hand."""
    from skin_demo.serving.store import ModelStore

    classifier = Classifier.from_folder(folder_copy)
    lesions = np.stack([synthetic_lesion(*TINY_SIZE, seed) for seed in range(24)]).astype("float32")
    OodDetector.fit(classifier.features(lesions)).save(folder_copy)
    ModelInfo.read(folder_copy).replace(ood={"threshold": -1.0}).write(folder_copy)  # everything is an outlier

    registry = tmp_path / "models.json"
    registry.write_text('{"models": [{"name": "watchful", "source": "%s"}]}' % folder_copy)
    demo = SkinDemo(ModelStore(registry))
    score, is_outlier = demo.store.get("watchful").ood(lesions[0])
    assert score >= 0 and is_outlier
    warning = demo.ood_warning(lesions[0], "watchful")
    assert warning.startswith("This picture does not look like the dermatoscopic lesion images")
    assert f"outlier score {score:.0f}" in warning
