"""The task contract lives in :mod:`polyhead.task`; this module keeps the old import path working."""

from __future__ import annotations

from polyhead.task import Metrics, Task, TaskData

__all__ = ["Metrics", "Task", "TaskData"]
