"""False positives of the embedded detection default on real photos that hold none of its classes.

The default knows four things pasted on photographs: face, trouser, bag, sneaker
(``scripts/make_detection_dataset.py``). This benchmark runs it, at the pipeline's documented
threshold (0.5), on scikit-image sample photos that contain none of them and were used by no
split of the detection set (:data:`PHOTOS`; the training, validation and test backgrounds are
listed in ``make_detection_dataset.BACKGROUNDS``): each photo whole and its four quadrants
(35 images). It reports the fraction of images with at least one box (the false-positive
rate), the boxes per image and the highest score seen.

Needs ``pip install scikit-image`` (its wheel ships the photos). Writes
``benchmarks/results/detection_false_positives.json``. Run:
``python -m benchmarks.detection_false_positives``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "detection_false_positives.json"
#: scikit-image sample photos with no face, trouser, bag or sneaker, unused by the detection set (not ``coins``:
#: its Greek coins bear profile heads; not ``horse``: a drawn silhouette, no photo; not ``motorcycle_right``: the
#: test split's ``motorcycle_left`` scene)
PHOTOS = ("moon", "clock", "cell", "immunohistochemistry", "microaneurysms", "page", "text")
THRESHOLD = 0.5


def photos() -> list[tuple[str, np.ndarray]]:
    """``(name, RGB uint8)``: every photo of :data:`PHOTOS` whole, then its four quadrants."""
    from skimage import data
    from skimage.color import gray2rgb

    images = []
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 2:
            image = gray2rgb(image)
        image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
        h, w = image.shape[:2]
        images.append((name, image))
        for row in (0, 1):
            for col in (0, 1):
                images.append((f"{name}[{row},{col}]", image[row * h // 2 : (row + 1) * h // 2, col * w // 2 : (col + 1) * w // 2]))
    return images


def measure(detector: Any = None, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Run the default detector (or ``detector``) on :func:`photos`; the false-positive figures."""
    from PIL import Image

    import polyhead

    detector = detector or polyhead.pipeline("object-detection")
    per_image = {}
    top = 0.0
    for name, image in photos():
        all_boxes = detector(Image.fromarray(image), threshold=0.05)
        top = max([top, *(float(b["score"]) for b in all_boxes)])
        kept = [b for b in all_boxes if b["score"] >= threshold]
        per_image[name] = [{"label": b["label"], "score": round(float(b["score"]), 3)} for b in kept]
    with_boxes = sum(1 for boxes in per_image.values() if boxes)
    return {
        "threshold": threshold,
        "images": len(per_image),
        "images_with_boxes": with_boxes,
        "false_positive_rate": with_boxes / len(per_image),
        "boxes_per_image": sum(len(b) for b in per_image.values()) / len(per_image),
        "highest_score": round(top, 3),
        "boxes": {name: boxes for name, boxes in per_image.items() if boxes},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    args = parser.parse_args()
    result = measure(threshold=args.threshold)
    result["photos"] = list(PHOTOS)
    result["machine"] = {"python": platform.python_version(), "date": datetime.date.today().isoformat()}
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "boxes"}, indent=2))
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
