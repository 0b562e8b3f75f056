"""The base of every polyhead model: ``PolyheadPreTrainedModel`` and the backbone + adapter skeleton ``PolyheadModel``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from polyhead.adapters import TaskAdapter
from polyhead.backbones._base import Backbone, ComputedBuffers
from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.model_dir import write_folder
from polyhead.registry import BACKBONES, build, describe_backbone

__all__ = ["PolyheadModel", "PolyheadPreTrainedModel"]


class PolyheadPreTrainedModel(PreTrainedModel):
    """Shared behaviour of polyhead models.

    * Parameters keep the initialisation their own library gives them (torch,
      MONAI, torchaudio): transformers' default ``_init_weights`` would overwrite it.
    * Buffers computed in ``__init__`` (positional tables, frequencies) are rebuilt
      when transformers materialises the model in ``from_pretrained``.
    * ``save_pretrained`` writes through :func:`polyhead.model_dir.write_folder`: never into a
      folder polyhead did not write, never a new ``config.json`` beside old weights.
    """

    base_model_prefix = "polyhead"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, ComputedBuffers):
            with torch.no_grad():
                module.reset_computed_buffers()

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:  # type: ignore[override]
        """transformers' ``save_pretrained``, written through :func:`polyhead.model_dir.write_folder`.

        The folder must be new, empty or a polyhead model folder (anything else is an
        :class:`~polyhead.errors.OutputError`); the new files replace the weights polyhead
        wrote there before (a sharded save drops an old single file), and files a user added stay.
        """
        with write_folder(save_directory, kind="model", what="model folder") as staging:
            super().save_pretrained(staging, *args, **kwargs)


class PolyheadModel(PolyheadPreTrainedModel):
    """A task model: a backbone (built from ``config.backbone`` or passed in) + the task's adapter.

    Composition by injection, as torchvision's ``FCOS(backbone, ...)``: give ``backbone=`` a
    built backbone to share it between task models (``model_a.backbone is model_b.backbone``)
    or to start from weights you loaded yourself. The injected backbone defines the
    architecture: ``config.backbone`` is set to its :attr:`~polyhead.backbones.Backbone.config`,
    so ``save_pretrained`` writes a ``config.json`` that rebuilds it.

    Subclasses set :attr:`adapter_class` and ``config_class``, and spell out ``forward``
    (typed keyword arguments, a docstring with shapes) as a call to :meth:`run`.

    Args:
        config: the task's config (``backbone`` and ``head`` dicts plus its own fields).
        backbone: a built backbone to use instead of building ``config.backbone``.
    """

    adapter_class: ClassVar[type[TaskAdapter]]

    def __init__(self, config: PolyheadConfig, *, backbone: Backbone | None = None) -> None:
        if backbone is not None:
            if not isinstance(backbone, Backbone):
                raise ConfigError(f"backbone must be a polyhead backbone (polyhead.backbones.Backbone), got {type(backbone).__name__}.")
            config.backbone = backbone.config
        super().__init__(config)
        spec = describe_backbone(config.backbone)
        self.adapter_class.check_backbone(config, spec)  # before anything is built
        self.backbone = backbone if backbone is not None else build(BACKBONES, config.backbone)
        self.adapter = self.adapter_class(config, spec)  # after the backbone: the 0.1 order of random draws
        self.post_init()

    def run(self, inputs: Mapping[str, Any], labels: Mapping[str, Any]) -> ModelOutput:
        """The forward of every task: embed -> backbone -> predict -> loss (when labelled) -> output."""
        embedded = self.adapter.embed(**inputs)
        if self.backbone.kind == "sequence":
            features = self.backbone(embedded.x, padding_mask=embedded.padding_mask, is_causal=embedded.is_causal).feature_maps
        else:
            features = self.backbone(embedded.x).feature_maps
        predictions = self.adapter.predict(features, embedded)
        given = {name: value for name, value in labels.items() if value is not None}
        losses = self.adapter.loss(predictions, embedded, **given) if given else None
        return self.adapter.output(predictions, embedded, losses)
