"""``object-detection`` pipeline: an image in, scored and labelled boxes out (input pixels).

polyhead's detectors honour transformers' own ``ObjectDetectionPipeline`` contract, so
``transformers.pipeline("object-detection", model=<polyhead model dir>)`` works as is;
this subclass, which ``polyhead.pipeline("object-detection")`` builds, adds numpy and
tensor inputs, http(s) URLs fetched with a timeout, and clear
:class:`~polyhead.errors.InputError` messages for bad files, URLs and arguments.

Example:
    >>> import polyhead
    >>> detect = polyhead.pipeline("object-detection")          # the embedded default model
    >>> detect("photo.jpg", threshold=0.5)
    [{'score': 0.91, 'label': 'face', 'box': {'xmin': 12, 'ymin': 40, 'xmax': 70, 'ymax': 101}}, ...]
    >>> detect("https://example.com/photo.jpg", timeout=3)      # gives up after 3 s without an answer
"""

from __future__ import annotations

import http.client
import io
import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers.pipelines.object_detection import ObjectDetectionPipeline

from polyhead.errors import InputError
from polyhead.tasks.detection.processing import to_rgb_tensor

__all__ = ["ObjectDetectionPipeline", "PolyheadObjectDetectionPipeline", "draw_detections", "load_image", "fetch_url", "DEFAULT_TIMEOUT_S", "MAX_DOWNLOAD_BYTES"]

#: the colours boxes are drawn in, one per label in order of first appearance
PALETTE = [(255, 64, 64), (64, 160, 255), (255, 200, 0), (200, 64, 255), (0, 200, 120), (255, 128, 0), (0, 220, 220), (255, 0, 160)]

#: seconds an image URL may take to connect, to send each piece, and to download in all, unless ``timeout=`` says otherwise
DEFAULT_TIMEOUT_S = 10.0
#: largest image download accepted (bytes)
MAX_DOWNLOAD_BYTES = 200 * 2**20


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """The body of an http(s) URL, or an :class:`InputError` that says why not.

    ``timeout`` bounds the connection, every wait for more data, and the whole download
    (checked between reads, so a slow trickle is cut off too); bodies over
    :data:`MAX_DOWNLOAD_BYTES` are refused.
    """
    too_slow = InputError(
        f"Fetching {url} timed out after {timeout:g} s; pass a larger timeout= (seconds) or download the image and pass its path."
    )
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "polyhead"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_DOWNLOAD_BYTES:
                raise InputError(f"{url} is {int(declared)} bytes, more than the {MAX_DOWNLOAD_BYTES} accepted for an image.")
            body = bytearray()
            while piece := response.read1(1 << 16):  # what has arrived (read() would wait for all 64 KiB)
                body += piece
                if len(body) > MAX_DOWNLOAD_BYTES:
                    raise InputError(f"{url} sent more than the {MAX_DOWNLOAD_BYTES} bytes accepted for an image.")
                if time.monotonic() > deadline:
                    raise too_slow
            return bytes(body)
    except InputError:
        raise
    except urllib.error.HTTPError as err:
        raise InputError(f"Could not fetch {url}: HTTP {err.code} {err.reason}.") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise too_slow from None
        raise InputError(f"Could not fetch {url}: {err.reason}.") from None
    except TimeoutError:
        raise too_slow from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise InputError(f"Could not fetch {url}: {type(err).__name__}: {err}.") from None


def _open(source: Any, what: str) -> Image.Image:
    try:
        loaded = Image.open(source)
        loaded.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise InputError(f"{what} is not an image PIL can read (JPEG, PNG, ...): {err}") from None
    return loaded


def load_image(image: Any, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """A path / http(s) URL / ``pathlib.Path`` / PIL image / numpy array / ``(C, H, W)`` tensor -> what the processor takes.

    URLs are fetched with :func:`fetch_url` (``timeout`` seconds at most).
    """
    if isinstance(image, (str, Path)):
        text = str(image)
        if text.lower().startswith(("http://", "https://")):
            return _open(io.BytesIO(fetch_url(text, timeout)), f"The content of {text}")
        path = Path(text)
        if not path.is_file():
            raise InputError(f"Image file {text!r} not found.")
        return _open(path, repr(text))
    if isinstance(image, (Image.Image, np.ndarray, torch.Tensor)):
        return image
    raise InputError(
        f"Expected an image as a file path, http(s) URL, PIL image, numpy array (H, W[, C]) or tensor (C, H, W), got {type(image).__name__}."
    )


class PolyheadObjectDetectionPipeline(ObjectDetectionPipeline):
    """transformers' object-detection pipeline with polyhead's input handling.

    Inputs: one image (path, http(s) URL, PIL image, numpy array, tensor), a list of them,
    or a 4-D batch array / tensor.
    Output per image: ``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]`` in the
    input image's pixels, best first.

    Arguments:
        threshold: a number in ``[0, 1]`` (default 0.5); lower scores are dropped.
        timeout: for URLs, the seconds (a positive number, default 10) to wait for the
            server to connect, for each piece of data, and for the whole download; past it
            the call raises :class:`~polyhead.errors.InputError` instead of hanging.
            Unreachable servers, refused connections and HTTP errors are ``InputError`` too.
    """

    def __call__(self, inputs: Any = None, **kwargs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise InputError("Got an empty list of images.")
            return super().__call__(list(inputs), **kwargs)
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 4:
            if len(inputs) == 0:
                raise InputError(f"Got an empty batch of images (shape {tuple(inputs.shape)}); a 4-D batch needs at least one image.")
            return super().__call__(list(inputs), **kwargs)
        return super().__call__(inputs, **kwargs)

    def check_model_type(self, supported_models: Any) -> None:
        # transformers' list of detection models is static; polyhead's (PyTorch or ONNX) are registered at import
        if str(getattr(self.model.config, "model_type", "")) != "polyhead-detection":
            super().check_model_type(supported_models)

    def _sanitize_parameters(self, **kwargs: Any):
        unknown = sorted(set(kwargs) - {"threshold", "timeout"})
        if unknown:
            raise InputError(f"Unknown pipeline argument(s) {unknown}; this pipeline takes threshold, timeout.")
        if "threshold" in kwargs:
            threshold = kwargs["threshold"]
            if not _is_number(threshold) or not 0.0 <= float(threshold) <= 1.0:
                raise InputError(f"threshold must be a number in [0, 1], got {threshold!r}.")
        if "timeout" in kwargs:
            timeout = kwargs["timeout"]
            if not _is_number(timeout) or not (math.isfinite(timeout) and timeout > 0):
                raise InputError(f"timeout must be a positive number of seconds (default {DEFAULT_TIMEOUT_S:g}), got {timeout!r}.")
        return super()._sanitize_parameters(**kwargs)

    def preprocess(self, image: Any, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        image = to_rgb_tensor(load_image(image, timeout=float(timeout)))
        inputs = self.image_processor(images=[image], return_tensors="pt")
        inputs["target_size"] = torch.IntTensor([list(image.shape[-2:])])
        return inputs

    def postprocess(self, model_outputs: Any, threshold: float = 0.5) -> list[dict[str, Any]]:
        detections = super().postprocess(model_outputs, threshold=threshold)
        return sorted(detections, key=lambda d: -d["score"])


def draw_detections(image: Any, detections: list[dict[str, Any]], *, out: str | Path | None = None, width: int = 2) -> Image.Image:
    """Draw a detection pipeline's boxes on ``image``: a box, a label and a score per detection, a colour per label.

    Args:
        image: what the pipeline was given (a path, URL, PIL image, array or tensor).
        detections: the pipeline's output for that image (``[{"score", "label", "box"}]``, input pixels).
        out: also save the picture there (``.jpg`` / ``.png``).
        width: line width in pixels.

    Returns:
        An RGB ``PIL.Image`` (a copy: the input is not changed).

    Example:
        >>> detect = polyhead.pipeline("object-detection")
        >>> draw_detections("photo.jpg", detect("photo.jpg"), out="photo_boxes.jpg")
    """
    from PIL import ImageDraw

    picture = Image.fromarray(to_rgb_tensor(load_image(image)).permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(picture)
    colours: dict[str, tuple[int, int, int]] = {}
    for detection in detections:
        try:
            box, label, score = detection["box"], str(detection["label"]), float(detection["score"])
            corners = [float(box["xmin"]), float(box["ymin"]), float(box["xmax"]), float(box["ymax"])]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"Each detection must be {{'score', 'label', 'box': {{xmin, ymin, xmax, ymax}}}} as the pipeline returns it, got {detection!r}.") from None
        colour = colours.setdefault(label, PALETTE[len(colours) % len(PALETTE)])
        draw.rectangle(corners, outline=colour, width=width)
        draw.text((corners[0] + 2, corners[1] + 1), f"{label} {score:.2f}", fill=colour)
    if out is not None:
        target = Path(out)
        if target.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            raise InputError(f"out must be a .jpg or .png path, got {str(out)!r}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, **({"quality": 90} if target.suffix.lower() in (".jpg", ".jpeg") else {}))
    return picture
