"""The head contract.

A head is built from the backbone's ``feature_info`` (plus the task's own sizes),
checks at construction that it can use those features, maps feature maps to
tensors in ``forward`` (one return type in train and eval, export-friendly), and
owns its loss: ``loss(outputs, targets) -> {"loss": ..., **parts}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from polyhead.backbones._base import Backbone, BackboneKind, FeatureInfo
from polyhead.errors import ConfigError

__all__ = ["Head"]


class Head(nn.Module):
    """Base class of every head.

    Subclasses set :attr:`accepted_kinds` (the backbone kinds whose outputs they
    can read) and give :meth:`example_kwargs` for the registry-wide tests.
    """

    accepted_kinds: ClassVar[frozenset[BackboneKind]]

    def __init__(self, *, feature_info: Sequence[FeatureInfo]) -> None:
        super().__init__()
        if not feature_info or not all(
            isinstance(f, dict) and {"num_chs", "reduction"} <= set(f) for f in feature_info
        ):
            raise ConfigError(
                f"{type(self).__name__} needs the backbone's feature_info: a non-empty list of "
                f"{{'num_chs', 'reduction'}} dicts, got {feature_info!r}."
            )
        self.feature_info = [FeatureInfo(num_chs=int(f["num_chs"]), reduction=int(f["reduction"])) for f in feature_info]

    @classmethod
    def accepts(cls, backbone: type[Backbone]) -> bool:
        """Whether this head can be built on ``backbone``'s kind of output."""
        return backbone.kind in cls.accepted_kinds

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        """Task-side keyword arguments of a tiny instance (besides ``feature_info``).

        ``example_inputs`` are the backbone's :meth:`~Backbone.example_inputs` the head's
        features will come from (sequence length, spatial dims, ...)."""
        raise NotImplementedError

    @classmethod
    def example_backbone_overrides(cls) -> dict:
        """Backbone options the registry-wide tests set for this head (a 2-D-only head: ``{"spatial_dims": 2}``)."""
        return {}

    def example_targets(self, outputs: torch.Tensor) -> torch.Tensor:
        """Random targets matching ``outputs``, accepted by :meth:`loss`."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError
