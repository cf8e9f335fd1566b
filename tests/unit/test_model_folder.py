"""A model folder: skin_demo.json round-trips exactly; unsafe or broken folders are refused in one clear sentence."""

import json

import pytest
from unit_helpers import TINY_SIZE, assert_one_sentence

from skin_demo.classes import CLASSES
from skin_demo.model_folder import (INFO_FILE, WEIGHTS_FILE, ModelFolderError, ModelInfo, check_safe_folder,
                                    file_sha256, load_model_folder)


def _full_info() -> ModelInfo:
    """An info with every optional field set, as a calibrated, OOD-fitted, continued run writes it."""
    return ModelInfo(
        name="mobilenet_v2", backbone="mobilenet_v2", input_size=[150, 200], last_conv_layer="out_relu",
        pretrained="imagenet", parameters=2_266_951, training={"epochs": 3, "lr": 1e-4, "img_size": [150, 200]},
        training_seconds=61.5, epochs_run=3, history=[{"epoch": 1, "loss": 1.2, "val_balanced_accuracy": 0.5}],
        continued_from=[{"epochs_run": 2, "training_seconds": 30.0, "training": {"epochs": 2}}],
        split_file="ham10000_split.csv", split_sha256="ab" * 32, environment={"keras": "3.15.1"},
        metrics={"test": {"n": 10, "balanced_accuracy": 0.61}}, temperature=1.37,
        ood={"threshold": 412.5, "method": "Mahalanobis"}, members=["a", "b"], tta="dihedral views averaged")


def test_full_info_survives_dict_and_file_round_trips_byte_for_byte(tmp_path):
    info = _full_info()
    assert info.input_size == (150, 200) and info.members == ("a", "b")  # normalised on construction
    assert ModelInfo.from_dict(info.to_dict()) == info
    assert json.loads(json.dumps(info.to_dict())) == info.to_dict(), "to_dict is plain JSON"

    first = info.write(tmp_path).read_bytes()
    again = ModelInfo.read(tmp_path)
    assert again == info
    (tmp_path / "second").mkdir()
    assert again.write(tmp_path / "second").read_bytes() == first
    assert again.total_training_seconds == pytest.approx(91.5)


def test_unset_optional_fields_stay_out_of_the_file(tmp_path):
    info = ModelInfo(name="tiny", backbone="custom_cnn", input_size=TINY_SIZE)
    written = json.loads(info.write(tmp_path).read_text())
    assert not {"temperature", "ood", "members", "tta", "continued_from"} & set(written)
    assert written["classes"] == list(CLASSES) and written["input_size"] == list(TINY_SIZE)
    assert ModelInfo.read(tmp_path) == info
    assert info.served_temperature == 1.0 and info.test_metrics == {}


@pytest.mark.parametrize("content, phrase", [
    (json.dumps({"name": "x", "backbone": "y", "input_size": [1, 2], "auc": 0.9}), "unknown field(s) auc"),
    ('{"name": "x", "backbone": ', "is not readable JSON"),
    ("[1, 2, 3]", "is not a JSON object"),
    (json.dumps({"name": "x", "backbone": "y"}), "incomplete or malformed"),
    (json.dumps({"name": "x", "backbone": "y", "input_size": ["tall", "wide"]}), "incomplete or malformed"),
], ids=["unknown-field", "truncated-json", "not-an-object", "missing-input-size", "non-numeric-size"])
def test_a_broken_skin_demo_json_is_refused_and_named(tmp_path, content, phrase):
    (tmp_path / INFO_FILE).write_text(content)
    with pytest.raises(ModelFolderError) as refusal:
        ModelInfo.read(tmp_path)
    assert phrase in str(refusal.value) and INFO_FILE in str(refusal.value)


def test_a_folder_without_skin_demo_json_is_named(tmp_path):
    with pytest.raises(ModelFolderError, match=f"is missing {INFO_FILE}"):
        ModelInfo.read(tmp_path)


# ------------------------------------------------------------------ check_safe_folder
def test_the_saved_tiny_folder_is_safe_and_its_pinned_digest_matches(tiny_folder):
    digest = file_sha256(tiny_folder / WEIGHTS_FILE)
    assert len(digest) == 64
    assert check_safe_folder(tiny_folder, {WEIGHTS_FILE: digest}) == tiny_folder


def _add_pickle(folder):
    (folder / "assets" / "optimizer.pkl").write_bytes(b"\x80\x04K\x01.")


def _add_lambda_layer(folder):
    config = json.loads((folder / "config.json").read_text())
    layer = config["config"]["layers"][1]
    layer["class_name"], layer["config"]["name"] = "Lambda", "sneaky"
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("damage, pins, phrases", [
    (_add_pickle, None, ["pickle-style files (optimizer.pkl)", "can run code"]),
    (_add_lambda_layer, None, ["Lambda layers (sneaky)", "carry code"]),
    (lambda folder: None, {WEIGHTS_FILE: "0" * 64}, [f"{WEIGHTS_FILE} has sha256", "not the one that was pinned"]),
    (lambda folder: (folder / WEIGHTS_FILE).unlink(), None, [f"is missing {WEIGHTS_FILE}"]),
    (lambda folder: None, {"extra.onnx": "0" * 64}, ["has no extra.onnx to check against its sha256"]),
], ids=["pickle", "lambda-layer", "wrong-sha256", "missing-weights", "pinned-file-missing"])
def test_an_unsafe_or_incomplete_folder_is_refused_in_one_sentence(folder_copy, damage, pins, phrases):
    damage(folder_copy)
    with pytest.raises(ModelFolderError) as refusal:
        check_safe_folder(folder_copy, pins)
    assert_one_sentence(str(refusal.value), *phrases)


@pytest.mark.parametrize("make, phrase", [
    (lambda path: path.write_text("not a folder"), "is a file, not a model folder"),
    (lambda path: None, "does not exist"),
], ids=["a-file", "nothing"])
def test_a_path_that_is_not_a_folder_is_refused_in_one_sentence(tmp_path, make, phrase):
    path = tmp_path / "model"
    make(path)
    with pytest.raises(ModelFolderError) as refusal:
        check_safe_folder(path)
    assert_one_sentence(str(refusal.value), phrase)


# ------------------------------------------------------------------ load_model_folder
def test_the_tiny_folder_loads_with_safe_mode_and_its_info(tiny_folder):
    model, info = load_model_folder(tiny_folder)
    assert info == ModelInfo.read(tiny_folder)
    assert tuple(model.input_shape[1:]) == (*TINY_SIZE, 3) and tuple(model.output_shape) == (None, len(CLASSES))
    assert model.get_layer(info.last_conv_layer) is not None


def test_a_model_predicting_other_classes_is_refused(folder_copy):
    ModelInfo.read(folder_copy).replace(classes=tuple(reversed(CLASSES))).write(folder_copy)
    with pytest.raises(ModelFolderError) as refusal:
        load_model_folder(folder_copy)
    assert_one_sentence(str(refusal.value), "predicts ['vasc'", "expected ['akiec'")


def test_a_model_with_lambda_code_is_refused_before_keras_sees_it(tmp_path):
    """Every loader (app, CLI, training) goes through check_safe_folder, with safe_mode behind it."""
    import keras

    from skin_demo.training.factory import save_model_folder

    inputs = keras.Input((8, 8, 3))
    doubled = keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.GlobalAveragePooling2D()(doubled))
    folder = save_model_folder(keras.Model(inputs, outputs), tmp_path / "lambda",
                               ModelInfo(name="lambda", backbone="custom", input_size=(8, 8)))
    with pytest.raises(ModelFolderError, match="Lambda layers \\(doubler"):
        check_safe_folder(folder)
    with pytest.raises(ModelFolderError, match="Lambda layers \\(doubler"):
        load_model_folder(folder)


def test_a_continued_run_s_card_tells_the_schedule_of_each_part():
    """A run continued from another tells both parts' schedules the same way: a from-scratch part has no head phase."""
    from dataclasses import replace

    from skin_demo.training.card import render_model_card

    info = replace(_full_info(), metrics={}, ood=None, training={"epochs": 24, "lr": 1e-3, "from_scratch": True},
                   continued_from=[{"epochs_run": 3, "training_seconds": 60.0,
                                    "training": {"head_epochs": 1, "epochs": 2, "lr": 3e-4}}])
    card = render_model_card(info)
    assert "24 epochs from random weights at lr 0.001" in card
    assert "continuing a run of 3 epochs (1 min; head 1 epochs, then fine-tuning 2 epochs at lr 0.0003)" in card
