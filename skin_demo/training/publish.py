"""Publishing a model folder to the Hugging Face Hub, for a registry entry to pin."""

from __future__ import annotations

from httpx2 import HTTPError
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from ..model_folder import check_safe_folder
from ..serving.catalog import REPO_ID
from ..serving.hub import HUB_PATTERNS


class HubError(RuntimeError):
    """Talking to the Hub failed (auth, network, server); the message says what to check."""


def push(folder, repo_id: str, token: str | None = None, revision: str | None = None,
         private: bool = False) -> str:
    """Publish a model folder to the Hub (creating the repo if needed); returns the commit sha to pin."""
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
