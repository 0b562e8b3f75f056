"""Tasks (``polyhead.tasks``): the glue for each domain."""

from __future__ import annotations

from ._base import Metrics, Task, TaskData
from .asr import ASRTask
from .detection import DetectionTask
from .forecasting import ForecastingTask
from .recommendation import RecommendationTask
from .rl import RLTask
from .segmentation import SegmentationTask

__all__ = ["Metrics", "Task", "TaskData", "DetectionTask", "ASRTask", "ForecastingTask", "RecommendationTask", "RLTask", "SegmentationTask"]
