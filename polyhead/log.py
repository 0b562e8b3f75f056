"""polyhead's logger: messages for the user go to the current ``sys.stderr``, even with Python warnings off.

``logging.getLogger("polyhead")`` gets one handler at import (unless the application
configured one); ``polyhead: warning: ...`` lines are printed to whatever ``sys.stderr`` is
when the message is emitted.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger"]


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
