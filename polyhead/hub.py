"""Sharing polyhead models on the Hugging Face Hub: model cards, push in one commit, pull by repo id.

* :func:`render_card` / :func:`write_card` build a model dir's ``README.md`` from
  ``model_cards/<task>.md`` (which extends ``model_cards/base.md``) with
  ``huggingface_hub.ModelCard.from_template``. Its YAML header carries
  ``library_name: polyhead``, the pipeline tag, tags, datasets, license and a
  ``model-index`` whose results are read from the run's ``metrics.json``; the body
  reads the same file, ``config.json``, the weights and ``onnx_report.json``. A card
  holds no hand-typed number.
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

import ast
import json
import os
import re
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from . import registry
from .errors import ConfigError, HubError, ModelLoadError
from .export import INT8_NAME, ONNX_NAME, REPORT_NAME
from .loading import check_model_dir, parse_polyhead_config, task_of
from .workflows import METRICS_NAME, TRAINING_CONFIG_NAME

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

CARD_NAME = "README.md"
#: The top-level files of a model dir that a push uploads.
PUSH_PATTERNS = ("*.safetensors", "*.json", "*.onnx", TRAINING_CONFIG_NAME, CARD_NAME)
#: The files a pull downloads (``*.onnx`` too for the ONNX backend). Never Python files.
PULL_PATTERNS = ("*.safetensors", "*.json", CARD_NAME)
#: The card's license unless the config's ``hub.license`` or the caller says otherwise (polyhead's own).
DEFAULT_LICENSE = "apache-2.0"
#: ``from_pretrained`` keyword arguments that say where and how to fetch a Hub repo.
HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


# --------------------------------------------------------------------------- cards


def _fmt(value: Any) -> str:
    """A measured value as table text: ``0.5505``, ``197,598``."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _settings(section: Mapping[str, Any]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in section.items() if k != "type")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path} is not valid JSON: {err}") from None


def _literal(node: ast.AST) -> Any:
    """A value of an mmengine-dumped config: literals and ``dict(key=...)`` calls, nothing executed."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values) if k is not None}
    return ast.literal_eval(node)


def _config_sections(path: Path) -> dict[str, Any]:
    """The top-level ``name = value`` sections of ``training_config.py``, read without running it."""
    if not path.is_file():
        return {}
    try:
        tree = ast.parse(path.read_text())
    except SyntaxError:
        return {}
    sections: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                sections[stmt.targets[0].id] = _literal(stmt.value)
            except (ValueError, TypeError, SyntaxError):
                continue
    return sections


def _dataset_id(source: Any) -> str | None:
    """``"co2_weekly"`` -> itself; ``"/data/sales.csv"`` -> ``"sales"`` (no local paths in the header)."""
    if not isinstance(source, str) or not source:
        return None
    return Path(source).stem if ("/" in source or "\\" in source or Path(source).suffix) else source


def _parts(model_dir: Path, config_dict: Mapping[str, Any], task: Any) -> tuple[list[dict[str, str]], int]:
    """Parameters of each top-level part, counted on the model built (without memory) from config.json."""
    import torch

    config = task.config_class.from_pretrained(str(model_dir))
    try:
        with torch.device("meta"):
            model = task.model_class(config)
    except (RuntimeError, NotImplementedError):  # a constructor that needs real tensors
        model = task.model_class(config)
    rows = []
    for name, child in model.named_children():
        section = config_dict.get(name)
        is_part = name in ("backbone", "head") and isinstance(section, Mapping)
        rows.append({
            "name": name,
            "type": f"`{section['type']}`" if is_part else type(child).__name__.lstrip("_"),
            "settings": _settings(section) if is_part else "",
            "parameters": _fmt(sum(p.numel() for p in child.parameters())),
        })
    return rows, sum(p.numel() for p in model.parameters())


def _onnx_context(model_dir: Path) -> dict[str, Any] | None:
    report = _read_json(model_dir / REPORT_NAME) if (model_dir / ONNX_NAME).is_file() else None
    if not isinstance(report, dict):
        return None
    tolerance = report.get("tolerance", {})
    parity = []
    for row in report.get("parity", []):
        shapes = ", ".join(f"{name} {tuple(shape)}" for name, shape in row.get("shapes", {}).items())
        for output, diff in row.get("outputs", {}).items():
            parity.append([shapes, f"`{output}`", f"{diff['max_abs_diff']:.3g}", f"{diff['max_rel_diff']:.3g}",
                           "yes" if diff["within_tolerance"] else "**no**"])
    int8 = ""
    if (model_dir / INT8_NAME).is_file() and isinstance(report.get("int8"), dict):
        change = report["int8"].get("test_metrics", {}).get("relative_change", {})
        int8 = f"`{INT8_NAME}` (dynamic int8) is included too" + (
            "; its test metrics vs fp32: " + ", ".join(f"{k} {v:+.2%}" for k, v in change.items()) + "." if change else ".")
    return {
        "opset": report.get("opset"),
        "megabytes": f"{report.get('file_bytes', (model_dir / ONNX_NAME).stat().st_size) / 1e6:.2f}",
        "dynamic_axes": ", ".join(f"`{name}[{axis}]={size}`" for name, axes in report.get("dynamic_axes", {}).items()
                                  for axis, size in axes.items()) or "none",
        "rule": tolerance.get("rule", "|onnx - torch| <= atol + rtol * |torch|"),
        "atol": tolerance.get("atol"),
        "rtol": tolerance.get("rtol"),
        "parity": parity,
        "latency": [{"batch": name.replace("_", " "), **values} for name, values in report.get("latency", {}).items()],
        "threads": report.get("threads"),
        "int8": int8,
    }


def _metrics_context(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    if not metrics:
        return {"metric_rows": [], "baseline_names": [], "data_items": [], "split_rows": [], "split_columns": []}
    test = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    baselines = metrics.get("baselines") or {}
    names = list(baselines)
    rows = [[f"`{metric}`", _fmt(value), *(_fmt(baselines[n][metric]) if metric in baselines[n] else "-" for n in names)]
            for metric, value in test.items()]
    data = dict(metrics.get("data") or {})
    splits = data.pop("splits", None) or {}
    columns = list(dict.fromkeys(key for split in splits.values() for key in split))
    validation = metrics.get("validation") or {}
    best_name, best_value = next(iter(validation.items()), ("", None))
    return {
        "metric_rows": rows,
        "baseline_names": names,
        "data_items": [(key, _fmt(value)) for key, value in data.items()],
        "split_columns": columns,
        "split_rows": [[name, *(_fmt(split.get(c, "-")) for c in columns)] for name, split in splits.items()],
        "best_metric_name": f"{best_name.removeprefix('best_')}, {_fmt(best_value)}" if best_name else "metric",
        "best_step": metrics.get("best_step"),
        "global_step": metrics.get("global_step"),
        "stopped_early": metrics.get("stopped_early"),
    }


def render_card(
    model_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    model_id: str | None = None,
    license: str | None = None,
):
    """Render the model card of a polyhead model dir.

    Args:
        model_dir: a local polyhead model dir (``config.json`` + ``model.safetensors``; ``metrics.json``,
            ``training_config.py`` and ``onnx_report.json`` are read when present).
        repo_id: the Hub repo the card is for; names the model and its usage snippets.
        model_id: what the usage snippets load when there is no ``repo_id`` (default: the dir's path).
        license: the card's license (default: the config's ``hub.license``, else ``apache-2.0``).

    Returns:
        A ``huggingface_hub.ModelCard``; ``str(card)`` is the ``README.md`` text.

    Raises:
        ModelLoadError: the dir is not a readable polyhead model dir.
    """
    import jinja2
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    import polyhead

    path = Path(model_dir)
    config_dict = check_model_dir(path)
    task = registry.get(registry.TASKS, task_of(config_dict))
    metrics = _read_json(path / METRICS_NAME)
    metrics = metrics if isinstance(metrics, dict) else None
    sections = _config_sections(path / TRAINING_CONFIG_NAME)
    hub = sections.get("hub") if isinstance(sections.get("hub"), dict) else {}
    data_section = sections.get("data") if isinstance(sections.get("data"), dict) else {}
    train_section = sections.get("train") if isinstance(sections.get("train"), dict) else {}
    backbone = config_dict.get("backbone") or {}
    head = config_dict.get("head") or {}

    source = ((metrics or {}).get("data") or {}).get("source", data_section.get("source"))
    dataset = _dataset_id(source)
    model_name = repo_id.split("/")[-1] if repo_id else "-".join(filter(None, [config_dict["model_type"], dataset]))
    eval_results = [
        EvalResult(
            task_type=task.pipeline_task,
            task_name=task.pipeline_task.replace("-", " ").capitalize(),
            dataset_type=dataset or "unknown",
            dataset_name=dataset or "unknown",
            dataset_split="test",
            metric_type=name,
            metric_value=value,
        )
        for name, value in ((metrics or {}).get("test") or {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    tags = [task.name, task.domain, backbone.get("type"), head.get("type"), *(hub.get("tags") or [])]
    card_data = ModelCardData(
        library_name="polyhead",
        pipeline_tag=task.pipeline_task,
        tags=list(dict.fromkeys(t for t in tags if t)),
        datasets=[dataset] if dataset else None,
        license=license or hub.get("license") or DEFAULT_LICENSE,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    parts, total = _parts(path, config_dict, task)
    training_config = path / TRAINING_CONFIG_NAME
    context = {
        "polyhead_version": polyhead.__version__,
        "task": task.name,
        "pipeline_tag": task.pipeline_task,
        "model_name": model_name,
        "model_id": repo_id or model_id or str(path),
        "model_type": config_dict["model_type"],
        "architecture": ", ".join(config_dict.get("architectures") or [task.model_class.__name__]),
        "config": config_dict,
        "backbone": backbone,
        "head": head,
        "parts": parts,
        "total_parameters": _fmt(total),
        "onnx": _onnx_context(path),
        "training_config": training_config.read_text().strip() if training_config.is_file() else "",
        "seed": train_section.get("seed", "the config's"),
        "data_source": source,
        **_metrics_context(metrics),
    }
    templates = resources.files("polyhead.model_cards")
    template = templates / f"{task.name}.md"
    if not template.is_file():  # a task without its own template gets the common one
        template = templates / "base.md"
    base = jinja2.Template((templates / "base.md").read_text(encoding="utf-8"))
    card = ModelCard.from_template(card_data, template_path=str(template), base=base, template_name=template.name, **context)
    return ModelCard(re.sub(r"\n{3,}", "\n\n", str(card)).rstrip() + "\n")


def write_card(model_dir: str | os.PathLike, **kwargs: Any) -> Path:
    """Render the card (see :func:`render_card`) and write it to ``<model_dir>/README.md`` atomically."""
    path = Path(model_dir)
    text = str(render_card(path, **kwargs))
    fd, tmp = tempfile.mkstemp(prefix=f".{CARD_NAME}.", dir=path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path / CARD_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path / CARD_NAME


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
    files = {f for pattern in PUSH_PATTERNS for f in path.glob(pattern) if f.is_file() and not f.name.startswith(".")}
    return sorted(files)


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
        ModelLoadError: ``model_dir`` is not a polyhead model dir (nothing is sent).
        ConfigError: ``repo_id`` is not a valid repo id (nothing is sent).
        HubError: no token where one is needed, a refused token, or a network or server failure;
            a push that fails is never reported as done.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HFValidationError, HTTPError, OfflineModeIsEnabled
    from huggingface_hub.utils import get_token, validate_repo_id

    path = Path(model_dir)
    config_dict = check_model_dir(path)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"{repo_id!r} is not a valid Hub repo id ('org/name'): {err}") from None
    write_card(path, repo_id=repo_id, license=license)
    operations = [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f)) for f in _push_files(path)]
    found = token or get_token()
    api = HfApi(token=token)
    stage = "creating the repo"
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
