"""``object-detection`` pipeline: an image in, scored and labelled boxes out (input pixels).

polyhead's detectors honour transformers' own ``ObjectDetectionPipeline`` contract, so
``transformers.pipeline("object-detection", model=<polyhead model dir>)`` works as is;
this subclass, which ``polyhead.pipeline("object-detection")`` builds, adds numpy and
tensor inputs and clear :class:`~polyhead.errors.InputError` messages for bad files.

Example:
    >>> import polyhead
    >>> detect = polyhead.pipeline("object-detection")          # the embedded default model
    >>> detect("photo.jpg", threshold=0.5)
    [{'score': 0.91, 'label': 'face', 'box': {'xmin': 12, 'ymin': 40, 'xmax': 70, 'ymax': 101}}, ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers.pipelines.object_detection import ObjectDetectionPipeline

from polyhead.errors import InputError
from polyhead.tasks.detection.processing import to_rgb_tensor

__all__ = ["ObjectDetectionPipeline", "PolyheadObjectDetectionPipeline", "load_image"]


def load_image(image: Any) -> Any:
    """A path / ``pathlib.Path`` / PIL image / numpy array / ``(C, H, W)`` tensor -> what the processor takes."""
    if isinstance(image, (str, Path)):
        text = str(image)
        if text.startswith(("http://", "https://")):
            from transformers.image_utils import load_image as hf_load_image

            return hf_load_image(text)
        path = Path(text)
        if not path.is_file():
            raise InputError(f"Image file {text!r} not found.")
        try:
            loaded = Image.open(path)
            loaded.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
            raise InputError(f"{text!r} is not an image PIL can read (JPEG, PNG, ...): {err}") from None
        return loaded
    if isinstance(image, (Image.Image, np.ndarray, torch.Tensor)):
        return image
    raise InputError(
        f"Expected an image as a file path, PIL image, numpy array (H, W[, C]) or tensor (C, H, W), got {type(image).__name__}."
    )


class PolyheadObjectDetectionPipeline(ObjectDetectionPipeline):
    """transformers' object-detection pipeline with polyhead's input handling.

    Inputs: one image (path, PIL image, numpy array, tensor) or a list of them.
    Output per image: ``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]`` in the
    input image's pixels, best first; ``threshold`` (default 0.5) drops lower scores.
    """

    def __call__(self, inputs: Any = None, **kwargs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise InputError("Got an empty list of images.")
            return super().__call__(list(inputs), **kwargs)
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 4:
            return super().__call__(list(inputs), **kwargs)
        return super().__call__(inputs, **kwargs)

    def check_model_type(self, supported_models: Any) -> None:
        # transformers' list of detection models is static; polyhead's (PyTorch or ONNX) are registered at import
        if str(getattr(self.model.config, "model_type", "")) != "polyhead-detection":
            super().check_model_type(supported_models)

    def _sanitize_parameters(self, **kwargs: Any):
        unknown = sorted(set(kwargs) - {"threshold", "timeout"})
        if unknown:
            raise InputError(f"Unknown pipeline argument(s) {unknown}; this pipeline takes threshold.")
        if "threshold" in kwargs and not 0.0 <= float(kwargs["threshold"]) <= 1.0:
            raise InputError(f"threshold must be in [0, 1], got {kwargs['threshold']}.")
        return super()._sanitize_parameters(**kwargs)

    def preprocess(self, image: Any, timeout: float | None = None) -> dict[str, Any]:
        image = to_rgb_tensor(load_image(image))
        inputs = self.image_processor(images=[image], return_tensors="pt")
        inputs["target_size"] = torch.IntTensor([list(image.shape[-2:])])
        return inputs

    def postprocess(self, model_outputs: Any, threshold: float = 0.5) -> list[dict[str, Any]]:
        detections = super().postprocess(model_outputs, threshold=threshold)
        return sorted(detections, key=lambda d: -d["score"])
