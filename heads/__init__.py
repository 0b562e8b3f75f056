"""Task heads (``polyhead.heads``): one file per family."""

from __future__ import annotations

from ._base import Head
from .detection import FCOSDetectionHead, fcos_postprocess
from .ctc import CTCHead, ctc_collapse, ctc_greedy_decode
from .forecasting import ForecastHead, pinball_loss
from .recommendation import CTRHead, NextItemHead
from .rl import ActorCriticHead, DecisionTransformerActionHead
from .segmentation import UnetrDecoder

__all__ = ["Head", "UnetrDecoder", "FCOSDetectionHead", "fcos_postprocess", "CTCHead", "ctc_collapse", "ctc_greedy_decode", "ForecastHead", "pinball_loss", "NextItemHead", "CTRHead", "ActorCriticHead", "DecisionTransformerActionHead"]
