"""The ModelStore serves every registry entry it can and says why it cannot serve the others."""

import json

import pytest

from skin_demo.serving.classifier import Classifier
from skin_demo.serving.composite import EnsembleClassifier, TtaClassifier
from skin_demo.serving.store import ModelStore, ModelUnavailable


def test_loaded_entries_are_available_and_a_missing_folder_is_unavailable_with_its_reason(store, tiny_folder):
    assert list(store.available) == ["tiny", "tiny_tta", "both"]
    assert list(store.unavailable) == ["gone"] and not store.pending
    reason = store.unavailable["gone"]
    assert str(tiny_folder.parent / "gone") in reason and reason.endswith("does not exist.")


def test_tta_and_ensemble_entries_are_built_on_the_one_loaded_network(store):
    plain, tta, both = store.get("tiny"), store.get("tiny_tta"), store.get("both")
    assert type(plain) is Classifier and plain.name == "tiny"
    assert isinstance(tta, TtaClassifier) and tta.base is plain, "one network per folder"
    assert isinstance(both, EnsembleClassifier) and both.members == [plain, tta]


def test_asking_for_an_unknown_or_unavailable_model_raises_model_unavailable(store):
    with pytest.raises(ModelUnavailable, match="Unknown model 'nope'; the registry has tiny, tiny_tta, both, gone"):
        store.get("nope")
    with pytest.raises(ModelUnavailable, match="Model 'gone' is unavailable: Model folder .* does not exist"):
        store.get("gone")


def test_each_bad_entry_is_unavailable_with_its_own_reason(tmp_path, folder_copy, tiny_folder):
    (folder_copy / "assets" / "weights.pkl").write_bytes(b"\x80\x04.")
    unpinned_source = "someone/skin-model"  # a Hub repo id written without its revision
    registry = tmp_path / "models.json"
    registry.write_text(json.dumps({"models": [
        {"name": "pickled", "source": str(folder_copy)},
        {"name": "hub_without_revision", "source": unpinned_source},
        {"name": "wrong_digest", "source": str(tiny_folder), "sha256": {"config.json": "0" * 64}},
        {"name": "pair", "members": ["pickled", "wrong_digest"]},
    ]}))
    store = ModelStore(registry)
    assert store.available == {}
    assert "pickle-style files (weights.pkl)" in store.unavailable["pickled"]
    assert 'add "revision": "<commit sha>"' in store.unavailable["hub_without_revision"]
    assert "config.json has sha256" in store.unavailable["wrong_digest"]
    assert "Model 'pickled' is unavailable" in store.unavailable["pair"], "an ensemble says which member failed"


def test_a_lazy_store_loads_a_model_only_when_asked(registry_file):
    lazy = ModelStore(registry_file, lazy=True)
    assert lazy.available == {} and lazy.unavailable == {}
    assert lazy.pending == ["tiny", "tiny_tta", "both", "gone"]
    assert lazy.get("both").members[0] is lazy.get("tiny"), "an ensemble loads its members"
    assert lazy.pending == ["gone"]


def test_an_ensemble_listed_first_stays_first_though_it_loads_its_members_first(tmp_path, tiny_folder):
    registry = tmp_path / "models.json"
    registry.write_text(json.dumps({"models": [
        {"name": "both", "members": ["tiny", "tiny_tta"]},
        {"name": "tiny_tta", "source": str(tiny_folder), "tta": True},
        {"name": "tiny", "source": str(tiny_folder)},
    ]}))
    assert list(ModelStore(registry).available) == ["both", "tiny_tta", "tiny"]
    lazy = ModelStore(registry, lazy=True)
    lazy.get("both")
    assert list(lazy.available) == ["both", "tiny_tta", "tiny"]
