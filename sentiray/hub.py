"""Publish a verified artifact to the Hugging Face Hub: `sentiray push` and `sentiray train --push-to-hub`.

The whole artifact folder goes up as one commit (weights, tokenizer, `sentiray.json`, the model card
`README.md` and its plots), so what the Hub holds is exactly what `fetch_artifact` verified. Nothing is
written locally: a failed push leaves the artifact as it was.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sentiray.artifact import fetch_artifact
from sentiray.errors import ConfigError, SentirayError

log = logging.getLogger("sentiray.hub")

MODEL_CARD = "README.md"
DEFAULT_ENDPOINT = "https://huggingface.co"
# The Hub's own rule (huggingface_hub.utils.validate_repo_id), spelled out so the message can name it.
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_TRUE = {"1", "on", "yes", "true"}
# huggingface_hub has moved between HTTP libraries (requests, httpx, httpx2); any of theirs may surface.
_HTTP_STACKS = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


class HubError(SentirayError):
    """Publishing to the Hub failed (offline, unreachable, no token, refused); the local artifact is kept."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    repo_url: str
    commit_url: str
    files: int


def validate_repo_id(repo_id: str) -> str:
    """`namespace/name`, as the Hub requires; raises ConfigError naming the rule."""
    if not _REPO_ID.match(repo_id or "") or ".." in repo_id or "--" in repo_id:
        raise ConfigError(
            f"push_to_hub: {repo_id!r} is not a Hub repository id; expected NAMESPACE/NAME "
            "(letters, digits, '.', '_', '-'; no '..' or '--'), e.g. my-org/sentiray-imdb"
        )
    return repo_id


def hub_endpoint() -> str:
    """The Hub the push goes to: HF_ENDPOINT (a mirror or a private Hub) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _token() -> str:
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:  # a token saved by `hf auth login` works as well
        from huggingface_hub import get_token

        saved = get_token()
    except Exception:  # noqa: BLE001 - a broken token store is the same as none
        saved = None
    if not saved:
        raise HubError("no Hub token: set HF_TOKEN to a token with write access to the repository")
    return saved


def push_artifact(
    location: str,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Verify the artifact at location (path or URI), then upload the whole folder to repo_id.

    The repository is created if missing (private if asked). Raises HubError when offline, when the Hub
    cannot be reached or refuses the upload, and ArtifactError when the artifact does not verify.
    """
    validate_repo_id(repo_id)
    local_dir, manifest = fetch_artifact(location)
    endpoint = hub_endpoint()
    if _offline():
        raise HubError(
            f"cannot push to {endpoint}/{repo_id}: HF_HUB_OFFLINE is set; {_kept(location, repo_id)}"
        )
    try:
        token = _token()
    except HubError as e:
        raise HubError(f"{e}; {_kept(location, repo_id)}") from None
    if not (Path(local_dir) / MODEL_CARD).is_file():
        log.warning("%s has no %s: the Hub page will show no model card", location, MODEL_CARD)
    files = len(manifest.files) + 1  # the manifest itself

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(endpoint=endpoint, token=token)
    message = commit_message or _default_message(manifest.base_model, manifest.test_metrics)
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(local_dir),
            repo_type="model",
            revision=revision,
            commit_message=message,
        )
    except OfflineModeIsEnabled as e:
        raise HubError(
            f"cannot push to {endpoint}/{repo_id}: offline mode ({e}); {_kept(location, repo_id)}"
        ) from e
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        hint = {
            401: "; the token in HF_TOKEN is not valid",
            403: "; the token has no write access to this repository or namespace",
        }.get(status if isinstance(status, int) else 0, "")
        # The Hub's own message is quoted (a server may echo the Authorization header in it: never the
        # token), and not chained, so no traceback can show it unredacted.
        raise HubError(
            f"the Hub at {endpoint} refused the push to {repo_id} (HTTP {status}{hint}): "
            f"{_first_line(_redact(str(e), token))}; {_kept(location, repo_id)}"
        ) from None
    except ValueError as e:  # e.g. model card metadata the Hub's validator rejects
        raise HubError(
            f"the Hub refused the push to {repo_id}: {_first_line(_redact(str(e), token))}; "
            f"{_kept(location, repo_id)}"
        ) from None
    except Exception as e:
        if not _is_transport_error(e):
            raise
        raise HubError(
            f"cannot reach the Hub at {endpoint} ({type(e).__name__}: {_first_line(_redact(str(e), token))}); "
            f"nothing was pushed to {repo_id}; {_kept(location, repo_id)}"
        ) from e
    commit_url = getattr(commit, "commit_url", str(commit))
    log.info("pushed %d files of %s to %s (%s)", files, location, repo_url, commit_url)
    return PushResult(repo_id=repo_id, repo_url=str(repo_url), commit_url=commit_url, files=files)


def _is_transport_error(e: BaseException) -> bool:
    """A connection, DNS, TLS or timeout error, from whichever HTTP stack huggingface_hub uses."""
    if isinstance(e, OSError):
        return True
    return any(c.__module__.split(".")[0] in _HTTP_STACKS for c in type(e).__mro__)


def _kept(location: str, repo_id: str) -> str:
    return f"the artifact at {location} is unchanged; retry with `sentiray push {location} {repo_id}`"


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no detail"


def _default_message(base_model: str, test_metrics: dict[str, object] | None) -> str:
    accuracy = (test_metrics or {}).get("accuracy")
    tail = f", test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
    return f"sentiray artifact (base {base_model}{tail})"


__all__ = ["HubError", "PushResult", "hub_endpoint", "push_artifact", "validate_repo_id"]
