"""Base ``PreTrainedConfig`` of every polyhead task.

A task config holds the backbone and head as plain ``{"type": ..., **kwargs}`` dicts
plus the task's own fields. It is the single source of truth for the architecture
(written to ``config.json``); the ``model`` section of an mmengine config file
becomes one of these through :meth:`PolyheadConfig.from_model_section`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from transformers import PreTrainedConfig

from .errors import ConfigError, did_you_mean

__all__ = ["PolyheadConfig"]


class PolyheadConfig(PreTrainedConfig):
    """Fields every polyhead task config has.

    Attributes:
        backbone: ``{"type": <registered backbone>, **kwargs}``.
        head: ``{"type": <registered head>, **kwargs}``; sizes that come from the
            backbone or the task (``feature_info``, horizon, ...) are filled in by the model.
    """

    task: ClassVar[str] = ""
    backbone: dict = dataclasses.field(default_factory=dict)
    head: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self, **kwargs: Any) -> None:
        for name in ("backbone", "head"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or "type" not in value:
                raise ConfigError(
                    f"{type(self).__name__}.{name} must be a dict with a 'type' key, got {value!r}."
                )
            setattr(self, name, dict(value))
        super().__post_init__(**kwargs)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names a ``model`` config section may set (this class's own fields)."""
        base = {f.name for f in dataclasses.fields(PreTrainedConfig)}
        return sorted({f.name for f in dataclasses.fields(cls)} - base | {"backbone", "head"})

    @classmethod
    def from_model_section(cls, section: Mapping[str, Any]) -> "PolyheadConfig":
        """Build the config from an mmengine ``model`` section (minus its ``task`` key).

        Unknown keys are an error with a did-you-mean hint, not silently stored.
        """
        allowed = cls.field_names()
        for key in section:
            if key not in allowed:
                raise ConfigError(
                    f"model.{key} is not an option of {cls.__name__}.{did_you_mean(key, allowed)} "
                    f"Options: {', '.join(allowed)}."
                )
        return cls(**{k: _plain(v) for k, v in section.items()})


def _plain(value: Any) -> Any:
    """mmengine ``ConfigDict``/tuples -> plain JSON-friendly dicts/lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
