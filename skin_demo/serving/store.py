"""The models the app serves: every registry entry, loaded, or with the reason it could not be.

Every folder, local or downloaded, gets the same checks before Keras sees it
(`model_folder.check_safe_folder`) and is loaded by `Classifier.from_folder` (safe_mode=True). One bad
entry only makes that entry unavailable, with a reason a person can act on.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..model_folder import ModelFolderError, check_safe_folder
from ..paths import REPO_ROOT
from .catalog import REPO_ID, RegistryEntry, load_registry
from .classifier import Classifier
from .composite import EnsembleClassifier, TtaClassifier
from .hub import fetch_hub_snapshot


class ModelUnavailable(ModelFolderError):
    """A model asked for by name is not in the registry or could not be loaded."""


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
        entry = self.entries[name]
        try:
            if isinstance(folder, Exception):
                raise folder
            if entry.members:
                self.available[name] = EnsembleClassifier([self.get(member) for member in entry.members], name,
                                                          entry.temperature)
            elif entry.tta:
                self.available[name] = TtaClassifier(self._network(folder, folder.name), name)
            else:
                self.available[name] = self._network(folder, name)
        except ModelFolderError as exc:
            self.unavailable[name] = str(exc)
        except Exception as exc:  # corrupt files surface as many types; one entry must not stop the app
            self.unavailable[name] = f"{type(exc).__name__}: {exc}"
        # in the registry's order (an ensemble loads its members first): the first entry is the default
        self.available = {key: self.available[key] for key in self.entries if key in self.available}
