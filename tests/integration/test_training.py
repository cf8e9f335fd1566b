"""Data split, backbone registry, training, saving and evaluation: the data -> train -> evaluate half."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from skin_demo import CLASSES
from skin_demo.training import data as dataset
from skin_demo.training.backbones import BACKBONES
from skin_demo.model_folder import REQUIRED_FILES
from skin_demo.training.factory import WeightsUnavailable, build_model, last_conv_layer_name

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "skin_demo", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, **kwargs)


def test_split_keeps_every_lesion_in_one_split_and_is_stratified(data_dir):
    table = dataset.load_split()
    assert len(table) == 10015 and set(table["split"]) == set(dataset.SPLITS)
    assert table.groupby("lesion_id")["split"].nunique().max() == 1
    share = pd.crosstab(table["dx"], table["split"], normalize="columns")
    overall = table["dx"].value_counts(normalize=True)
    for split in dataset.SPLITS:
        assert np.allclose(share[split], overall[share.index], atol=0.02), split
    fractions = table["split"].value_counts(normalize=True)
    assert fractions["train"] == pytest.approx(0.70, abs=0.02)
    assert fractions["test"] == pytest.approx(0.15, abs=0.02)


def test_committed_split_and_lesions_are_reproducible_from_metadata(data_dir, tmp_path):
    dataset.write_split(dataset.make_split(dataset.read_metadata()), tmp_path / "split.csv", tmp_path / "lesions.csv")
    assert (tmp_path / "split.csv").read_text() == dataset.SPLIT_FILE.read_text()
    assert (tmp_path / "lesions.csv").read_text() == dataset.LESIONS_FILE.read_text()
    lesions = pd.read_csv(dataset.LESIONS_FILE)
    split = pd.read_csv(dataset.SPLIT_FILE).set_index("image_id")["split"]
    assert set(split[lesions["image_id"]]) == {"val", "test"} and (split != "train").sum() == len(lesions)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_with_random_weights_at_a_small_size(name):
    model = build_model(name, (96, 96), pretrained=False)
    assert model.output.shape == (None, len(CLASSES))
    feature = model.get_layer(last_conv_layer_name(model, BACKBONES[name]))
    assert len(feature.output.shape) == 4
    config = json.dumps(model.get_config())
    assert '"Lambda"' not in config, "preprocessing must use standard layers so safe_mode loads it"
    out = model.predict(np.full((1, 96, 96, 3), 128.0, "float32"), verbose=0)
    assert np.allclose(out.sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", [n for n, b in BACKBONES.items() if b.imagenet_file])
def test_offline_imagenet_weights_load_for_the_mobilenet_family(name):
    pretrained = build_model(name, (96, 128), pretrained=True)
    random = build_model(name, (96, 128), pretrained=False)
    first_conv = next(l for l in pretrained.layers if "conv" in l.name and l.weights)
    assert not np.allclose(first_conv.get_weights()[0], random.get_layer(first_conv.name).get_weights()[0])


def test_missing_imagenet_weights_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached download to fall back on
    with pytest.raises(WeightsUnavailable, match="--from-scratch"):
        build_model("vgg16", (64, 64), pretrained=True)


def test_caffe_preprocessing_matches_keras_applications():
    import keras

    model = build_model("vgg16", (32, 32), pretrained=False)
    preprocess = keras.Model(model.input, model.get_layer("caffe_bgr_mean").output)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    assert np.allclose(preprocess.predict(x, verbose=0), expected, atol=1e-3)


def test_small_model_trains_saves_and_reloads_with_safe_mode(tiny_model_dir, test_images):
    import keras

    for name in (*REQUIRED_FILES, "README.md", "training_curves.png", "confusion_matrix.png", "roc_curves.png"):
        assert (tiny_model_dir / name).is_file(), name
    info = json.loads((tiny_model_dir / "skin_demo.json").read_text())
    assert info["classes"] == list(CLASSES) and info["split_sha256"] == dataset.split_checksum()
    assert {"balanced_accuracy", "macro_auc", "per_class", "confusion_matrix", "ece"} <= set(info["metrics"]["test"])

    import h5py

    with h5py.File(tiny_model_dir / "model.weights.h5") as weights:
        assert "optimizer" not in weights, "optimizer state doubles the file and is never used to serve"
    model = keras.saving.load_model(str(tiny_model_dir), safe_mode=True)
    from skin_demo.images import load_fitted

    batch = np.stack([load_fitted(p, info["input_size"]) for p in test_images.values()])
    probs = model.predict(batch, verbose=0)
    assert probs.shape == (len(test_images), 7)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5) and (probs >= 0).all()
    assert probs.std(axis=0).max() > 1e-3, "a trained model's outputs vary with the image"
    card = (tiny_model_dir / "README.md").read_text()
    assert card.startswith("---") and "model-index:" in card and "not a diagnosis" in card.lower()


def test_evaluate_cli_counts_unknown_classes_and_missing_images(tiny_model_dir, data_dir, tmp_path):
    table = dataset.load_split()
    rows = table[table["split"] == "test"].groupby("dx").head(3)[["image_id", "dx"]]
    extra = pd.DataFrame({"image_id": ["ISIC_9999999", rows["image_id"].iloc[0]], "dx": ["mel", "scc"]})
    csv = tmp_path / "labels.csv"
    pd.concat([rows, extra]).to_csv(csv, index=False)
    result = run_cli("evaluate", "--model", str(tiny_model_dir), "--images", str(data_dir),
                     "--metadata", str(csv), "--out", str(tmp_path / "plots"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n"] == len(rows) == 21
    assert report["skipped"]["unknown_class"] == 1 and report["skipped"]["missing_image"] == ["ISIC_9999999"]
    assert {"accuracy", "balanced_accuracy", "macro_auc", "per_class", "confusion_matrix", "ece"} <= set(report)
    assert (tmp_path / "plots" / "confusion_matrix_normalized.png").is_file()
    assert (tmp_path / "plots" / "roc_curves.png").is_file()


def test_evaluate_cli_with_nothing_to_score_exits_2_with_a_message(tiny_model_dir, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image_id,dx\nISIC_0000000,mel\nISIC_0000001,unknown\n")
    result = run_cli("evaluate", "--model", str(tiny_model_dir), "--images", str(tmp_path), "--metadata", str(csv))
    assert result.returncode == 2
    assert "No image" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("evaluate", "--model", str(tmp_path / "nope"), "--images", str(tmp_path), "--metadata", str(csv))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.slow
def test_training_runs_under_a_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from skin_demo.training.train import TrainConfig, train, make_strategy
assert make_strategy("mirrored").num_replicas_in_sync == 2
train(TrainConfig(backbone="mobilenet_v2_035", out={str(tmp_path / 'm')!r}, img_size=(64, 96), head_epochs=1,
                  epochs=1, batch_size=16, limit=3, strategy="mirrored", verbose=0))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "m" / "model.weights.h5").is_file()
