"""Sharing polyhead models on the Hugging Face Hub: push in one commit, pull by repo id.

* :func:`push_to_hub` uploads a model dir (weights, config, processor, metrics,
  training config, ONNX file and report when exported, and a freshly rendered card)
  in one commit.
* :func:`hub_model_dir` is the pull behind ``polyhead.AutoModel.from_pretrained(repo_id)``
  and ``polyhead.pipeline(..., model=repo_id)``: it fetches ``config.json`` first,
  refuses a repo that is not a polyhead model before any weights are downloaded,
  then returns the local snapshot (downloaded, or from the cache when offline).

The endpoint is huggingface_hub's (``HF_ENDPOINT``), so a mirror works the same
way. Tokens only ever go to huggingface_hub; polyhead never prints or writes one.

Example:
    >>> import polyhead
    >>> polyhead.push_to_hub("runs/forecast/best", "my-org/co2-forecaster")
    >>> model = polyhead.AutoModel.from_pretrained("my-org/co2-forecaster")
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .cards import DEFAULT_LICENSE, render_card, write_card
from .errors import ConfigError, HubError, ModelLoadError
from .model_dir import CARD_NAME, check_model_dir, parse_polyhead_config, task_of

__all__ = [
    "CARD_NAME",
    "DEFAULT_LICENSE",
    "HUB_KWARGS",
    "PULL_PATTERNS",
    "PUSH_PATTERNS",
    "hub_model_dir",
    "push_to_hub",
    "render_card",
    "write_card",
]

#: The files of a model dir that a push uploads (data only: never a Python file); a multi-task
#: folder's per-task processors are under ``processors/<task>/``.
PUSH_PATTERNS = ("*.safetensors", "*.json", "*.onnx", CARD_NAME, "processors/*/*.json")
#: The files a pull downloads (``*.onnx`` too for the ONNX backend). Never Python files.
PULL_PATTERNS = ("*.safetensors", "*.json", CARD_NAME, "processors/*/*.json")
#: ``from_pretrained`` keyword arguments that say where and how to fetch a Hub repo.
HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


# --------------------------------------------------------------------------- push


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _push_error(err: Exception, *, repo_id: str, stage: str, token_found: bool, secrets: tuple) -> HubError:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    endpoint = _endpoint()
    status = err.response.status_code if isinstance(err, HfHubHTTPError) and err.response is not None else None
    detail = _scrub(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__, *secrets)
    if isinstance(err, OfflineModeIsEnabled):
        message = f"Cannot push {repo_id}: HF_HUB_OFFLINE is set, and pushing needs {endpoint}. Unset HF_HUB_OFFLINE and push again."
    elif status == 401 and not token_found:
        message = (
            f"{endpoint} refused to let an anonymous user push to {repo_id} (401 while {stage}): pushing needs a "
            "Hugging Face token with write access, and none was found. Log in with `hf auth login`, set HF_TOKEN, "
            "or pass token=... (`polyhead push ... --token-env VAR`)."
        )
    elif status == 401:
        message = f"{endpoint} refused the token while {stage} (401): it is invalid or expired. Create a new one with write access and push again."
    elif status == 403:
        message = f"The token has no write access to {repo_id} on {endpoint} (403 while {stage}); use a token with write permission for that namespace."
    elif status is not None and status < 500:
        message = f"{endpoint} refused the push to {repo_id} while {stage} ({status}): {detail}"
    else:
        what = f"answered {status}" if status is not None else f"could not be reached or dropped the connection ({detail})"
        message = (
            f"The push of {repo_id} failed: {endpoint} {what} while {stage}. The commit was not confirmed, so "
            "treat it as not made: check the repo and push again (pushing the same dir twice is safe)."
        )
    return HubError(message)


def _push_files(path: Path) -> list[Path]:
    """The files a push uploads. A link among them (to anywhere), or a file that resolves outside
    ``path``, is a :class:`ModelLoadError`: a push sends the folder's own files, never what a link
    points to (a link to a secrets file would upload the secrets)."""
    root = path.resolve()
    entries = sorted({f for pattern in PUSH_PATTERNS for f in path.glob(pattern) if not f.name.startswith(".")})
    for entry in entries:
        if entry.is_symlink() or (entry.exists() and not entry.resolve().is_relative_to(root)):
            target = os.readlink(entry) if entry.is_symlink() else entry.resolve()
            raise ModelLoadError(
                f"{entry} is a link to {target}; polyhead push uploads only the model folder's own files, never what a "
                "link points to. Replace the link by a copy of the file (or remove it) and push again; nothing was sent."
            )
    return [entry for entry in entries if entry.is_file()]


def _open_own_file(file: Path):
    """Open a file to upload without following a link, even one swapped in after :func:`_push_files` checked it."""
    import stat

    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        raise ModelLoadError(f"Cannot read {file} to push it ({err.strerror}); it must be a regular file of the model folder, not a link.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ModelLoadError(f"{file} is not a regular file; polyhead push uploads only the model folder's own files.")
    return os.fdopen(fd, "rb")


def push_to_hub(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    license: str | None = None,
) -> str:
    """Push a polyhead model dir to the Hub in one commit.

    The card is rendered again (``README.md`` in the dir is replaced) so it matches the files pushed;
    then the repo is created if needed and the weights, config, processor, ``metrics.json``,
    ``training_config.py``, ``model.onnx`` + ``onnx_report.json`` (when exported) and ``README.md``
    go up in a single commit.

    Args:
        model_dir: a local polyhead model dir, e.g. ``runs/forecast/best``.
        repo_id: ``"org/name"`` (or ``"name"`` in your own namespace).
        private: create the repo private (an existing repo keeps its visibility).
        revision: branch to commit to (default ``main``); created from ``main`` if missing.
        token: a token with write access; default: ``HF_TOKEN``, then the one saved by ``hf auth login``.
        commit_message: default ``"Upload polyhead <task> model"``.
        license: the card's license (see :func:`render_card`).

    Returns:
        The commit's URL (a ``huggingface_hub.CommitInfo``, whose ``.oid`` is the commit hash).

    Raises:
        ModelLoadError: ``model_dir`` is not a polyhead model dir, or a file to push is a link
            (to anywhere: a push sends the folder's own files, never a link's target); nothing is sent.
        ConfigError: ``repo_id`` is not a valid repo id (nothing is sent).
        HubError: no token where one is needed, a refused token, or a network or server failure;
            a push that fails is never reported as done.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HFValidationError, HTTPError, OfflineModeIsEnabled
    from huggingface_hub.utils import get_token, validate_repo_id

    path = Path(model_dir)
    _push_files(path)  # links first: before anything is read through them or the card is written
    config_dict = check_model_dir(path)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"{repo_id!r} is not a valid Hub repo id ('org/name'): {err}") from None
    write_card(path, repo_id=repo_id, license=license)
    found = token or get_token()
    api = HfApi(token=token)
    stage = "creating the repo"
    with contextlib.ExitStack() as opened:
        operations = [CommitOperationAdd(path_in_repo=f.relative_to(path).as_posix(), path_or_fileobj=opened.enter_context(_open_own_file(f)))
                      for f in _push_files(path)]
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision not in (None, "main"):
                stage = f"creating branch {revision!r}"
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            stage = "committing the files"
            return api.create_commit(
                repo_id,
                operations,
                commit_message=commit_message or f"Upload polyhead {task_of(config_dict)} model",
                revision=revision,
            )
        except (HTTPError, OfflineModeIsEnabled, ValueError) as err:
            raise _push_error(err, repo_id=repo_id, stage=stage, token_found=bool(found), secrets=(token, found)) from None


# --------------------------------------------------------------------------- pull


def _missing(repo_id: str, revision: str | None, token: str | None) -> ModelLoadError:
    """Tell a missing repo from a missing revision or file (some servers answer 'repo not found' for all three)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HTTPError

    endpoint = _endpoint()
    try:
        refs = HfApi(endpoint=endpoint).list_repo_refs(repo_id, token=token)
    except (HTTPError, OSError):
        return ModelLoadError(
            f"{repo_id!r} is not a local model dir, and no Hub repo {repo_id} was found on {endpoint}. Check the id "
            "('org/name'); if the repo is private or gated, log in (`hf auth login`) or pass token=..."
        )
    rev = revision or "main"
    branches, tags = [b.name for b in refs.branches], [t.name for t in refs.tags]
    if rev in branches or rev in tags:
        return ModelLoadError(f"Hub repo {repo_id} has no config.json at revision {rev!r}: it is not a transformers model, so not a polyhead model.")
    known = f"branches: {', '.join(branches) or 'none'}; tags: {', '.join(tags) or 'none'}"
    if re.fullmatch(r"[0-9a-f]{7,40}", rev):
        return ModelLoadError(f"Commit {rev} was not found in Hub repo {repo_id}, or it has no config.json there ({known}).")
    return ModelLoadError(f"Revision {rev!r} does not exist in Hub repo {repo_id} ({known}).")


def _pull_error(err: Exception, repo_id: str, revision: str | None, token: str | None, offline: bool) -> ModelLoadError:
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = _endpoint()
    at = f" (revision {revision!r})" if revision else ""
    if isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and (offline or constants.HF_HUB_OFFLINE):
        return ModelLoadError(
            f"{repo_id!r} is not a local model dir, and Hub repo {repo_id}{at} is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); offline mode (HF_HUB_OFFLINE=1 or local_files_only) forbids downloading it. "
            "Load it once online, or unset HF_HUB_OFFLINE."
        )
    if isinstance(err, GatedRepoError):
        return ModelLoadError(f"Hub repo {repo_id} is gated: accept its conditions on {endpoint} and log in (`hf auth login`) or pass token=...")
    if isinstance(err, (RepositoryNotFoundError, RevisionNotFoundError)):
        return _missing(repo_id, revision, token)
    if isinstance(err, RemoteEntryNotFoundError):
        return ModelLoadError(f"Hub repo {repo_id}{at} has no config.json: it is not a transformers model, so not a polyhead model.")
    if isinstance(err, HfHubHTTPError) and err.response is not None and err.response.status_code == 401:
        return ModelLoadError(f"{endpoint} refused the token while fetching {repo_id} (401): it is invalid or expired.")
    cause = err.__cause__ or err
    detail = _scrub(str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__, token)
    return ModelLoadError(f"Could not fetch Hub repo {repo_id}{at} from {endpoint}, and it is not in the local cache: {detail}")


def hub_model_dir(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    include_onnx: bool = False,
) -> Path:
    """The local snapshot of a polyhead model repo, fetched from the Hub or found in the cache.

    ``config.json`` comes first and must be a polyhead config, so a repo of another library costs
    one small download. Works offline (``HF_HUB_OFFLINE=1``) once the repo is in the cache.

    Args:
        repo_id: ``"org/name"``.
        revision: branch, tag or commit (default ``main``).
        token / cache_dir / local_files_only / force_download: as in ``huggingface_hub.snapshot_download``.
        include_onnx: also fetch ``*.onnx`` (for ``backend="onnx"``).

    Raises:
        ModelLoadError: the repo, revision or config.json does not exist, the repo is not a polyhead
            model, or it cannot be fetched and is not cached; the message says which.
    """
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HFValidationError, HTTPError, OfflineModeIsEnabled

    fetch = {"token": token, "cache_dir": cache_dir, "local_files_only": local_files_only, "force_download": force_download}
    try:
        config_file = Path(hf_hub_download(repo_id, "config.json", revision=revision, **fetch))
    except HFValidationError as err:
        raise ModelLoadError(f"{repo_id!r} is neither a local model dir nor a valid Hub repo id ('org/name'): {err}") from None
    except (HTTPError, OSError, OfflineModeIsEnabled) as err:
        raise _pull_error(err, repo_id, revision, token, local_files_only) from None
    parse_polyhead_config(config_file, where=f"Hub repo {repo_id}", hint="; load it with transformers instead")
    # The snapshot of the very commit whose config was checked, even if the branch moves meanwhile.
    commit = config_file.parent.name if re.fullmatch(r"[0-9a-f]{40}", config_file.parent.name) else revision
    patterns = [*PULL_PATTERNS, *(["*.onnx"] if include_onnx else [])]
    try:
        return Path(snapshot_download(repo_id, revision=commit, allow_patterns=patterns, **fetch))
    except (HTTPError, OSError, OfflineModeIsEnabled) as err:
        raise _pull_error(err, repo_id, revision, token, local_files_only) from None
