"""Base ``PreTrainedModel`` of every polyhead task model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from polyhead.backbones._base import ComputedBuffers

__all__ = ["PolyheadPreTrainedModel"]


class PolyheadPreTrainedModel(PreTrainedModel):
    """Shared behaviour of polyhead models.

    * Parameters keep the initialisation their own library gives them (torch,
      MONAI, torchaudio): transformers' default ``_init_weights`` would overwrite it.
    * Buffers computed in ``__init__`` (positional tables, frequencies) are rebuilt
      when transformers materialises the model in ``from_pretrained``.
    * ``save_pretrained`` writes into a temporary directory first and moves each
      finished file into place, so an interrupted save never leaves a half-written file.
    """

    base_model_prefix = "polyhead"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, ComputedBuffers):
            with torch.no_grad():
                module.reset_computed_buffers()

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:  # type: ignore[override]
        target = Path(save_directory)
        if target.is_file():
            raise FileExistsError(f"Cannot save a model into {target}: it is a file, expected a directory.")
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-", dir=target.parent) as tmp:
            super().save_pretrained(tmp, *args, **kwargs)
            for item in sorted(Path(tmp).iterdir()):
                os.replace(item, target / item.name)
