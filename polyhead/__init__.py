"""polyhead: shared backbones plugged into task heads; every model a Hugging Face model.

``import polyhead`` is cheap (``benchmarks/startup.py``): it registers every head, declares every backbone
and task (``polyhead.registry``: each imported on first use), registers stand-ins for each model type's config
and each task's processor with transformers' Auto classes, and arranges that polyhead's pipeline tasks join
transformers' ``PIPELINE_REGISTRY`` when transformers loads its pipelines. A task's models, data and pipeline
(MONAI, torchaudio, gymnasium, torchvision, ...) are imported on first use, and so are the names below (PEP 562).
"""

from __future__ import annotations

__version__ = "0.2.0"

import wrapt

from . import errors, registry  # noqa: E402  (registries exist before parts register)
from . import backbones, heads, tasks  # noqa: E402,F401
from .lazy import lazy_exports  # noqa: E402
from .pipelines import register_pipelines  # noqa: E402

wrapt.register_post_import_hook(register_pipelines, "transformers.pipelines")

__getattr__, __dir__ = lazy_exports(__name__, {
    "AutoModel": ".loading",
    "PolyheadForMultiTask": ".multitask",
    "draw_detections": ".pipelines.detection",
    "OnnxModel": ".onnx_runtime",
    "export_onnx": ".export",
    "pipeline": ".pipelines",
    "push_to_hub": ".hub",
    "train": ".workflows",
    "evaluate_model_dir": ".workflows",
    "evaluate_agent": ".tasks.rl",
    "example_file": ".examples",
})

__all__ = ["AutoModel", "PolyheadForMultiTask", "draw_detections", "OnnxModel", "export_onnx", "pipeline", "push_to_hub", "train", "evaluate_model_dir", "evaluate_agent", "example_file", "errors", "registry", "__version__"]
