"""Stand-in for transformers' ``tests/exporters/test_export.py``, which the 5.23.0 sdist does not ship.

``test_modeling_common.py`` (copied unchanged) imports ``ExportTesterMixin`` from here. polyhead's
export path is ONNX (``polyhead export``), tested registry-wide by ``tests/test_export.py``; this
mixin adds no tests.
"""

__all__ = ["ExportTesterMixin"]


class ExportTesterMixin:
    """Empty: polyhead's models are exported and checked by ``tests/test_export.py``."""
