"""The base of every polyhead model: ``PolyheadPreTrainedModel`` and the backbone + adapter skeleton ``PolyheadModel``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from polyhead.adapters import TaskAdapter
from polyhead.backbones._base import Backbone, ComputedBuffers
from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.log import quiet_library_progress
from polyhead.model_dir import write_folder
from polyhead import registry
from polyhead.registry import BACKBONES, build, describe_backbone

__all__ = ["PolyheadModel", "PolyheadPreTrainedModel"]


class PolyheadPreTrainedModel(PreTrainedModel):
    """Shared behaviour of polyhead models.

    * ``_init_weights`` gives every parameter the initialisation its own module gives it:
      ``reset_parameters()`` of torch / MONAI / torchaudio / torchvision layers and of polyhead's
      modules with a scheme of their own (ConvNeXt's truncated normal, the heads' priors), called
      children first so a module's scheme has the last word over its layers'. Weights missing
      from a checkpoint (a new head after ``ignore_mismatched_sizes=True``) start as in a new model;
      loaded ones are kept (transformers guards the init functions).
    * Buffers are rebuilt too: computed ones (:class:`~polyhead.backbones.ComputedBuffers`: position
      tables, offsets, quantile levels, observation statistics from the config) and BatchNorm statistics.
    * ``save_pretrained`` writes through :func:`polyhead.model_dir.write_folder`: never into a
      folder polyhead did not write, never a new ``config.json`` beside old weights.
    """

    base_model_prefix = "polyhead"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.modules.batchnorm._NormBase):
            # torch's reset_running_stats writes without the guard: a loaded statistic would be lost
            if module.affine:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            if module.track_running_stats:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif callable(reset := getattr(type(module), "reset_parameters", None)):
            reset(module)
        if isinstance(module, ComputedBuffers):
            module.reset_computed_buffers()

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        """transformers' own, without its shortcut for code outside transformers (``is_custom_code``).

        That shortcut marks a module initialised when its *own* tensors are loaded, so a module with
        none, whose scheme is over its children (FCOS's class prior on a new ``cls_logits``), would
        never run. polyhead writes only through transformers' guarded init functions, which keep
        loaded tensors, so the shortcut is not needed.
        """
        super()._initialize_weights(module, is_custom_code=False)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:  # type: ignore[override]
        """transformers' ``save_pretrained``, written through :func:`polyhead.model_dir.write_folder`.

        The folder must be new, empty or a polyhead model folder (anything else is an
        :class:`~polyhead.errors.OutputError`); the new files replace the weights polyhead
        wrote there before (a sharded save drops an old single file), and files a user added stay.
        """
        with write_folder(save_directory, kind="model", what="model folder") as staging, quiet_library_progress():
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

    def save_pretrained(self, save_directory: str | os.PathLike, *args, processor: Any = None, **kwargs) -> None:  # type: ignore[override]
        """Write the model *and its processor*, so ``polyhead.pipeline(task, model=save_directory)`` works.

        Args:
            save_directory: a new or empty folder, or a polyhead model folder (see
                :func:`polyhead.model_dir.write_folder`).
            processor: the processor to save (default: the task's, built from the config,
                which is how ``polyhead train`` builds it).
            *args / **kwargs: transformers' ``save_pretrained`` arguments (``max_shard_size``, ...).
        """
        if processor is None:
            processor = registry.task_for(self.config.model_type)().build_processor(self.config)
        with write_folder(save_directory, kind="model", what="model folder") as staging, quiet_library_progress():
            PreTrainedModel.save_pretrained(self, staging, *args, **kwargs)
            processor.save_pretrained(staging)

    def named_parts(self) -> list[tuple[str, nn.Module]]:
        """The backbone and each part of the adapter (stem, head, ...), by name: what a model card lists."""
        return [("backbone", self.backbone), *self.adapter.named_children()]

    def run(
        self,
        inputs: Mapping[str, Any],
        labels: Mapping[str, Any],
        *,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ModelOutput | tuple:
        """The forward of every task: embed -> backbone -> predict -> loss (when labelled) -> output.

        Args:
            inputs / labels: the adapter's ``embed`` and ``loss`` arguments (a ``None`` label is not given).
            output_attentions: add the backbone's attention weights (``attentions``: one ``(B, H, T, T)``
                per block; sequence backbones), computed eagerly. Default ``config.output_attentions``.
            output_hidden_states: add every block's output (``hidden_states``: the backbone's input, then
                each block's; the stem and each stage for pyramid backbones). Default ``config.output_hidden_states``.
            return_dict: ``False`` returns ``output.to_tuple()``. Default ``config.return_dict``.

        The backbone attends as ``config._attn_implementation`` says (``"sdpa"``, or ``"eager"``).
        """
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict
        embedded = self.adapter.embed(**inputs)
        if self.backbone.kind == "sequence":
            encoded = self.backbone(
                embedded.x, padding_mask=embedded.padding_mask, is_causal=embedded.is_causal,
                output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                attn_implementation="eager" if config._attn_implementation == "eager" else "sdpa",
            )
        else:
            encoded = self.backbone(embedded.x, output_hidden_states=output_hidden_states)
        predictions = self.adapter.predict(encoded.feature_maps, embedded)
        given = {name: value for name, value in labels.items() if value is not None}
        losses = self.adapter.loss(predictions, embedded, **given) if given else None
        output = self.adapter.output(predictions, embedded, losses)
        if output_hidden_states:
            output["hidden_states"] = encoded.hidden_states
        if output_attentions and encoded.attentions is not None:
            output["attentions"] = encoded.attentions
        return output if return_dict else output.to_tuple()
