"""A Classifier from a model folder: ranked distributions for files and batches, temperature calibration,
and the TTA / ensemble composites that keep its call contract."""

import numpy as np
import pytest
from unit_helpers import TINY_SIZE, synthetic_lesion

from skin_demo.classes import CLASSES
from skin_demo.images import ImageError
from skin_demo.model_folder import ModelInfo
from skin_demo.serving.classifier import Classifier, apply_temperature
from skin_demo.serving.composite import EnsembleClassifier, TtaClassifier, dihedral_views


def test_predict_ranks_the_seven_classes_of_an_image_file(tiny_classifier, lesion_jpg):
    probabilities = tiny_classifier.predict(lesion_jpg)
    assert sorted(probabilities) == sorted(CLASSES)
    values = list(probabilities.values())
    assert values == sorted(values, reverse=True)
    assert all(0 <= p <= 1 for p in values) and sum(values) == pytest.approx(1, abs=1e-5)
    assert tiny_classifier.name == "tiny" and tiny_classifier.runtime == "keras"


def test_a_batch_gives_one_distribution_per_image_and_matches_predict(tiny_classifier, lesion_jpg):
    fitted = tiny_classifier.prepare(lesion_jpg)
    assert fitted.shape == (*TINY_SIZE, 3) and fitted.dtype == np.float32
    batch = np.stack([fitted, 255 - fitted, np.full_like(fitted, 128)])
    probabilities = tiny_classifier(batch)
    assert probabilities.shape == (3, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.ptp(probabilities, axis=0).max() > 0, "different images, different answers"
    predicted = tiny_classifier.predict(lesion_jpg)
    np.testing.assert_allclose([predicted[c] for c in CLASSES], probabilities[0], atol=1e-6)


def test_a_batch_of_photos_at_another_size_is_fitted_to_the_input(tiny_classifier):
    photos = np.stack([synthetic_lesion(150, 200, seed) for seed in range(2)])
    fitted = np.stack([tiny_classifier.prepare(photo) for photo in photos])
    np.testing.assert_allclose(tiny_classifier(photos), tiny_classifier(fitted), atol=1e-6)


def test_a_file_that_is_not_an_image_gets_an_image_error(tiny_classifier, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("Appointment with the dermatologist on Monday.\n")
    with pytest.raises(ImageError, match="not a readable image"):
        tiny_classifier.predict(notes)


# ------------------------------------------------------------------ temperature
def test_temperature_one_is_the_identity_and_a_higher_one_flattens_but_keeps_the_class():
    probs = np.array([[0.70, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],
                      [0.02, 0.03, 0.05, 0.10, 0.10, 0.20, 0.50]], dtype="float32")
    assert apply_temperature(probs, 1.0) is probs
    flatter = apply_temperature(probs, 2.5)
    np.testing.assert_allclose(flatter.sum(axis=1), 1, atol=1e-6)
    assert (flatter.argmax(axis=1) == probs.argmax(axis=1)).all()
    assert (flatter.max(axis=1) < probs.max(axis=1)).all() and (flatter.min(axis=1) > probs.min(axis=1)).all()
    sharper = apply_temperature(probs, 0.5)
    assert (sharper.max(axis=1) > probs.max(axis=1)).all()
    # softmax(log p / T) by hand for the first row
    expected = probs[0] ** (1 / 2.5) / (probs[0] ** (1 / 2.5)).sum()
    np.testing.assert_allclose(flatter[0], expected, rtol=1e-5)


def test_a_folder_with_a_temperature_serves_calibrated_probabilities(folder_copy, tiny_classifier):
    ModelInfo.read(folder_copy).replace(temperature=3.0).write(folder_copy)
    calibrated = Classifier.from_folder(folder_copy)
    images = np.stack([synthetic_lesion(*TINY_SIZE, seed) for seed in range(3)]).astype("float32")
    raw = calibrated.raw_probabilities(images)
    np.testing.assert_allclose(raw, tiny_classifier(images), atol=1e-6)  # same network, uncalibrated
    np.testing.assert_allclose(calibrated(images), apply_temperature(raw, 3.0), atol=1e-6)
    assert (calibrated(images).max(axis=1) < raw.max(axis=1)).all()


def test_temperature_fitted_on_overconfident_answers_is_above_one_and_lowers_the_nll():
    from skin_demo.training.calibrate import fit_temperature, negative_log_likelihood

    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(CLASSES), 400)
    predicted = np.where(rng.random(400) < 0.6, labels, rng.integers(0, len(CLASSES), 400))  # ~65 % right
    probs = np.full((400, len(CLASSES)), 0.01 / 6)
    probs[np.arange(400), predicted] = 0.99  # but always 99 % sure
    temperature = fit_temperature(labels, probs)
    assert temperature > 1.5
    assert negative_log_likelihood(labels, probs, temperature) < negative_log_likelihood(labels, probs) - 0.5
    assert (apply_temperature(probs, temperature).argmax(axis=1) == predicted).all()


# ------------------------------------------------------------------ TTA and ensembles
def test_dihedral_views_of_a_landscape_batch_are_its_flips_and_its_quarter_turns_in_its_own_frame():
    batch = np.arange(4 * 6, dtype="float32").reshape(1, 4, 6, 1)
    views = dihedral_views(batch)
    assert len(views) == 8 and views[0] is batch and all(view.shape == batch.shape for view in views)
    assert len({view.tobytes() for view in views}) == 8
    np.testing.assert_array_equal(views[1], batch[:, :, ::-1])  # the mirror image
    np.testing.assert_array_equal(views[4], batch[:, ::-1, ::-1])  # the half turn
    quarter = views[2][0, ..., 0]  # the 6x4 turn, cut to 4 rows and mirrored out to 6 columns
    turned = np.rot90(batch[0, ..., 0])[1:5]
    np.testing.assert_array_equal(quarter[:, 1:5], turned)
    np.testing.assert_array_equal(quarter[:, 0], turned[:, 0])
    np.testing.assert_array_equal(quarter[:, 5], turned[:, 3])
    square = np.random.default_rng(0).uniform(size=(1, 5, 5, 3))
    np.testing.assert_array_equal(dihedral_views(square)[2], np.rot90(square, 1, axes=(1, 2)))


def test_tta_averages_the_views_and_an_ensemble_averages_its_members(tiny_classifier):
    images = np.stack([synthetic_lesion(*TINY_SIZE, seed) for seed in range(2)]).astype("float32")
    tta = TtaClassifier(tiny_classifier)
    expected = np.mean([tiny_classifier(view) for view in dihedral_views(images)], axis=0)
    np.testing.assert_allclose(tta(images), expected, atol=1e-6)
    assert tta.name == "tiny_tta" and tta.model is tiny_classifier.model and tta.info.tta

    ensemble = EnsembleClassifier([tiny_classifier, tta], "pair")
    np.testing.assert_allclose(ensemble(images), (tiny_classifier(images) + tta(images)) / 2, atol=1e-6)
    assert ensemble.info.members == ("tiny", "tiny_tta") and ensemble.input_size == TINY_SIZE
    ranked = list(ensemble.predict(images[0].astype("uint8")).values())
    assert ranked == sorted(ranked, reverse=True) and sum(ranked) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleClassifier([])
