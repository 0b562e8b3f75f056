"""Registries of backbones, heads and tasks (mmengine ``Registry``).

One hop from a name to a class: ``get(BACKBONES, "transformer")`` is the class, and
:func:`build` calls it with the remaining keys of a ``{"type": ..., **kwargs}`` dict.

Built-in parts are *declared* (:func:`declare`: a name and the module that registers it; tasks also name their
model types) so that ``import polyhead`` knows every backbone and task without importing one; :func:`get`
imports a declared part's module the first time it is asked for (a task's data, metrics and models bring MONAI,
torchaudio, gymnasium, ...; a backbone, transformers' modeling code).

Example:
    >>> from polyhead.registry import BACKBONES, build
    >>> backbone = build(BACKBONES, {"type": "transformer", "dim": 32, "depth": 1, "num_heads": 2})
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mmengine.registry import Registry

from .errors import ConfigError, UnknownNameError, did_you_mean

__all__ = [
    "BACKBONES",
    "HEADS",
    "TASKS",
    "register_backbone",
    "register_head",
    "register_task",
    "declare",
    "declare_task",
    "build",
    "describe_backbone",
    "get",
    "names",
    "task_for",
    "task_name_for",
    "check_kwargs",
    "PRETRAINED_KEY",
]

class DeclaringRegistry(Registry):
    """mmengine's ``Registry`` that also knows declared names (:func:`declare`): ``BACKBONES.get("swin")`` and
    ``"swin" in BACKBONES`` import a declared module first, as :func:`get` does."""

    def get(self, key: str) -> Any:
        _import_declared(self, key)
        return super().get(key)

    def __contains__(self, key: Any) -> bool:
        return key in _declared(self) or super().__contains__(key)


BACKBONES = DeclaringRegistry("backbone", scope="polyhead")
HEADS = DeclaringRegistry("head", scope="polyhead")
TASKS = DeclaringRegistry("task", scope="polyhead")

T = TypeVar("T")

#: the backbone config key naming pretrained weights (``backbone=dict(type=..., pretrained=SOURCE)``); see polyhead.pretrained
PRETRAINED_KEY = "pretrained"


def _register(registry: Registry, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
        # mmengine raises KeyError on a duplicate name unless force=True: registering
        # two parts under one name is a bug and must fail loudly; so is taking a name
        # polyhead declared for a part it has not imported yet.
        declared = _declared(registry).get(name)
        if declared is not None and getattr(obj, "__module__", None) != declared:
            raise KeyError(f"{name!r} is already registered in the {registry.name} registry (declared by {declared}); choose another name.")
        registry.register_module(name=name, module=obj)
        return obj

    return decorator


def register_backbone(name: str) -> Callable[[T], T]:
    """Class decorator: register a backbone under ``name`` (its ``registry_name``)."""

    def decorator(cls: T) -> T:
        _register(BACKBONES, name)(cls)
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def register_head(name: str) -> Callable[[T], T]:
    """Class decorator: register a head under ``name``."""
    return _register(HEADS, name)


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: register a task under ``name``."""
    return _register(TASKS, name)


#: declared parts: registry name -> {part name: the module whose import registers it}
_DECLARED: dict[str, dict[str, str]] = {}
#: declared tasks: name -> their models' ``config.json`` model types
_TASK_MODEL_TYPES: dict[str, tuple[str, ...]] = {}


def declare(registry: Registry, name: str, module: str) -> None:
    """Record that importing ``module`` registers ``name`` in ``registry``, without importing it; :func:`get`
    imports it on first use."""
    declared = _DECLARED.setdefault(registry.name, {})
    if declared.get(name, module) != module:
        raise KeyError(f"The {registry.name} {name!r} is already declared by {declared[name]}.")
    declared[name] = module


def declare_task(name: str, module: str, *, model_types: tuple[str, ...]) -> None:
    """:func:`declare` a task of :data:`TASKS` whose models have ``model_types``."""
    declare(TASKS, name, module)
    _TASK_MODEL_TYPES[name] = tuple(model_types)


def _ensure_loaded() -> None:
    # Importing polyhead registers every backbone and head and declares every task.
    import polyhead  # noqa: F401


def _declared(registry: Registry) -> dict[str, str]:
    return _DECLARED.get(registry.name, {})


def names(registry: Registry) -> list[str]:
    """Sorted names registered (or, for tasks, declared) in ``registry``; nothing is imported."""
    _ensure_loaded()
    return sorted(set(registry.module_dict) | set(_declared(registry)))


def _import_declared(registry: Registry, name: Any) -> None:
    """Import the module a not-yet-registered declared ``name`` lives in; anything else imports nothing."""
    if isinstance(name, str) and name not in registry.module_dict and name in _declared(registry):
        module = _declared(registry)[name]
        importlib.import_module(module)
        if name not in registry.module_dict:
            raise UnknownNameError(f"Importing {module} did not register the {registry.name} {name!r} it declares.")


def get(registry: Registry, name: str) -> Any:
    """The class registered as ``name`` (a declared part's module imported first); :class:`UnknownNameError`
    lists the known ones."""
    _ensure_loaded()
    _import_declared(registry, name)
    if not isinstance(name, str) or name not in registry.module_dict:
        known = names(registry)
        raise UnknownNameError(
            f"Unknown {registry.name} {name!r}.{did_you_mean(str(name), known)} "
            f"Known {registry.name}s: {', '.join(known) or '(none)'}."
        )
    return registry.module_dict[name]


def task_name_for(model_type: str) -> str:
    """The name of the task whose models have ``model_type`` (``"polyhead-forecasting"`` -> ``"forecasting"``),
    without importing it."""
    _ensure_loaded()
    for name, model_types in _TASK_MODEL_TYPES.items():
        if model_type in model_types:
            return name
    for name in sorted(TASKS.module_dict):  # tasks registered without a declaration (a user's own)
        if model_type in TASKS.module_dict[name].model_types():
            return name
    known = sorted({t for types in _TASK_MODEL_TYPES.values() for t in types}
                   | {t for task in TASKS.module_dict.values() for t in task.model_types()})
    raise UnknownNameError(f"No polyhead task has models of type {model_type!r}.{did_you_mean(model_type, known)} Known: {', '.join(known)}.")


def task_for(model_type: str) -> Any:
    """The registered task class whose models include ``model_type`` (``"polyhead-forecasting"``)."""
    return get(TASKS, task_name_for(model_type))


def check_kwargs(cls: Callable[..., Any], kwargs: Mapping[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` if ``kwargs`` has a key ``cls`` does not accept."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"{what} got an unknown option {key!r}.{did_you_mean(key, accepted)} "
                f"Accepted options: {', '.join(sorted(accepted))}."
            )


def describe_backbone(cfg: Mapping[str, Any]):
    """The :class:`~polyhead.backbones.BackboneSpec` of ``{"type": ..., **kwargs}``, without building the backbone."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ConfigError(f"A backbone config must be a dict with a 'type' key, got {cfg!r}.")
    cls = get(BACKBONES, cfg["type"])
    kwargs = {k: v for k, v in cfg.items() if k not in ("type", PRETRAINED_KEY)}
    check_kwargs(cls, kwargs, f"backbone {cfg['type']!r}")
    return cls.describe(**kwargs)


def build(registry: Registry, cfg: Mapping[str, Any], **extra: Any) -> Any:
    """Build ``registry[cfg["type"]](**rest_of_cfg, **extra)``.

    Args:
        registry: one of :data:`BACKBONES`, :data:`HEADS`, :data:`TASKS`.
        cfg: ``{"type": name, **kwargs}``.
        **extra: keyword arguments supplied by the caller (e.g. a head's
            ``feature_info``), which the config may not override.
    """
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ConfigError(
            f"A {registry.name} config must be a dict with a 'type' key, got {cfg!r}."
        )
    # a backbone's `pretrained` source is applied when a run starts (polyhead.pretrained), never by its constructor
    kwargs = {k: v for k, v in cfg.items() if k != "type" and not (registry is BACKBONES and k == PRETRAINED_KEY)}
    clash = sorted(set(kwargs) & set(extra))
    if clash:
        raise ConfigError(
            f"{registry.name} config sets {clash}, which polyhead fills in from the model; remove them."
        )
    cls = get(registry, cfg["type"])
    kwargs.update(extra)
    check_kwargs(cls, kwargs, f"{registry.name} {cfg['type']!r}")
    return cls(**kwargs)
