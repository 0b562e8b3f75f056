"""What every polyhead processor shares: only its settings are saved.

A processor keeps settings (saved as ``preprocessor_config.json``) and may build
state from them on first use (lookup tables, a MONAI transform chain, a mel filter
bank). State lives in attributes named ``_x``; :class:`SavesSettingsOnly` leaves
them out of ``to_dict`` (and so of the saved file), to be rebuilt after loading.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SavesSettingsOnly"]

#: private keys transformers itself writes (turned into ``processor_class`` on save)
_TRANSFORMERS_KEYS = frozenset({"_processor_class"})


class SavesSettingsOnly:
    """Mixin placed before a transformers processor base: ``to_dict`` drops ``_``-prefixed state."""

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()  # type: ignore[misc]
        return {k: v for k, v in output.items() if not k.startswith("_") or k in _TRANSFORMERS_KEYS}
