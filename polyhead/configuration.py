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

from transformers import AutoConfig, PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .errors import ConfigError, did_you_mean
from .lazy import is_deferred

__all__ = ["PolyheadConfig", "register_auto_config"]


def register_auto_config(config_class: type[PreTrainedConfig]) -> None:
    """``AutoConfig.register(config_class.model_type, config_class)``, taking over from the stand-in that
    ``import polyhead`` registered for that model type (:mod:`polyhead.tasks`) when ``config_class`` is the class it
    stands for; any other clash (a second class for a model type, transformers' own types) is an error."""
    try:
        current = CONFIG_MAPPING[config_class.model_type]
    except KeyError:
        current = None
    if is_deferred(current):  # polyhead's stand-in: only the class it stands for takes over (resolving imports that task)
        current = current.resolve()
    # transformers refuses only its own model types; a clash between two extra registrations it lets through
    if current is not None and current is not config_class:
        raise ValueError(f"The model type {config_class.model_type!r} is already registered to {current.__module__}."
                         f"{current.__name__}; give {config_class.__name__} another model_type.")
    AutoConfig.register(config_class.model_type, config_class, exist_ok=current is not None)  # transformers' own types: refused


class PolyheadConfig(PreTrainedConfig):
    """Fields every polyhead task config has.

    Attributes:
        backbone: ``{"type": <registered backbone>, **kwargs}``.
        head: ``{"type": <registered head>, **kwargs}``; sizes that come from the
            backbone or the task (``feature_info``, horizon, ...) are filled in by the model.
    """

    task: ClassVar[str] = ""
    #: the ``{"type": ...}`` parts this config describes (a multi-task model has heads per task, not one)
    config_parts: ClassVar[tuple[str, ...]] = ("backbone", "head")
    backbone: dict = dataclasses.field(default_factory=dict)
    head: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self, **kwargs: Any) -> None:
        for name in self.config_parts:
            value = getattr(self, name)
            if not isinstance(value, Mapping) or "type" not in value:
                raise ConfigError(
                    f"{type(self).__name__}.{name} must be a dict with a 'type' key, got {value!r}."
                )
            setattr(self, name, dict(value))
        super().__post_init__(**kwargs)

    # -- transformers' common sizes, read from the backbone's settings (read-only: change config.backbone) --
    def _backbone_arguments(self) -> dict[str, Any]:
        from .registry import BACKBONES, get  # the registry imports the parts, which import this module

        kwargs = {k: v for k, v in self.backbone.items() if k != "type"}
        return get(BACKBONES, self.backbone["type"]).arguments(kwargs)

    @property
    def hidden_size(self) -> int:
        """The backbone's token width ``dim`` (sequence), or its last stage's channels (pyramid)."""
        return self.describe_backbone().feature_info[-1]["num_chs"]

    @property
    def num_hidden_layers(self) -> int:
        """The backbone's blocks: ``depth``, or ``sum(depths)`` over the stages of a pyramid."""
        args = self._backbone_arguments()
        return int(args["depth"]) if "depth" in args else int(sum(args["depths"]))

    @property
    def num_attention_heads(self) -> int:
        """The backbone's attention heads (its last stage's for Swin); an ``AttributeError`` for ConvNeXt, which has none."""
        args = self._backbone_arguments()
        if "num_heads" not in args:
            raise AttributeError(f"The {self.backbone['type']!r} backbone has no attention heads.")
        heads = args["num_heads"]
        return int(heads) if isinstance(heads, int) else int(list(heads)[-1])

    def describe_backbone(self) -> Any:
        """The backbone's :class:`~polyhead.backbones.BackboneSpec`, from ``config.backbone`` alone."""
        from .registry import describe_backbone

        return describe_backbone(self.backbone)

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
