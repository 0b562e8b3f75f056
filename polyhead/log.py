"""polyhead's logger: messages for the user go to the current ``sys.stderr``, even with Python warnings off.

``logging.getLogger("polyhead")`` gets one handler at import (unless the application
configured one); ``polyhead: warning: ...`` lines are printed to whatever ``sys.stderr`` is
when the message is emitted.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["logger", "quiet_library_progress"]


class _CurrentStderrHandler(logging.StreamHandler):
    """A stream handler that writes to ``sys.stderr`` as it is now (pytest and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler.__init__ assigns it
        pass


logger = logging.getLogger("polyhead")
if not logger.handlers:
    _handler = _CurrentStderrHandler()
    _handler.setFormatter(logging.Formatter("polyhead: %(levelname)s: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def quiet_library_progress() -> Iterator[None]:
    """Hide transformers' own progress bars ("Loading weights", "Writing model shards") for a polyhead-internal step.

    They describe work the user did not ask for by name (polyhead saves and reloads models as
    part of a run); the user's own progress bars, and transformers' outside polyhead, are untouched.
    """
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


class _PolyheadModelsAreSupported(logging.Filter):
    """Drops transformers' "The model 'PolyheadFor...' is not supported for object-detection" error.

    transformers' object-detection pipeline checks the model class against its built-in names
    only, not against the classes registered with ``AutoModelForObjectDetection`` (where
    polyhead registers its detector), and logs a 4 kB list; the pipeline itself works.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("The model 'PolyheadFor")


logging.getLogger("transformers.pipelines.base").addFilter(_PolyheadModelsAreSupported())
