"""Names recorded with their import paths, imported on first use.

``import polyhead`` stays cheap (``benchmarks/startup.py``: at most 2x ``import torch, transformers``): a task's
models, data, metrics and pipelines pull in MONAI, torchaudio, torchvision, gymnasium and transformers' modeling
code, so each is imported the first time its task is used. Two tools do it:

- :func:`lazy_exports`: a package's ``__getattr__`` / ``__dir__`` (PEP 562) that imports a public name from the
  submodule that defines it on first access (``from polyhead.tasks.asr import load_audio``).
- :func:`deferred_class`: a stand-in class for transformers' registries (``AutoModel.register``,
  ``PIPELINE_REGISTRY.register_pipeline``), which need a class object before polyhead may import it. The stand-in
  carries the real class's name and the attributes the registry checks; any other attribute, and calling it,
  imports the real class and hands over to it (``AutoModel.from_pretrained(folder)`` -> the real class's
  ``from_pretrained``).

Example:
    >>> Model = deferred_class("polyhead.tasks.forecasting.modeling:PolyheadForForecasting")
    >>> Model.__name__
    'PolyheadForForecasting'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["deferred_class", "import_object", "is_deferred", "lazy_exports"]


def import_object(path: str) -> Any:
    """``"package.module:Name"`` -> the object ``Name`` of ``package.module`` (imported if it is not yet)."""
    module_name, _, name = path.partition(":")
    return getattr(importlib.import_module(module_name), name)


class _DeferredClass(type):
    """Metaclass of the stand-ins :func:`deferred_class` makes."""

    _deferred_path: str

    def resolve(cls) -> type:
        """The real class (its module imported on the first call; Python caches it after)."""
        return import_object(cls._deferred_path)

    def __getattr__(cls, name: str) -> Any:  # only for names the stand-in does not carry itself
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy/pickle/introspection probes: not the real class's business
        return getattr(cls.resolve(), name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.resolve()(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls.resolve())

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls.resolve())

    def __repr__(cls) -> str:
        return f"<deferred class {cls._deferred_path}>"


def deferred_class(path: str, **attributes: Any) -> type:
    """A stand-in for the class at ``path`` (``"module:Name"``) that imports it on first use.

    Args:
        path: where the real class lives.
        **attributes: class attributes the stand-in carries without importing (e.g. ``config_class``, which
            ``AutoModel.register`` checks).
    """
    module_name, _, name = path.partition(":")
    if not module_name or not name.isidentifier():
        raise ValueError(f"A deferred class path is 'package.module:ClassName', got {path!r}.")
    namespace = {"__module__": module_name, "__qualname__": name, "__doc__": f"Stand-in for {path}, imported on first use.",
                 "_deferred_path": path, **attributes}
    return _DeferredClass(name, (), namespace)


def is_deferred(obj: Any) -> bool:
    """Whether ``obj`` is a stand-in made by :func:`deferred_class`."""
    return isinstance(obj, _DeferredClass)


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name of ``exports`` (name -> relative submodule, e.g.
    ``".data"``) is imported from that submodule on first access and kept as a module attribute."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
