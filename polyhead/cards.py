"""Model cards of polyhead model folders, rendered from what the run measured.

:func:`render_card` / :func:`write_card` build a model dir's ``README.md`` from
``model_cards/<task>.md`` (which extends ``model_cards/base.md``) with
``huggingface_hub.ModelCard.from_template``. Its YAML header carries
``library_name: polyhead``, the pipeline tag, tags, datasets, license and a
``model-index`` whose results are read from the run's ``metrics.json``; the body
reads the same file, ``config.json``, ``training_config.json``, the weights and
``onnx_report.json``. A card holds no hand-typed number, and nothing in the folder is executed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from . import registry
from .errors import ModelLoadError
from .model_dir import (
    MULTITASK_MODEL_TYPE,
    CARD_NAME,
    INT8_NAME,
    METRICS_NAME,
    ONNX_NAME,
    REPORT_NAME,
    atomic_write_text,
    check_model_dir,
    read_training_config,
    task_of,
    write_folder,
)

__all__ = ["DEFAULT_LICENSE", "render_card", "write_card"]

#: The card's license unless the config's ``hub.license`` or the caller says otherwise (polyhead's own).
DEFAULT_LICENSE = "apache-2.0"


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


def _dataset_id(source: Any) -> str | None:
    """``"co2_weekly"`` -> itself; ``"/data/sales.csv"`` -> ``"sales"`` (no local paths in the header)."""
    if not isinstance(source, str) or not source:
        return None
    return Path(source).stem if ("/" in source or "\\" in source or Path(source).suffix) else source


def _parts(model_dir: Path, config_dict: Mapping[str, Any], task: Any) -> tuple[list[dict[str, str]], int]:
    """Parameters of the backbone and of each part of the adapter, counted on the model built (without memory) from config.json."""
    import torch

    model_class = task.model_class_for(config_dict["model_type"])
    config = model_class.config_class.from_pretrained(str(model_dir))
    try:
        with torch.device("meta"):
            model = model_class(config)
    except (RuntimeError, NotImplementedError):  # a constructor that needs real tensors
        model = model_class(config)
    parts = model.named_parts()
    rows = []
    for name, child in parts:
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


def _init_context(init: Any) -> dict[str, Any] | None:
    """What a fine-tuned run started from (``metrics.json``'s ``init``)."""
    if not isinstance(init, Mapping) or not init.get("source"):
        return None
    sized = lambda key: len(init[key]) if isinstance(init.get(key), list) else None  # noqa: E731
    return {"source": init["source"], "modules": list(init.get("modules") or []), "loaded": init.get("loaded"),
            "new": sized("new"), "mismatched": sized("mismatched")}


def _pretrained_context(report: Any) -> dict[str, Any] | None:
    """Where the backbone's weights came from (``metrics.json``'s ``pretrained``: timm, torchvision, MONAI, ...)."""
    if not isinstance(report, Mapping) or not report.get("source"):
        return None
    sized = lambda key: len(report[key]) if isinstance(report.get(key), list) else None  # noqa: E731
    return {"source": report["source"], "description": report.get("description") or report.get("family"), "licence": report.get("licence"),
            "loaded": report.get("loaded"), "new": sized("new"), "ignored": sized("ignored"), "adapted": sized("adapted")}


def _metrics_context(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    if not metrics:
        return {"metric_rows": [], "baseline_names": [], "data_items": [], "split_rows": [], "split_columns": [], "init": None, "pretrained": None}
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
        "init": _init_context(metrics.get("init")),
        "pretrained": _pretrained_context(metrics.get("pretrained")),
        "stopped_early": metrics.get("stopped_early"),
    }


def _members(config_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The tasks of a multi-task model by their names (``{}`` for a single-task model)."""
    tasks = config_dict.get("tasks") if config_dict.get("model_type") == MULTITASK_MODEL_TYPE else None
    return {name: registry.task_for(spec["model_type"]) for name, spec in (tasks or {}).items()}


def _task_tables(metrics: Mapping[str, Any] | None, members: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One results table per task of a multi-task model: its metrics beside its own baselines."""
    test = (metrics or {}).get("test") or {}
    baselines = (metrics or {}).get("baselines") or {}
    tables = []
    for member, task in members.items():
        prefix = f"{member}/"
        names = [b for b, values in baselines.items() if any(k.startswith(prefix) for k in values)]
        rows = [[f"`{k.removeprefix(prefix)}`", _fmt(v), *(_fmt(baselines[b].get(k, "-")) for b in names)]
                for k, v in test.items() if k.startswith(prefix) and isinstance(v, (int, float))]
        tables.append({"name": member, "task": task.name, "pipeline": task.pipeline_task, "baseline_names": names, "rows": rows})
    return tables


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
            ``training_config.json`` and ``onnx_report.json`` are read when present, as data).
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
    sections = read_training_config(path) or {}
    hub = sections.get("hub") if isinstance(sections.get("hub"), dict) else {}
    data_section = sections.get("data") if isinstance(sections.get("data"), dict) else {}
    train_section = sections.get("train") if isinstance(sections.get("train"), dict) else {}
    backbone = config_dict.get("backbone") or {}
    head = config_dict.get("head") or {}

    source = ((metrics or {}).get("data") or {}).get("source", data_section.get("source"))
    dataset = _dataset_id(source)
    model_name = repo_id.split("/")[-1] if repo_id else "-".join(filter(None, [config_dict["model_type"], dataset]))
    members = _members(config_dict)  # a multi-task model: each task's name -> its task (for its results)
    eval_results = []
    for name, value in ((metrics or {}).get("test") or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        member, _, metric = name.rpartition("/")
        kind = members[member].pipeline_task if member in members else task.pipeline_task
        if not kind:
            continue  # an aggregate of several tasks (task_mean_loss) is no result of one task
        eval_results.append(EvalResult(
            task_type=kind, task_name=(f"{member}: " if member else "") + kind.replace("-", " ").capitalize(),
            dataset_type=dataset or "unknown", dataset_name=dataset or "unknown", dataset_split="test", metric_type=name, metric_value=value,
        ))
    tags = [task.name, task.domain, backbone.get("type"), head.get("type"), *(m.name for m in members.values()), *(hub.get("tags") or [])]
    card_data = ModelCardData(
        library_name="polyhead",
        pipeline_tag=task.pipeline_task or None,
        tags=list(dict.fromkeys(t for t in tags if t)),
        datasets=[dataset] if dataset else None,
        license=license or hub.get("license") or DEFAULT_LICENSE,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    parts, total = _parts(path, config_dict, task)
    context = {
        "polyhead_version": polyhead.__version__,
        "task": task.name,
        "pipeline_tag": task.pipeline_task,
        "model_name": model_name,
        "model_id": repo_id or model_id or str(path),
        "model_type": config_dict["model_type"],
        "architecture": ", ".join(config_dict.get("architectures") or [task.model_class_for(config_dict["model_type"]).__name__]),
        "config": config_dict,
        "backbone": backbone,
        "head": head,
        "parts": parts,
        "total_parameters": _fmt(total),
        "onnx": _onnx_context(path),
        "training_config": json.dumps(sections, indent=2) if sections else "",
        "seed": train_section.get("seed", "the config's"),
        "data_source": source,
        **_metrics_context(metrics),
        "task_tables": _task_tables(metrics, members),
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
    with write_folder(path, kind="model", replace=False, what="model folder") as staging:
        atomic_write_text(staging / CARD_NAME, text)
    return path / CARD_NAME
