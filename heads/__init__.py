"""Task heads (``polyhead.heads``): one file per family."""

from __future__ import annotations

from ._base import Head
from .forecasting import ForecastHead, pinball_loss
from .recommendation import CTRHead, NextItemHead
from .rl import ActorCriticHead, DecisionTransformerActionHead

__all__ = ["Head", "ForecastHead", "pinball_loss", "NextItemHead", "CTRHead", "ActorCriticHead", "DecisionTransformerActionHead"]
