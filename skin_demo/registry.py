"""Which models the app serves: a registry file of local model folders and pinned Hugging Face Hub repos.

Hub entries are pinned to a commit sha, so a later push to the repo never changes what a deployed app
runs, and the normal HF cache lets later (and offline) starts load without the network. Every folder,
local or downloaded, gets the same checks before Keras sees it (required files, optional sha256, no
pickles, no Lambda layers) and is loaded by `Classifier.from_folder` (safe_mode=True). One bad entry
only makes that entry unavailable, with a reason a person can act on.

Registry file: {"models": [{"name", "display_name", "source", "description", "revision", "sha256", "tta"}
or {"name", "display_name", "description", "members"}]}.
An entry with a revision is a Hub repo "owner/name" at that commit; without one, source is a model
folder (relative paths start at the repo root). sha256 optionally maps file names to digests.
"tta": true serves the model with test-time augmentation; an entry with "members" (names of other
entries) and no source serves their ensemble.
Chosen by an explicit path, else $SKIN_DEMO_REGISTRY, else resources/models.json. Hub downloads give
up after $SKIN_DEMO_HUB_TIMEOUT seconds (default 120) and then use a complete cached copy if any.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .modeling import REQUIRED_FILES, ModelFolderError, check_model_folder
from .predict import Classifier

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REGISTRY = Path(__file__).with_name("resources") / "models.json"
REGISTRY_ENV = "SKIN_DEMO_REGISTRY"
FETCH_TIMEOUT_ENV = "SKIN_DEMO_HUB_TIMEOUT"
DEFAULT_FETCH_TIMEOUT = 120.0
HUB_PATTERNS = [*REQUIRED_FILES, "README.md", "*.png", "*.npz"]  # npz: the OOD detector's arrays
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".dill")
ENTRY_FIELDS = {"name", "display_name", "source", "revision", "description", "sha256", "members", "tta"}
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
SHA256 = re.compile(r"[0-9a-f]{64}")


class RegistryError(ValueError):
    """The registry file itself is wrong; it is refused as a whole so the mistake is seen at start-up."""


class ModelUnavailable(ModelFolderError):
    """A model asked for by name is not in the registry or could not be loaded."""


class HubError(RuntimeError):
    """Talking to the Hub failed (auth, network, server); the message says what to check."""


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    display_name: str
    source: str  # a model folder (relative to the repo root) or, with a revision, a Hub repo "owner/name"
    revision: str | None = None
    description: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # an ensemble of these entries (and no source)
    tta: bool = False

    @property
    def is_hub(self) -> bool:
        return self.revision is not None

    @property
    def location(self) -> str:
        if self.members:
            return "ensemble of " + ", ".join(self.members)
        return f"{self.source}@{self.revision[:12]}" if self.is_hub else self.source


def registry_path(path=None) -> Path:
    """The explicit path, else $SKIN_DEMO_REGISTRY, else the bundled registry."""
    return Path(path or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def load_registry(path=None) -> list[RegistryEntry]:
    path = registry_path(path)
    try:
        models = json.loads(path.read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"Registry {path} is not readable as {{\"models\": [...]}}: {exc}") from exc
    entries = [_parse_entry(item, f"Registry {path}, entry {i}") for i, item in enumerate(models)]
    names = [entry.name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RegistryError(f"Registry {path} lists {', '.join(duplicates)} more than once.")
    singles = {entry.name for entry in entries if not entry.members}
    for entry in entries:
        wrong = [member for member in entry.members if member not in singles]
        if wrong:
            raise RegistryError(f"Registry {path}, ensemble {entry.name}: {', '.join(wrong)} not among the "
                                "registry's single models.")
    return entries


def _parse_entry(item, where: str) -> RegistryEntry:
    if not isinstance(item, dict) or not item.get("name") or not (item.get("source") or item.get("members")):
        raise RegistryError(f"{where}: each model needs at least a name and a source (or members for an ensemble).")
    where = f"{where} ({item['name']})"
    unknown = sorted(set(item) - ENTRY_FIELDS)
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {', '.join(unknown)}; metrics, input size and classes "
                            "come from the model folder's skin_demo.json, not the registry.")
    members = item.get("members")
    if members is not None:
        if item.get("source") or not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise RegistryError(f"{where}: an ensemble has a list of member names and no source.")
        return RegistryEntry(name=item["name"], display_name=item.get("display_name") or item["name"], source="",
                             description=item.get("description", ""), members=tuple(members))
    if not isinstance(item.get("tta", False), bool):
        raise RegistryError(f"{where}: tta must be true or false.")
    revision = item.get("revision")
    if revision is not None:
        if not REPO_ID.fullmatch(item["source"]):
            raise RegistryError(f"{where}: a Hub source must look like owner/name, got {item['source']!r}.")
        if not COMMIT_SHA.fullmatch(str(revision)):
            raise RegistryError(
                f"{where}: revision {revision!r} is not a commit sha. Pin Hub models to the full 40-character "
                "commit hash (`python -m skin_demo push` prints it): a branch or tag like 'main' can change "
                "under a running app.")
    sha256 = item.get("sha256") or {}
    bad = [name for name, digest in sha256.items() if not SHA256.fullmatch(str(digest).lower())]
    if bad:
        raise RegistryError(f"{where}: sha256 of {', '.join(bad)} is not a 64-character hex digest.")
    return RegistryEntry(name=item["name"], display_name=item.get("display_name") or item["name"],
                         source=item["source"], revision=revision, description=item.get("description", ""),
                         sha256={name: digest.lower() for name, digest in sha256.items()}, tta=item.get("tta", False))


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lambda_layers(config) -> list[str]:
    """Names of layers whose class is a Lambda (code in the config), anywhere in a Keras config."""
    found = []
    if isinstance(config, dict):
        if "lambda" in str(config.get("class_name", "")).lower():
            found.append(str(config.get("config", {}).get("name", config["class_name"])))
        for value in config.values():
            found += _lambda_layers(value)
    elif isinstance(config, list):
        for value in config:
            found += _lambda_layers(value)
    return found


def check_safe_folder(folder, sha256: dict[str, str] | None = None) -> Path:
    """The folder, once it has the required files, no pickle-style files, no Lambda layers and matching digests."""
    folder = check_model_folder(folder)
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelFolderError(f"Model folder {folder} contains pickle-style files ({', '.join(pickles)}); "
                               "refusing it because loading those can run code.")
    try:
        lambdas = _lambda_layers(json.loads((folder / "config.json").read_text()))
    except ValueError as exc:
        raise ModelFolderError(f"config.json in {folder} is not valid JSON: {exc}") from exc
    if lambdas:
        raise ModelFolderError(f"Model in {folder} has Lambda layers ({', '.join(lambdas)}); refusing it because "
                               "they carry code.")
    for filename, expected in (sha256 or {}).items():
        if not (folder / filename).is_file():
            raise ModelFolderError(f"Model folder {folder} has no {filename} to check against its sha256.")
        actual = file_sha256(folder / filename)
        if actual != expected:
            raise ModelFolderError(f"{filename} has sha256 {actual[:16]}..., the registry expects "
                                   f"{expected[:16]}...: the file is not the one that was pinned.")
    return folder


def _in_background(fn) -> Future:
    """Run fn in a daemon thread: a Hub that never answers must neither block start-up nor exit."""
    future = Future()

    def run():
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the waiting caller
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="hub-download").start()
    return future


def _explain_download_error(exc: BaseException, timeout: float) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if isinstance(exc, TimeoutError):
        return f"the Hub did not answer within {timeout:g} s and no complete copy is cached"
    if isinstance(exc, RepositoryNotFoundError):
        return "repository not found on the Hub (404; or it is private and no token was given)"
    if isinstance(exc, RevisionNotFoundError):
        return "the pinned commit does not exist in the repository"
    if isinstance(exc, LocalEntryNotFoundError) and constants.is_offline_mode():
        return "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set so nothing was downloaded"
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"the Hub answered HTTP {exc.response.status_code}"
    first_line = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return f"{type(exc).__name__}: {first_line}"


def _download_retrying_transport_errors(repo_id: str, **kwargs) -> str:
    """snapshot_download, once more after a transport error: huggingface_hub closes its shared HTTP
    client when any thread hits a connection error, which breaks downloads running in other threads."""
    from httpx2 import TransportError
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, **kwargs)
    except TransportError:
        return snapshot_download(repo_id, **kwargs)


def fetch_hub_snapshot(entry: RegistryEntry, timeout: float | None = None) -> Path:
    """The cached snapshot folder of a pinned Hub entry, downloading what is missing.

    With a commit sha and a complete cache, snapshot_download makes no request at all. When the Hub
    fails or is too slow, a complete cached copy of the same (immutable) commit is used instead.
    """
    timeout = fetch_timeout() if timeout is None else timeout
    download = partial(_download_retrying_transport_errors, entry.source, revision=entry.revision,
                       allow_patterns=HUB_PATTERNS)
    try:
        return Path(_in_background(download).result(timeout=timeout))
    except Exception as online_error:
        try:
            return Path(download(local_files_only=True))
        except Exception:
            reason = _explain_download_error(online_error, timeout).rstrip(".")
            raise ModelFolderError(f"Could not get {entry.location} from the Hub: {reason}.") from online_error


def fetch_timeout() -> float:
    return float(os.environ.get(FETCH_TIMEOUT_ENV) or DEFAULT_FETCH_TIMEOUT)


def entry_folder(entry: RegistryEntry, timeout: float | None = None) -> Path:
    """The checked model folder for an entry (downloaded into the HF cache for Hub entries)."""
    if entry.is_hub:
        folder = fetch_hub_snapshot(entry, timeout)
    else:
        folder = Path(entry.source).expanduser()
        folder = folder if folder.is_absolute() else REPO_ROOT / folder
        if not folder.parent.is_dir() and REPO_ID.fullmatch(entry.source):
            raise ModelFolderError(f"Model folder {folder} does not exist (for a Hub repo {entry.source!r}, "
                                   "add \"revision\": \"<commit sha>\" to its registry entry).")
    return check_safe_folder(folder, entry.sha256)


class ModelStore:
    """Every registry entry, loaded or with the reason it could not be; never raises for one bad entry.

    With lazy=True nothing is fetched or loaded until `get` (or `load_all`) asks for it, so an app can
    start at once. Hub downloads run in parallel, each bounded by the fetch timeout.
    """

    def __init__(self, registry=None, *, lazy: bool = False, fetch_timeout: float | None = None):
        self.entries = {entry.name: entry for entry in load_registry(registry)}
        self.fetch_timeout = fetch_timeout
        self.available: dict[str, Classifier] = {}
        self.unavailable: dict[str, str] = {}
        self._networks: dict[Path, Classifier] = {}
        self._loading = threading.RLock()  # app handlers may ask for the same lazy model at once; ensembles nest
        if not lazy:
            self.load_all()

    @property
    def pending(self) -> list[str]:
        return [name for name in self.entries if name not in self.available and name not in self.unavailable]

    def load_all(self) -> None:
        with self._loading:
            names = self.pending
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
                folders = list(pool.map(self._folder_or_error, names))
            for name, folder in zip(names, folders):
                if name in self.pending:  # an ensemble listed earlier may have loaded it already
                    self._load(name, folder)

    def get(self, name: str) -> Classifier:
        if name not in self.entries:
            raise ModelUnavailable(f"Unknown model {name!r}; the registry has {', '.join(self.entries) or 'none'}.")
        with self._loading:
            if name in self.pending:
                self._load(name, self._folder_or_error(name))
        if name in self.unavailable:
            raise ModelUnavailable(f"Model {name!r} is unavailable: {self.unavailable[name]}")
        return self.available[name]

    def _network(self, folder: Path, name: str) -> Classifier:
        """One loaded Classifier per folder: a TTA entry and the plain entry of the same model share it
        (half the memory, and one forward pass of the unturned view serves both in a comparison)."""
        key = Path(folder).resolve()
        if key not in self._networks:
            self._networks[key] = Classifier.from_folder(folder, name=name)
        return self._networks[key]

    def _folder_or_error(self, name: str) -> Path | Exception | None:
        if self.entries[name].members:
            return None  # an ensemble has no folder of its own
        try:
            return entry_folder(self.entries[name], self.fetch_timeout)
        except Exception as exc:  # reported per entry by _load
            return exc

    def _load(self, name: str, folder: Path | Exception | None) -> None:
        from .ensemble import EnsembleClassifier, TtaClassifier

        entry = self.entries[name]
        try:
            if isinstance(folder, Exception):
                raise folder
            if entry.members:
                self.available[name] = EnsembleClassifier([self.get(member) for member in entry.members], name)
            elif entry.tta:
                self.available[name] = TtaClassifier(self._network(folder, folder.name), name)
            else:
                self.available[name] = self._network(folder, name)
        except ModelFolderError as exc:
            self.unavailable[name] = str(exc)
        except Exception as exc:  # corrupt files surface as many types; one entry must not stop the app
            self.unavailable[name] = f"{type(exc).__name__}: {exc}"


def push(folder, repo_id: str, token: str | None = None, revision: str | None = None,
         private: bool = False) -> str:
    """Publish a model folder to the Hub (creating the repo if needed); returns the commit sha to pin."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from httpx2 import HTTPError

    folder = check_safe_folder(folder)
    if not REPO_ID.fullmatch(repo_id):
        raise ValueError(f"Hub repo must look like owner/name, got {repo_id!r}.")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                   allow_patterns=HUB_PATTERNS, commit_message=f"Upload {folder.name}")
    except (HfHubHTTPError, HTTPError) as exc:
        first_line = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise HubError(f"Pushing {folder} to {repo_id} failed: {first_line}") from exc
    return commit.oid
