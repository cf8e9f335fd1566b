"""Pinned Hugging Face Hub repos: download a registry entry's snapshot into the normal HF cache.

Hub entries are pinned to a commit sha, so a later push to the repo never changes what a deployed app
runs, and the normal HF cache lets later (and offline) starts load without the network. Downloads give
up after $SKIN_DEMO_HUB_TIMEOUT seconds (default 120) and then use a complete cached copy if any.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from functools import partial
from pathlib import Path

from httpx2 import TransportError
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                    RevisionNotFoundError)

from ..model_folder import REQUIRED_FILES, ModelFolderError
from .catalog import RegistryEntry

FETCH_TIMEOUT_ENV = "SKIN_DEMO_HUB_TIMEOUT"
DEFAULT_FETCH_TIMEOUT = 120.0
HUB_PATTERNS = [*REQUIRED_FILES, "README.md", "*.png", "*.npz"]  # npz: the OOD detector, stored predictions


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
