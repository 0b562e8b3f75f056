"""The folders polyhead writes: their file names, the marker that says polyhead wrote them, safe writes, checks.

Every model folder, run folder and dataset folder polyhead writes carries a marker,
``.polyhead.json``, listing the entries polyhead put there. The writers follow one rule:

* a missing or empty folder is created / filled;
* a folder with a marker of the same kind may be replaced (``save_pretrained`` into a
  model folder) or is replaced only when asked (``overwrite=True``, ``--overwrite``);
  only the entries the marker lists are ever removed, so a file a user added survives;
* any other non-empty folder, or a file where a folder should be, is refused with an
  :class:`~polyhead.errors.OutputError` naming it. Nothing polyhead did not write is deleted.

Writes go into a staging folder *inside* the target (same filesystem, so a mount root
works), and are moved in with ``config.json`` last: an interrupted save never leaves a new
``config.json`` beside old weights. Staging folders a killed process left are removed by
the next write to the same folder.

Model folders written before markers existed (a ``config.json`` with a ``polyhead-*``
``model_type``) count as polyhead's: their known file names are treated as its entries.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from . import registry
from .errors import ModelLoadError, OutputError

__all__ = [
    "BEST_DIR",
    "CARD_NAME",
    "CHECKPOINTS_DIR",
    "CONFIG_NAME",
    "EVAL_RESULTS_NAME",
    "INT8_NAME",
    "LEGACY_TRAINING_CONFIG_NAME",
    "MULTITASK_MODEL_TYPE",
    "LOCK_NAME",
    "LOGS_DIR",
    "MARKER_NAME",
    "METRICS_NAME",
    "ONNX_NAME",
    "REPORT_NAME",
    "TRAINER_STATE_NAME",
    "TRAINING_CONFIG_NAME",
    "WEIGHTS_NAME",
    "FolderKind",
    "atomic_write_text",
    "check_model_dir",
    "folder_kind",
    "mark_folder",
    "onnx_names",
    "check_writable_folder",
    "is_polyhead_folder",
    "looks_local",
    "parse_polyhead_config",
    "read_config_dict",
    "read_marker",
    "read_training_config",
    "remove_unused_run_folder",
    "run_lock",
    "save_model_dir",
    "task_of",
    "write_folder",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.json"
EVAL_RESULTS_NAME = "eval_results.json"
#: the resolved config of the run that wrote a model, as data (never executed)
TRAINING_CONFIG_NAME = "training_config.json"
#: what polyhead < 0.2 wrote instead; refused, never executed
LEGACY_TRAINING_CONFIG_NAME = "training_config.py"
CARD_NAME = "README.md"
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
REPORT_NAME = "onnx_report.json"
MARKER_NAME = ".polyhead.json"
#: a multi-task folder holds one exported graph per task: ``model.<task>.onnx``
MULTITASK_MODEL_TYPE = "polyhead-multitask"
LOCK_NAME = ".polyhead.lock"
BEST_DIR = "best"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
TRAINER_STATE_NAME = "trainer_state.json"
_STAGING_PREFIX = ".polyhead-staging-"

FolderKind = Literal["model", "run", "dataset", "data"]

#: entries of a model folder written before markers existed
_LEGACY_MODEL_PATTERNS = (
    CONFIG_NAME, "*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin", "*_config.json", "vocab.json",
    "special_tokens_map.json", "added_tokens.json", METRICS_NAME, EVAL_RESULTS_NAME, TRAINING_CONFIG_NAME,
    LEGACY_TRAINING_CONFIG_NAME, CARD_NAME, ONNX_NAME, INT8_NAME, REPORT_NAME,
)
#: entries of a run folder (``train.output_dir``)
_RUN_ENTRIES = (BEST_DIR, CHECKPOINTS_DIR, LOGS_DIR, METRICS_NAME, LOCK_NAME)


# --------------------------------------------------------------------------- reading


def looks_local(name_or_path: str | os.PathLike) -> bool:
    """``True`` for things that can only be a local path (Hub ids are ``name`` or ``org/name``)."""
    text = str(name_or_path)
    return Path(text).is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or "\\" in text


def _inside(folder: Path, file: Path) -> bool:
    """Whether ``file`` (following links) stays inside ``folder``.

    A Hugging Face cache snapshot (``<repo>/snapshots/<commit>/``) holds links into the same
    repo's ``blobs/`` folder: those count as inside.
    """
    roots = [folder.resolve()]
    if folder.absolute().parent.name == "snapshots":
        roots.append(folder.absolute().parent.parent.resolve() / "blobs")
    return any(file.resolve().is_relative_to(root) for root in roots)


def read_config_dict(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``config.json`` of a local polyhead model dir."""
    path = Path(model_dir)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist; expected a polyhead model dir (config.json + {WEIGHTS_NAME}) or a Hub repo id 'org/name'.")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a directory; expected a polyhead model dir (config.json + {WEIGHTS_NAME}).")
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise ModelLoadError(f"{path} has no config.json; it is not a saved polyhead model.")
    if not _inside(path, config_file):
        raise ModelLoadError(f"{config_file} is a link to a file outside the model folder; polyhead reads only the folder's own files.")
    return parse_polyhead_config(config_file, where=str(path))


def parse_polyhead_config(config_file: Path, *, where: str, hint: str = "") -> dict[str, Any]:
    """Read ``config.json`` and check it describes a polyhead model (``model_type`` ``polyhead-*``)."""
    try:
        config = json.loads(Path(config_file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"config.json of {where} is not valid JSON: {err}") from None
    model_type = config.get("model_type", "") if isinstance(config, dict) else ""
    if not str(model_type).startswith("polyhead-"):
        raise ModelLoadError(
            f"{where} holds a {model_type or 'non-transformers'!s} model, not a polyhead model "
            f"(config.json model_type should start with 'polyhead-'){hint}."
        )
    return config


def check_model_dir(model_dir: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Check a local model dir: a polyhead config and readable safetensors weights inside the folder.

    Args:
        allow_pickle: accept a ``pytorch_model.bin`` when there is no safetensors file
            (loaded by transformers with ``torch.load(weights_only=True)``).
    """
    from safetensors import SafetensorError, safe_open

    config = read_config_dict(model_dir)
    path = Path(model_dir)
    index = path / "model.safetensors.index.json"
    weights = [path / WEIGHTS_NAME] if (path / WEIGHTS_NAME).is_file() or not index.is_file() else _shards(index)
    if not weights[0].is_file():
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        if allow_pickle and (path / "pytorch_model.bin").is_file():
            return config
        hint = (
            f" It has {pickled}: polyhead does not unpickle weights unless you pass allow_pickle=True "
            "(only for files you trust); better, re-save them as safetensors."
            if pickled else ""
        )
        raise ModelLoadError(f"{path} has no {WEIGHTS_NAME}.{hint}")
    for file in weights:
        if not _inside(path, file):
            raise ModelLoadError(f"{file} is a link to a file outside the model folder; polyhead reads only the folder's own files.")
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_slice(key).get_shape()
        except (SafetensorError, OSError, ValueError) as err:
            raise ModelLoadError(f"{file} is not a readable safetensors file (truncated or corrupted?): {err}") from None
    return config


def _shards(index: Path) -> list[Path]:
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ModelLoadError(f"{index} is not a valid safetensors index: {err}") from None
    if not names or any(Path(n).name != n for n in names):
        raise ModelLoadError(f"{index} must name shard files inside the folder, got {names[:5]}.")
    return [index.parent / n for n in names]


def task_of(config: dict[str, Any]) -> str:
    """The name of the task a ``config.json`` belongs to (``"polyhead-ppo"`` -> ``"rl"``)."""
    return registry.task_name_for(str(config["model_type"]))


def read_training_config(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The resolved config sections (``model``, ``data``, ``train``, ...) of the run that wrote ``model_dir``.

    Read from ``training_config.json`` as data; returns ``None`` when the folder has none.
    A folder with only a ``training_config.py`` (polyhead < 0.2) is refused: that file is
    Python, and nothing from a model folder is ever executed.
    """
    path = Path(model_dir)
    file = path / TRAINING_CONFIG_NAME
    if file.is_file():
        if not _inside(path, file):
            raise ModelLoadError(f"{file} is a link to a file outside the model folder.")
        try:
            sections = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelLoadError(f"{file} is not valid JSON: {err}") from None
        if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
            raise ModelLoadError(f"{file} must be a JSON object of config sections (model, data, train, ...).")
        return sections
    if (path / LEGACY_TRAINING_CONFIG_NAME).is_file():
        raise ModelLoadError(
            f"{path} has only {LEGACY_TRAINING_CONFIG_NAME} (written by polyhead < 0.2). polyhead never executes Python "
            f"from a model folder, so it cannot read that file: pass the data to evaluate on explicitly (--data), or "
            f"re-save the folder with a current polyhead (`polyhead train` writes {TRAINING_CONFIG_NAME})."
        )
    return None


def onnx_names(task: str | None = None) -> tuple[str, str, str]:
    """``(model.onnx, model.int8.onnx, onnx_report.json)``, or the ``model.<task>.onnx``... names of one task of a multi-task folder."""
    if task is None:
        return ONNX_NAME, INT8_NAME, REPORT_NAME
    return f"model.{task}.onnx", f"model.{task}.int8.onnx", f"onnx_report.{task}.json"


# --------------------------------------------------------------------------- markers


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a folder polyhead wrote, or ``None``."""
    file = Path(folder) / MARKER_NAME
    if not file.is_file():
        return None
    try:
        marker = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(marker, dict) or marker.get("written_by") != "polyhead" or not isinstance(marker.get("entries"), list):
        return None
    return marker


def _is_legacy_model(folder: Path) -> bool:
    try:
        parse_polyhead_config(folder / CONFIG_NAME, where=str(folder))
    except (ModelLoadError, OSError):
        return False
    return True


def folder_kind(folder: str | os.PathLike) -> str | None:
    """``"model"``, ``"run"``, ... for a folder polyhead wrote; ``None`` otherwise."""
    path = Path(folder)
    marker = read_marker(path)
    if marker is not None:
        return str(marker.get("kind"))
    return "model" if path.is_dir() and _is_legacy_model(path) else None


def is_polyhead_folder(folder: str | os.PathLike, kind: FolderKind | None = None) -> bool:
    """Whether polyhead wrote ``folder`` (of ``kind``, when given)."""
    found = folder_kind(folder)
    return found is not None and (kind is None or found == kind)


def _owned_entries(folder: Path) -> set[str]:
    """The entries of ``folder`` polyhead wrote (and may remove)."""
    marker = read_marker(folder)
    if marker is not None:
        owned = {str(e) for e in marker["entries"]}
        if marker.get("kind") == "run":
            owned |= set(_RUN_ENTRIES)
        return {e for e in owned if Path(e).name == e} | {MARKER_NAME}
    if _is_legacy_model(folder):
        return {p.name for p in folder.iterdir() if any(fnmatch.fnmatch(p.name, pat) for pat in _LEGACY_MODEL_PATTERNS)}
    return set()


def _user_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(_STAGING_PREFIX))


def check_writable_folder(folder: str | os.PathLike, *, kind: FolderKind, overwrite: bool = False, what: str = "output") -> Path:
    """Raise :class:`OutputError` unless polyhead may write a ``kind`` folder at ``folder``.

    Allowed: a missing or empty folder; a folder polyhead wrote as ``kind`` (models: always,
    the transformers ``save_pretrained`` convention; runs: always, for ``--resume`` and re-runs;
    datasets: with ``overwrite=True``). The parent must be writable.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise OutputError(f"The {what} {path} is a file; expected a folder (polyhead never replaces a file with a folder).")
    if path.is_dir():
        entries = _user_entries(path)
        found = folder_kind(path)
        if entries and found is None:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise OutputError(
                f"The {what} {path} is not empty ({shown}) and was not written by polyhead; polyhead does not write into "
                "or replace folders it did not create. Choose a new or empty folder."
            )
        if entries and found != kind:
            raise OutputError(f"The {what} {path} holds a polyhead {found} folder, not a {kind} folder; choose another folder.")
        if entries and kind in ("dataset", "data") and not overwrite:
            raise OutputError(f"The {what} {path} already holds a polyhead {kind}; pass overwrite=True (--overwrite) to replace it.")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"The {what} {path} is not writable.")
    else:
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"Cannot create the {what} {path}: {parent} is not a writable folder.")
    return path


def _write_marker(folder: Path, kind: str, entries: Iterable[str]) -> None:
    from . import __version__

    marker = {"written_by": "polyhead", "version": __version__, "kind": kind, "entries": sorted(set(entries) - {MARKER_NAME})}
    atomic_write_text(folder / MARKER_NAME, json.dumps(marker, indent=1) + "\n")


def mark_folder(folder: str | os.PathLike, kind: FolderKind, entries: Iterable[str] = ()) -> None:
    """Create ``folder`` if needed (after :func:`check_writable_folder`) and record that polyhead writes it."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    old = read_marker(path)
    previous = set(old["entries"]) if old is not None and old.get("kind") == kind else set()
    _write_marker(path, kind, previous | set(entries))


# --------------------------------------------------------------------------- writing


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it; the file gets the umask's permissions."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:  # mode 0o666 minus the umask (mkstemp would give 0600)
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _clean_staging(folder: Path) -> None:
    for stale in folder.glob(_STAGING_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_permissions(staging: Path) -> None:
    """Files as ``open()`` would create them under the umask (some writers, e.g. safetensors, make 0600 files)."""
    mask = _umask()
    for path in staging.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~mask)
        elif path.is_dir() and not path.is_symlink():
            path.chmod(0o777 & ~mask)


def _commit(staging: Path, target: Path, *, kind: str, replace: bool) -> None:
    _default_permissions(staging)
    new = sorted(p.name for p in staging.iterdir())
    owned = _owned_entries(target)
    clashes = [name for name in new if (target / name).exists() and name not in owned]
    if clashes:
        raise OutputError(f"{target} already has {clashes}, which polyhead did not write; it will not replace them.")
    stale = sorted(owned - set(new) - {MARKER_NAME}) if replace else []
    # config.json goes first and comes back last, so the folder never pairs a new config with old weights
    if CONFIG_NAME in owned and (CONFIG_NAME in new or replace):
        (target / CONFIG_NAME).unlink(missing_ok=True)
    for name in stale:
        _remove(target / name)
    for name in sorted(new, key=lambda n: n == CONFIG_NAME):
        if (target / name).is_dir() and not (target / name).is_symlink():
            shutil.rmtree(target / name)
        os.replace(staging / name, target / name)
    kept = set() if replace else owned & {p.name for p in target.iterdir()}
    _write_marker(target, kind, set(new) | kept)


@contextlib.contextmanager
def write_folder(
    target: str | os.PathLike, *, kind: FolderKind, overwrite: bool = False, replace: bool = True, what: str = "output"
) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds its entries move into ``target``.

    Args:
        target: the folder to write (checked with :func:`check_writable_folder` first).
        kind: what the folder holds; recorded in its marker.
        overwrite: replace an existing polyhead dataset.
        replace: the staging folder is the whole new content: entries polyhead wrote before
            and did not write again are removed (a model saved sharded drops the old single
            weights file). ``False`` adds to the folder and keeps the rest (an export adding
            ``model.onnx``).
        what: how errors name the folder (``"model folder"``, ``"--out folder"``).

    An exception inside the block leaves ``target`` as it was (except an empty folder created for it).
    """
    path = check_writable_folder(target, kind=kind, overwrite=overwrite, what=what)
    path.mkdir(parents=True, exist_ok=True)
    _clean_staging(path)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=path))
    try:
        yield staging
        _commit(staging, path, kind=kind, replace=replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_HELD_LOCKS: dict[str, int] = {}


def remove_unused_run_folder(folder: str | os.PathLike) -> bool:
    """Remove ``folder`` if a run created it and failed before writing anything: only the marker and the lock are
    in it. Returns whether it was removed; a folder with anything else in it is left as it is."""
    path = Path(folder)
    if not path.is_dir() or {entry.name for entry in path.iterdir()} - {MARKER_NAME, LOCK_NAME}:
        return False
    shutil.rmtree(path)
    return True


@contextlib.contextmanager
def run_lock(output_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<output_dir>/.polyhead.lock`` while a run writes there; a second run fails naming the first.

    An ``fcntl`` lock: the operating system releases it when the process dies, so a killed
    run never leaves a stale lock behind. Re-entrant within one process (the workflow and
    the Trainer both hold it).
    """
    import fcntl
    import socket
    import sys
    import time

    path = Path(output_dir) / LOCK_NAME
    key = str(path.absolute())
    if _HELD_LOCKS.get(key):
        _HELD_LOCKS[key] += 1
        try:
            yield path
        finally:
            _HELD_LOCKS[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputError(
                f"{output_dir} is being written by another polyhead run ({holder}); wait for it to finish or choose "
                "another train.output_dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)[:200]}\n")
        handle.flush()
        _HELD_LOCKS[key] = 1
        try:
            yield path
        finally:
            del _HELD_LOCKS[key]
    finally:
        handle.close()


def save_model_dir(
    target: str | os.PathLike,
    model: Any,
    processor: Any = None,
    files: dict[str, Any] | None = None,
    *,
    replace: bool = True,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Write a complete model folder (weights, config, processor, JSON ``files`` by name) through :func:`write_folder`.

    ``model`` is a :class:`~polyhead.modeling.PolyheadModel`; ``processor`` defaults to the task's; ``state_dict``
    replaces the model's own tensors (the whole tensors gathered from FSDP or DeepSpeed shards).
    """
    with write_folder(target, kind="model", replace=replace, what="model folder") as staging:
        model.save_pretrained(staging, processor=processor, **({} if state_dict is None else {"state_dict": state_dict}))
        for name, content in (files or {}).items():
            atomic_write_text(staging / name, json.dumps(content, indent=2, default=str) + "\n")
    return Path(target)
