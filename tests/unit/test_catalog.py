"""The registry file is checked as a whole when it is read: one mistake refuses it, with the entry named."""

import json

import pytest

from skin_demo.serving.catalog import DEFAULT_REGISTRY, RegistryError, load_registry, registry_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "ab" * 32


def write(tmp_path, *entries):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": list(entries)}))
    return path


def test_a_valid_registry_reads_into_local_hub_and_ensemble_entries(tmp_path):
    path = write(tmp_path,
                 {"name": "local", "display_name": "Local", "source": "weights/local", "tta": True,
                  "sha256": {"model.weights.h5": DIGEST.upper()}},
                 {"name": "hub", "source": "someone/skin-model", "revision": COMMIT, "description": "pinned"},
                 {"name": "pair", "display_name": "Pair", "members": ["local", "hub"]})
    local, hub, pair = load_registry(path)
    assert (local.name, local.display_name, local.tta, local.is_hub) == ("local", "Local", True, False)
    assert local.sha256 == {"model.weights.h5": DIGEST} and local.location == "weights/local"
    assert hub.is_hub and hub.display_name == "hub" and hub.location == f"someone/skin-model@{COMMIT[:12]}"
    assert pair.members == ("local", "hub") and pair.location == "ensemble of local, hub" and not pair.source


def test_the_registry_is_chosen_by_argument_then_environment_then_the_bundled_file(tmp_path, monkeypatch):
    assert registry_path() == DEFAULT_REGISTRY
    monkeypatch.setenv("SKIN_DEMO_REGISTRY", str(tmp_path / "env.json"))
    assert registry_path() == tmp_path / "env.json"
    assert registry_path(tmp_path / "arg.json") == tmp_path / "arg.json"


@pytest.mark.parametrize("entries, phrase", [
    ([{"name": "hub", "source": "someone/skin-model", "revision": "main"}],
     "revision 'main' is not a commit sha"),
    ([{"name": "local", "source": "weights/local", "metrics": {"auc": 0.9}}],
     "unknown field(s) metrics"),
    ([{"name": "twin", "source": "weights/a"}, {"name": "twin", "source": "weights/b"}],
     "lists twin more than once"),
    ([{"name": "local", "source": "weights/local"}, {"name": "pair", "members": ["local", "nope"]}],
     "ensemble pair: nope not among the registry's single models"),
    ([{"name": "a", "source": "weights/a"}, {"name": "inner", "members": ["a"]},
      {"name": "outer", "members": ["inner"]}],
     "ensemble outer: inner not among"),
    ([{"name": "nameless"}], "needs at least a name and a source"),
    ([{"name": "hub", "source": "not a repo id", "revision": COMMIT}], "must look like owner/name"),
    ([{"name": "local", "source": "weights/local", "sha256": {"model.weights.h5": "abc"}}],
     "sha256 of model.weights.h5 is not a 64-character hex digest"),
    ([{"name": "local", "source": "weights/local", "tta": "yes"}], "tta must be true or false"),
    ([{"name": "a", "source": "weights/a"}, {"name": "pair", "members": ["a"], "temperature": 0}],
     "temperature must be a number from 0.05 to 20, not 0"),
    ([{"name": "a", "source": "weights/a", "temperature": 0.8}], "only an ensemble has a temperature in the registry"),
], ids=["branch-not-commit", "unknown-field", "duplicate-names", "unknown-member", "nested-ensemble",
        "no-source", "bad-repo-id", "short-digest", "tta-not-bool", "temperature-out-of-range",
        "temperature-of-a-network"])
def test_a_mistake_anywhere_refuses_the_whole_registry(tmp_path, entries, phrase):
    with pytest.raises(RegistryError) as refusal:
        load_registry(write(tmp_path, *entries))
    assert phrase in str(refusal.value)
    assert str(tmp_path / "models.json") in str(refusal.value), "the message says which file"


@pytest.mark.parametrize("content", ['{"models": [', '{"entries": []}', "[]"], ids=["truncated", "no-models", "a-list"])
def test_a_file_that_is_not_a_registry_is_refused(tmp_path, content):
    path = tmp_path / "models.json"
    path.write_text(content)
    with pytest.raises(RegistryError, match='not readable as {"models"'):
        load_registry(path)


def test_the_bundled_registry_is_valid():
    entries = load_registry(DEFAULT_REGISTRY)
    assert entries and len({entry.name for entry in entries}) == len(entries)
