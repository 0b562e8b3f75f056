"""polyhead: shared backbones plugged into task heads; every model a Hugging Face model.

Importing polyhead registers every backbone, head and task, the transformers Auto
classes of each task, and each pipeline with transformers' ``PIPELINE_REGISTRY``.
"""

from __future__ import annotations

__version__ = "0.2.0"

from . import errors, registry  # noqa: E402  (registries exist before parts register)
from . import backbones, heads, tasks  # noqa: E402,F401
from . import multitask  # noqa: E402,F401  (one backbone, several tasks: registers the "multitask" task)
from .export import OnnxModel, export_onnx  # noqa: E402
from .loading import AutoModel  # noqa: E402
from .pipelines import pipeline  # noqa: E402
from .pipelines.detection import draw_detections  # noqa: E402
from .workflows import evaluate_model_dir, train  # noqa: E402
from .hub import push_to_hub  # noqa: E402
from .tasks.rl import evaluate_agent  # noqa: E402
from .multitask import PolyheadForMultiTask  # noqa: E402

__all__ = ["AutoModel", "PolyheadForMultiTask", "draw_detections", "OnnxModel", "export_onnx", "pipeline", "push_to_hub", "train", "evaluate_model_dir", "evaluate_agent", "errors", "registry", "__version__"]
