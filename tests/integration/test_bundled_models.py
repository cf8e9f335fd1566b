"""The models shipped in weights/: each loads safely, answers with a distribution and has honest metrics."""

import json

import keras
import numpy as np
import pytest

from skin_demo import CLASSES
from skin_demo.training import data as dataset
from skin_demo.serving.catalog import DEFAULT_REGISTRY, load_registry
from skin_demo.serving.store import ModelStore

ENTRIES = [entry.name for entry in load_registry(DEFAULT_REGISTRY)]
FOLDERS = [entry.source for entry in load_registry(DEFAULT_REGISTRY) if not entry.members and not entry.tta]


@pytest.fixture(scope="module")
def store():
    return ModelStore(DEFAULT_REGISTRY, lazy=True)


@pytest.mark.parametrize("name", ENTRIES)
def test_every_served_model_predicts_a_distribution_over_the_seven_classes(store, name, test_images):
    classifier = store.get(name)
    probs = classifier.predict(test_images["mel"])
    assert list(probs) != [] and set(probs) == set(CLASSES)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("source", FOLDERS)
def test_bundled_folders_load_with_plain_keras_and_carry_their_test_metrics(source):
    from skin_demo.paths import REPO_ROOT

    folder = REPO_ROOT / source
    model = keras.saving.load_model(str(folder), safe_mode=True, compile=False)
    info = json.loads((folder / "skin_demo.json").read_text())
    assert info["classes"] == list(CLASSES) and info["split_sha256"] == dataset.split_checksum()
    assert (folder / "model.weights.h5").stat().st_size < 25 * 2**20
    height, width = info["input_size"]
    out = model.predict(np.full((2, height, width, 3), 120.0, "float32"), verbose=0)
    assert out.shape == (2, 7)
    test = info["metrics"]["test"]
    assert test["n"] == int((dataset.load_split()["split"] == "test").sum())
    assert test["balanced_accuracy"] > 1 / 7 + 0.1, "clearly better than chance on the lesion-disjoint test split"
    card = (folder / "README.md").read_text()
    assert "model-index" in card
    schedule = (f"{info['training']['epochs']} epochs from random weights" if info["training"].get("from_scratch")
                else f"head {info['training']['head_epochs']} epochs, then fine-tuning {info['training']['epochs']} epochs")
    assert schedule in card, "the card tells the schedule the model was trained with"


def _stored_validation(entry, entries) -> np.ndarray:
    """What an entry serves on the validation split, from the val predictions its folder(s) store (fresh ones:
    `stored_served` refuses stale files); an ensemble's at its own temperature, as it serves."""
    from skin_demo.serving.composite import ensemble_probabilities
    from skin_demo.training.calibrate import stored_served

    if entry.members:
        return ensemble_probabilities([_stored_validation(entries[name], entries) for name in entry.members],
                                      entry.temperature)
    stored = stored_served(entry, "val")
    assert list(stored.labels) == list(dataset.labelled_split("val")[1]), "the validation split, in its order"
    return stored.probabilities


def test_the_default_entry_is_the_best_served_entry_on_validation():
    """The dropdown opens with the entry the selection rule ranks first on validation (never on test)."""
    from skin_demo.metrics import compute_metrics, rank_by_validation

    entries = {entry.name: entry for entry in load_registry(DEFAULT_REGISTRY)}
    _, labels = dataset.labelled_split("val")
    scores = {name: compute_metrics(labels, _stored_validation(entry, entries)) for name, entry in entries.items()}
    assert rank_by_validation(scores)[0] == ENTRIES[0]


@pytest.mark.parametrize("name", [entry.name for entry in load_registry(DEFAULT_REGISTRY) if entry.members])
def test_an_ensembles_temperature_is_the_one_its_current_members_give_on_validation(name):
    """A member retrained or swapped leaves the registry's temperature stale; `calibrate --entry` refits it."""
    from skin_demo.serving.composite import ensemble_probabilities
    from skin_demo.training.calibrate import fit_temperature

    entries = {entry.name: entry for entry in load_registry(DEFAULT_REGISTRY)}
    entry = entries[name]
    if entry.temperature is None:
        pytest.skip(f"{name} serves the plain mean of its members (no temperature fitted)")
    _, labels = dataset.labelled_split("val")
    mean = ensemble_probabilities([_stored_validation(entries[member], entries) for member in entry.members])
    assert fit_temperature(labels, mean) == pytest.approx(entry.temperature, abs=1e-3), \
        f"refit it: python -m skin_demo calibrate --entry {name}"
