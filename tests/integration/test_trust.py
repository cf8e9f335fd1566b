"""Trustworthy outputs on a really trained model: calibration, the OOD warning, TTA/ensembles, mobile export.

Everything runs on the tiny model of conftest (trained by our own code on real HAM10000 images), copied
to tmp_path before anything writes into it.
"""

import shutil

import numpy as np
import pytest

from skin_demo.training import data as dataset
from skin_demo.serving.classifier import apply_temperature
from skin_demo.training.calibrate import DIAGRAM_FILE, calibrate, negative_log_likelihood
from skin_demo.model_folder import OOD_FILE, ModelInfo, load_model_folder
from skin_demo.training.fit_ood import fit_ood, sample_photos
from skin_demo.serving.classifier import Classifier

pytestmark = pytest.mark.slow

SPLIT_IMAGES = 120  # real images per split: enough for stable numbers, fast to decode


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / tiny_model_dir.name)


@pytest.fixture(scope="module")
def test_split(tiny_classifier):
    return dataset.split_arrays("test", tiny_classifier.input_size, 40)


def test_calibration_lowers_validation_nll_and_keeps_the_model(model_copy):
    assert ModelInfo.read(model_copy).temperature is not None, "train() calibrates new models"
    classifier = Classifier.from_folder(model_copy)
    splits = {name: dataset.split_arrays(name, classifier.input_size, SPLIT_IMAGES) for name in ("val", "test")}
    raw_val = classifier.raw_probabilities(splits["val"][0])

    info = calibrate(model_copy, classifier, splits)

    temperature = info.temperature
    val = info.metrics["val_calibrated"]
    assert temperature != pytest.approx(1.0, abs=1e-3)
    assert val["nll_after"] < val["nll_before"]
    assert negative_log_likelihood(splits["val"][1], raw_val, temperature) < negative_log_likelihood(
        splits["val"][1], raw_val)
    # the classifier applies T; classes never change; the saved Keras model is untouched and loads safely
    calibrated = classifier(splits["val"][0])
    np.testing.assert_allclose(calibrated, apply_temperature(raw_val, temperature), atol=1e-6)
    assert (calibrated.argmax(1) == raw_val.argmax(1)).all()
    model, stored = load_model_folder(model_copy)
    np.testing.assert_allclose(model.predict(splits["val"][0][:4].astype("float32"), verbose=0), raw_val[:4],
                               atol=1e-5)
    assert stored.temperature == temperature
    assert (model_copy / DIAGRAM_FILE).stat().st_size > 10_000
    card = (model_copy / "README.md").read_text()
    assert "## Calibration" in card and f"{val['ece_after']:.4f}" in card and DIAGRAM_FILE in card


def test_ood_score_separates_real_lesions_from_sample_photos(model_copy, test_images):
    record = fit_ood(model_copy, limit=300)
    classifier = Classifier.from_folder(model_copy)

    assert (model_copy / OOD_FILE).is_file() and ModelInfo.read(model_copy).ood == record
    assert record["auroc"] > 0.9
    lesions = [classifier.ood(path) for path in test_images.values()]
    photos = [classifier.ood(photo) for photo in sample_photos().values()]
    assert min(score for score, _ in photos) > np.median([score for score, _ in lesions])
    assert sum(flag for _, flag in lesions) <= 1  # 7 real lesions, at most one false alarm
    assert np.mean([flag for _, flag in photos]) > 0.8


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_exported_model_matches_keras_top1(fmt, model_copy, test_split, tiny_classifier):
    """Float exports: probabilities within 1e-3 of Keras and the same top-1 class on real test images."""
    from skin_demo.training.export import ExportedClassifier, export

    path = export(model_copy, fmt)
    exported = ExportedClassifier(path, tiny_classifier.info)
    images, _ = test_split
    keras_probs, exported_probs = tiny_classifier(images), exported(images)
    np.testing.assert_allclose(exported_probs, keras_probs, atol=1e-3)
    assert (exported_probs.argmax(1) == keras_probs.argmax(1)).all()


def test_int8_tflite_is_smaller_and_close(model_copy, test_split, tiny_classifier):
    """int8: much smaller than the float32 weights, outputs still distributions, most top-1 kept.

    The graph is a larger share of a 0.4 M-parameter model's file: 2.5x here, 3.3x for MobileNetV2 1.0."""
    from skin_demo.training.export import ExportedClassifier, export

    path = export(model_copy, "tflite", "int8")
    assert 4 * tiny_classifier.model.count_params() / path.stat().st_size > 2.5
    probs = ExportedClassifier(path, tiny_classifier.info)(test_split[0])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=0.02)  # int8 output steps are 1/256
    assert np.mean(probs.argmax(1) == tiny_classifier(test_split[0]).argmax(1)) >= 0.75


def test_a_run_trained_without_the_test_split_gets_it_scored_once_on_request(model_copy, capsys):
    """`calibrate --score-test`: how a --no-test run ships after every choice was made on validation."""
    from skin_demo.__main__ import main
    from skin_demo.model_folder import PREDICTIONS_FILE, StoredPredictions

    info = ModelInfo.read(model_copy)
    for key in ("test", "test_calibrated"):
        info.metrics.pop(key, None)
    info.write(model_copy)
    (model_copy / PREDICTIONS_FILE).unlink(missing_ok=True)

    assert main(["calibrate", "--model", str(model_copy)]) == 0
    assert "test" not in ModelInfo.read(model_copy).metrics, "without the flag the test split stays unseen"
    assert not (model_copy / PREDICTIONS_FILE).exists()

    assert main(["calibrate", "--model", str(model_copy), "--score-test"]) == 0
    test = ModelInfo.read(model_copy).metrics["test"]
    n_test = int((dataset.load_split()["split"] == "test").sum())
    assert test["n"] == n_test and 0 <= test["balanced_accuracy"] <= 1
    stored = StoredPredictions.read(model_copy / PREDICTIONS_FILE)
    assert stored.split == "test" and len(stored.labels) == n_test
    assert "test:" in capsys.readouterr().out


def test_ranking_entries_on_a_split_gives_each_number_its_interval(registry_file, capsys):
    """`models --split val`: every loaded entry scored as served, best first, with a bootstrap interval over
    the split's lesions around its balanced accuracy and macro AUC."""
    import re

    from skin_demo.__main__ import main

    assert main(["models", "--registry", str(registry_file), "--split", "val"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny_")]
    assert sorted(row.split(" | ")[0] for row in rows) == ["| tiny_a", "| tiny_b"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for value, interval in ((cells[1], cells[2]), (cells[3], cells[4])):
            low, high = map(float, re.fullmatch(r"(\d\.\d+)-(\d\.\d+)", interval).groups())
            assert low <= float(value) <= high and high - low < 0.3
