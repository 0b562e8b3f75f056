"""Small argument checks shared by constructors (MONAI's ``look_up_option`` style)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError, UnknownNameError, did_you_mean

__all__ = ["look_up_option", "check_positive", "check_probability", "dataclass_from_section"]

V = TypeVar("V")


def look_up_option(value: str, table: Mapping[str, V], what: str) -> V:
    """Return ``table[value]``; raise :class:`UnknownNameError` naming the choices."""
    if value not in table:
        raise UnknownNameError(
            f"Unknown {what} {value!r}.{did_you_mean(str(value), table)} "
            f"Expected one of: {', '.join(sorted(table))}."
        )
    return table[value]


def check_positive(name: str, value: int | float, *, integer: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive int (or number)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and not math.isfinite(value)) or value <= 0:
        expected = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name} must be {expected} (finite), got {value!r}.")


def check_probability(name: str, value: float) -> None:
    """Raise :class:`ConfigError` unless ``0 <= value < 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")


D = TypeVar("D")


def dataclass_from_section(cls: type[D], section: Mapping[str, Any], what: str) -> D:
    """Build an arguments dataclass from a config section; an unknown key gets a did-you-mean.

    Args:
        cls: the dataclass (e.g. ``TrainingArguments``).
        section: the config section's keys and values.
        what: how the error names an option, e.g. ``"a training option"``.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    for key in section:
        if key not in names:
            raise ConfigError(f"train.{key} is not {what}.{did_you_mean(key, names)} Options: {', '.join(names)}.")
    return cls(**section)
