"""polyhead's exceptions.

Every error a user can trigger with bad input is a :class:`PolyheadError` that says
what was wrong and what was expected. Each subclass also derives from the builtin
exception a Python user would catch for that kind of problem (``ValueError``,
``OSError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "PolyheadError",
    "ConfigError",
    "UnknownNameError",
    "InputError",
    "ModelLoadError",
    "DataError",
    "ExportError",
    "HubError",
    "OutputError",
    "did_you_mean",
]


class PolyheadError(Exception):
    """Base class of every error polyhead raises on purpose."""


class ConfigError(PolyheadError, ValueError):
    """A config, constructor argument or command-line option is invalid."""


class UnknownNameError(ConfigError):
    """A task, backbone, head or option name is not registered."""


class InputError(PolyheadError, ValueError):
    """Data handed to a model, processor or pipeline has the wrong form."""


class DataError(PolyheadError, ValueError):
    """A dataset on disk or in memory cannot be used for training or evaluation."""


class ModelLoadError(PolyheadError, OSError):
    """A model directory or file is missing, corrupted, or not a polyhead model."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class ExportError(PolyheadError, RuntimeError):
    """Exporting a model to ONNX failed, or the exported graph does not match PyTorch."""


class HubError(PolyheadError, OSError):
    """A push to the Hugging Face Hub (or a mirror) failed: no token, a refused token, or the network."""


class OutputError(PolyheadError, OSError):
    """polyhead may not write where it was asked to: a folder it did not write, a file in the way, no permission."""
