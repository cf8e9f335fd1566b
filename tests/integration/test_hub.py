"""User stories for the model registry and the Hugging Face Hub, against a fake Hub on 127.0.0.1.

The real huggingface_hub client does every request (push, snapshot_download, cache look-ups); only the
server is ours. Nothing here can reach huggingface.co: the endpoint, cache, token file and timeouts
all point at the fake Hub and tmp_path.
"""

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import set_client_factory
from huggingface_hub.utils._http import default_client_factory

from fake_hub import FakeHub
from skin_demo.__main__ import main
from skin_demo.classes import CLASSES
from skin_demo.serving.catalog import RegistryError
from skin_demo.serving.hub import HUB_PATTERNS
from skin_demo.serving.store import ModelStore, ModelUnavailable
from skin_demo.training.publish import push

pytestmark = pytest.mark.slow

REPO = "skin-demo/tiny"
ENV_VARS = {"ENDPOINT": "HF_ENDPOINT", "HF_HOME": "HF_HOME", "HF_HUB_CACHE": "HF_HUB_CACHE",
            "HF_TOKEN_PATH": "HF_TOKEN_PATH", "HF_HUB_OFFLINE": "HF_HUB_OFFLINE",
            "HF_HUB_ETAG_TIMEOUT": "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT": "HF_HUB_DOWNLOAD_TIMEOUT"}


def use_hf(monkeypatch, home: Path, endpoint: str, offline: bool = False) -> None:
    """Point huggingface_hub at the fake Hub, a private cache and no token, with 1 s request timeouts.

    The client reads its environment once, at import (keras imports it before any test runs), so the
    variables are set and also mirrored into huggingface_hub.constants, with the values it derives.
    """
    from huggingface_hub import constants

    settings = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname},
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": offline,
        "HF_HUB_ETAG_TIMEOUT": 1,
        "HF_HUB_DOWNLOAD_TIMEOUT": 1,
    }
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for attribute, value in settings.items():
        monkeypatch.setattr(constants, attribute, value)
        if attribute in ENV_VARS:
            monkeypatch.setenv(ENV_VARS[attribute], str(int(value) if isinstance(value, bool) else value))


REMOTE_ATTEMPTS = []


def _refuse_remote_hosts(request):
    if request.url.host not in ("127.0.0.1", "localhost"):
        REMOTE_ATTEMPTS.append(str(request.url))
        raise RuntimeError(f"the tests must not reach {request.url}")


def _local_only_client():
    client = default_client_factory()
    hooks = client.event_hooks
    hooks["request"] = [_refuse_remote_hosts, *hooks["request"]]
    client.event_hooks = hooks
    return client


@pytest.fixture(autouse=True)
def local_network_only():
    """huggingface_hub's HTTP client refuses (and the test fails on) any host but the fake Hub's."""
    REMOTE_ATTEMPTS.clear()
    set_client_factory(_local_only_client)
    yield
    set_client_factory(default_client_factory)
    assert REMOTE_ATTEMPTS == []


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake Hub for this test that pages tree listings every 3 files, so the client must follow pages."""
    fake = FakeHub(page_size=3).start()
    use_hf(monkeypatch, tmp_path / "hf_home", fake.url)
    yield fake
    fake.stop()


@pytest.fixture
def published(hub, tiny_model_dir):
    """The tiny model pushed to the fake Hub by `push`; its commit sha."""
    return push(tiny_model_dir, REPO, token="hf_fake_token")


def folder_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


def hub_entry(name, revision, repo=REPO, **extra) -> dict:
    return {"name": name, "display_name": name.title(), "source": repo, "revision": revision, **extra}


def write_registry(path: Path, *entries) -> Path:
    path.write_text(json.dumps({"models": list(entries)}))
    return path


def cached_snapshots(tmp_path, repo=REPO) -> list[str]:
    folder = tmp_path / "hf_home" / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots"
    return sorted(p.name for p in folder.iterdir())


def test_pushed_model_loads_at_its_pinned_commit_and_predicts(hub, published, tiny_model_dir, test_images,
                                                              tmp_path):
    pushed = hub.repos[REPO][-1]
    assert pushed.sha == published
    assert pushed.files == {name: data for name, data in folder_files(tiny_model_dir).items()
                            if any(fnmatch(name, pattern) for pattern in HUB_PATTERNS)}
    assert hub.authorizations == {"Bearer hf_fake_token"}
    newer = hub.add_commit(REPO, {"model.weights.h5": b"not an h5 file", "README.md": b"# newer"})
    hub.requests.clear()

    store = ModelStore(write_registry(tmp_path / "models.json", hub_entry("tiny_hub", published)))

    assert store.unavailable == {}
    probs = store.get("tiny_hub").predict(test_images["mel"])
    assert sorted(probs) == sorted(CLASSES)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert cached_snapshots(tmp_path) == [published]
    assert hub.requests and all(newer not in path and "/main" not in path for _, path in hub.requests)


def test_later_starts_need_no_network(hub, published, tmp_path, monkeypatch):
    registry = write_registry(tmp_path / "models.json", hub_entry("tiny_hub", published))
    ModelStore(registry)
    requests_after_first_start = len(hub.requests)

    store = ModelStore(registry, lazy=True)
    assert store.pending == ["tiny_hub"] and len(hub.requests) == requests_after_first_start
    assert store.get("tiny_hub").name == "tiny_hub"
    assert len(hub.requests) == requests_after_first_start

    other = hub.add_commit("skin-demo/never-downloaded", hub.repos[REPO][-1].files)
    use_hf(monkeypatch, tmp_path / "hf_home", hub.url, offline=True)
    offline = ModelStore(write_registry(tmp_path / "offline.json", hub_entry("tiny_hub", published),
                                        hub_entry("uncached", other, repo="skin-demo/never-downloaded")))
    assert list(offline.available) == ["tiny_hub"]
    assert "HF_HUB_OFFLINE" in offline.unavailable["uncached"]
    assert len(hub.requests) == requests_after_first_start


def test_each_broken_entry_is_unavailable_with_a_reason_and_the_rest_still_load(hub, published, tiny_model_dir,
                                                                                tmp_path):
    files = hub.repos[REPO][-1].files
    config = json.loads(files["config.json"])
    config["config"]["layers"].append({"class_name": "Lambda", "config": {"name": "runs_code"}})
    commits = {
        "e404": hub.add_commit("skin-demo/e404", files),
        "e500": hub.add_commit("skin-demo/e500", files),
        "hang": hub.add_commit("skin-demo/hang", files),
        "cut": hub.add_commit("skin-demo/cut", files),
        "incomplete": hub.add_commit("skin-demo/incomplete", {**files, "skin_demo.json": None}),
        "corrupt": hub.add_commit("skin-demo/corrupt", {**files, "model.weights.h5": b"\x89HDF garbage" * 100}),
        "lambda": hub.add_commit("skin-demo/lambda", {**files, "config.json": json.dumps(config).encode()}),
    }
    hub.fail("skin-demo/e404", "404")
    hub.fail("skin-demo/e500", "500", "model.weights.h5")
    hub.fail("skin-demo/hang", "timeout")
    hub.fail("skin-demo/cut", "truncated", "model.weights.h5")
    pickled = shutil.copytree(tiny_model_dir, tmp_path / "pickled")
    (pickled / "extra.pkl").write_bytes(b"\x80\x04.")
    registry = write_registry(
        tmp_path / "models.json",
        {"name": "bundled", "display_name": "Bundled", "source": str(tiny_model_dir)},
        {"name": "not_trained_yet", "display_name": "Later", "source": "weights/not_trained_yet"},
        {"name": "pickled", "display_name": "Pickled", "source": str(pickled)},
        hub_entry("bad_sha", published, sha256={"model.weights.h5": "0" * 64}),
        *(hub_entry(name, sha, repo=f"skin-demo/{name}") for name, sha in commits.items()))

    # only "hang" may time out: the other nine download in parallel from the in-process fake Hub, which
    # took over 3 s for a healthy one (bad_sha) once in a full CI run on 2 busy cores
    store = ModelStore(registry, fetch_timeout=10)

    assert list(store.available) == ["bundled"]
    expected = {
        "not_trained_yet": "does not exist", "pickled": "pickle", "bad_sha": "sha256",
        "e404": "not found", "e500": "HTTP 500", "hang": "did not answer within 10 s",
        "cut": "Consistency check failed", "incomplete": "missing skin_demo.json",
        "corrupt": "could not be loaded safely", "lambda": "Lambda layers (runs_code)",
    }
    for name, phrase in expected.items():
        assert phrase in store.unavailable[name], (name, store.unavailable[name])
    with pytest.raises(ModelUnavailable, match="'cut' is unavailable: .*Consistency"):
        store.get("cut")
    with pytest.raises(ModelUnavailable, match="Unknown model 'nope'"):
        store.get("nope")


def test_registry_with_a_branch_instead_of_a_commit_is_refused(tmp_path, capsys):
    registry = write_registry(tmp_path / "models.json", hub_entry("tiny_hub", "main"))

    with pytest.raises(RegistryError, match="revision 'main' is not a commit sha"):
        ModelStore(registry)
    assert main(["models", "--registry", str(registry)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "40-character commit hash" in error and "\n" not in error

    with pytest.raises(RegistryError, match="metrics, input size and classes come from the model folder"):
        ModelStore(write_registry(tmp_path / "metrics.json", hub_entry("x", "a" * 40, metrics={"auc": 1})))


def test_cli_push_prints_the_sha_and_models_lists_it(hub, tiny_model_dir, tmp_path, capsys):
    assert main(["push", "--model", str(tiny_model_dir), "--repo", "skin-demo/cli"]) == 0
    sha = capsys.readouterr().out.strip()
    assert sha == hub.repos["skin-demo/cli"][-1].sha

    registry = write_registry(tmp_path / "models.json", hub_entry("from_hub", sha, repo="skin-demo/cli"),
                              {"name": "later", "display_name": "Later", "source": "weights/not_trained_yet"})
    assert main(["models", "--registry", str(registry)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("available    from_hub") and f"skin-demo/cli@{sha[:12]}" in lines[0]
    assert lines[1].startswith("unavailable  later") and "does not exist" in lines[1]
