"""The task adapter: everything a task adds around a shared backbone, behind one interface.

A polyhead model is a backbone plus a :class:`TaskAdapter` (see ``docs/architecture.md``)::

    inputs ──adapter.embed──▶ Embedded(x, padding_mask, is_causal) ──backbone──▶ feature maps
    feature maps ──adapter.predict──▶ predictions ──adapter.loss (labels)──▶ losses
    predictions + losses ──adapter.output──▶ the task's ModelOutput

The adapter owns the stem (patching, conv subsampling, field or trajectory tokens), the
registered head (built from the backbone's :class:`~polyhead.backbones.BackboneSpec`), the
loss and the output class. It never builds or probes the backbone: it reads the spec, which
is known from the backbone's config alone, and says per call what the backbone must do
(``is_causal``, the padding mask). One adapter per objective: PPO and the Decision
Transformer are two adapters, next-item and CTR are two.

The generic forward lives once, in :class:`polyhead.modeling.PolyheadModel`; a task model
class only names its adapter and spells out its ``forward`` signature.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.utils import ModelOutput

from .backbones._base import BackboneKind, BackboneSpec
from .errors import ConfigError
from .registry import HEADS, build, get

__all__ = ["Embedded", "TaskAdapter"]


@dataclasses.dataclass
class Embedded:
    """What :meth:`TaskAdapter.embed` hands the backbone, and what later steps need of the inputs.

    Attributes:
        x: the backbone's input: tokens ``(B, T, D)`` or pixels / voxels ``(B, C, *spatial)``.
        padding_mask: ``(B, T)``, ``True`` at padded tokens (sequence backbones), or ``None``.
        is_causal: whether each token may attend only to itself and earlier ones.
        context: tensors the adapter keeps for :meth:`~TaskAdapter.predict`, :meth:`~TaskAdapter.loss`
            and :meth:`~TaskAdapter.output` (normalisation statistics, lengths, the input volume).
    """

    x: torch.Tensor
    padding_mask: torch.Tensor | None = None
    is_causal: bool = False
    context: dict[str, Any] = dataclasses.field(default_factory=dict)


class TaskAdapter(nn.Module):
    """Base class of every task adapter (stem + head + loss + output for one objective).

    Subclasses set the class attributes and implement the four steps.

    Class attributes:
        accepted_kinds: backbone kinds this adapter can read (``{"sequence"}``, ``{"pyramid"}``).
        needs_causal: the adapter calls the backbone with ``is_causal=True``.
        output_class: the ``ModelOutput`` dataclass :meth:`output` returns.
        label_names: forward arguments that are labels (a loss is computed exactly when one is given).
        head_base: the head class (or base class) the adapter accepts in ``config.head``.
    """

    accepted_kinds: ClassVar[frozenset[BackboneKind]]
    needs_causal: ClassVar[bool] = False
    output_class: ClassVar[type[ModelOutput]]
    label_names: ClassVar[tuple[str, ...]] = ("labels",)
    head_base: ClassVar[type[nn.Module] | None] = None

    def __init__(self, config: Any, backbone: BackboneSpec) -> None:
        super().__init__()
        self.check_backbone(config, backbone)

    # -- construction --------------------------------------------------------------
    @classmethod
    def check_backbone(cls, config: Any, backbone: BackboneSpec) -> None:
        """Raise :class:`ConfigError` unless the adapter can run on ``backbone``; says what it needs."""
        name = config.backbone.get("type", "?") if isinstance(getattr(config, "backbone", None), Mapping) else "?"
        if backbone.kind not in cls.accepted_kinds:
            raise ConfigError(
                f"{cls.__name__} needs a {' or '.join(sorted(cls.accepted_kinds))} backbone; {name!r} is a {backbone.kind} backbone."
            )
        if cls.needs_causal and not backbone.supports_causal:
            raise ConfigError(f"{cls.__name__} attends causally; the {name!r} backbone cannot (choose 'transformer').")

    def build_head(self, config: Any, backbone: BackboneSpec, feature_info: Sequence[Mapping[str, int]] | None = None, **task_kwargs: Any) -> nn.Module:
        """Build ``config.head`` (a registered head) on the backbone's ``feature_info`` plus the task's own sizes."""
        head_cls = get(HEADS, config.head.get("type"))
        if self.head_base is not None and not issubclass(head_cls, self.head_base):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.head_base.__name__} head, got {config.head['type']!r} ({head_cls.__name__})."
            )
        info = [dict(f) for f in (feature_info if feature_info is not None else backbone.feature_info)]
        return build(HEADS, config.head, feature_info=info, **task_kwargs)

    # -- the four steps ------------------------------------------------------------------
    def embed(self, **inputs: Any) -> Embedded:
        """Check the task's inputs and turn them into the backbone's input."""
        raise NotImplementedError

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        """Backbone feature maps -> the head's predictions (tensors only: this part is exported)."""
        raise NotImplementedError

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, **labels: Any) -> dict[str, torch.Tensor]:
        """Predictions + labels -> ``{"loss": scalar, **parts}``."""
        raise NotImplementedError

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> ModelOutput:
        """The task's :attr:`output_class`; ``loss`` is set exactly when ``losses`` is given."""
        raise NotImplementedError
