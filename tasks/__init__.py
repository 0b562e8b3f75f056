"""Tasks (``polyhead.tasks``): the glue for each domain."""

from __future__ import annotations

from ._base import Metrics, Task, TaskData
from .forecasting import ForecastingTask
from .recommendation import RecommendationTask
from .rl import RLTask

__all__ = ["Metrics", "Task", "TaskData", "ForecastingTask", "RecommendationTask", "RLTask"]
