"""Stand-in for transformers' ``tests/generation/test_utils.py``, which the 5.23.0 sdist does not ship.

``test_modeling_common.py`` (copied unchanged) imports ``GenerationTesterMixin`` from here only to
check that generative models' testers inherit it; no polyhead model can ``generate()``.
"""

__all__ = ["GenerationTesterMixin"]


class GenerationTesterMixin:
    """Empty: polyhead has no generative model classes."""
