"""The registry file: which models the app serves, as local model folders or pinned Hugging Face Hub repos.

Registry file: {"models": [{"name", "display_name", "source", "description", "revision", "sha256", "tta"}
or {"name", "display_name", "description", "members"}]}.
An entry with a revision is a Hub repo "owner/name" at that commit; without one, source is a model
folder (relative paths start at the repo root). sha256 optionally maps file names to digests.
"tta": true serves the model with test-time augmentation; an entry with "members" (names of other
entries) and no source serves their ensemble.
Chosen by an explicit path, else $SKIN_DEMO_REGISTRY, else resources/models.json. The file is checked
as a whole when it is read, so a mistake in it is seen at start-up.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..model_folder import TEMPERATURE_RANGE
from ..paths import RESOURCES

DEFAULT_REGISTRY = RESOURCES / "models.json"
REGISTRY_ENV = "SKIN_DEMO_REGISTRY"
ENTRY_FIELDS = {"name", "display_name", "source", "revision", "description", "sha256", "members", "tta",
                "temperature"}
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
SHA256 = re.compile(r"[0-9a-f]{64}")


class RegistryError(ValueError):
    """The registry file itself is wrong; it is refused as a whole so the mistake is seen at start-up."""


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    display_name: str
    source: str  # a model folder (relative to the repo root) or, with a revision, a Hub repo "owner/name"
    revision: str | None = None
    description: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # an ensemble of these entries (and no source)
    temperature: float | None = None  # an ensemble's own, fitted on validation (a network's is in its folder)
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
    unknown = sorted(set(item) - ENTRY_FIELDS)
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; metrics, input size and "
                            "classes come from the model folder's skin_demo.json, not the registry.")
    texts = [key for key in ("name", "display_name", "source", "revision", "description")
             if item.get(key) is not None and not isinstance(item[key], str)]
    if texts:
        raise RegistryError(f"{where}: {', '.join(texts)} must be text.")
    where = f"{where} ({item['name']})"
    if "tta" in item and "members" in item:
        raise RegistryError(f"{where}: an ensemble cannot have tta; list a TTA entry among its members instead.")
    members = item.get("members")
    if members is not None:
        if item.get("source") or not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise RegistryError(f"{where}: an ensemble has a list of member names and no source.")
        temperature = item.get("temperature")
        low, high = TEMPERATURE_RANGE
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not low <= temperature <= high):
            raise RegistryError(f"{where}: temperature must be a number from {low:g} to {high:g}, not {temperature!r}.")
        return RegistryEntry(name=item["name"], display_name=item.get("display_name") or item["name"], source="",
                             description=item.get("description", ""), members=tuple(members),
                             temperature=None if temperature is None else float(temperature))
    if "temperature" in item:
        raise RegistryError(f"{where}: only an ensemble has a temperature in the registry; a network's is in its "
                            "folder's skin_demo.json (`python -m skin_demo calibrate`).")
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
    if not isinstance(sha256, dict):
        raise RegistryError(f"{where}: sha256 must map file names to digests.")
    bad = [name for name, digest in sha256.items() if not SHA256.fullmatch(str(digest).lower())]
    if bad:
        raise RegistryError(f"{where}: sha256 of {', '.join(bad)} is not a 64-character hex digest.")
    return RegistryEntry(name=item["name"], display_name=item.get("display_name") or item["name"],
                         source=item["source"], revision=revision, description=item.get("description", ""),
                         sha256={name: digest.lower() for name, digest in sha256.items()}, tta=item.get("tta", False))
