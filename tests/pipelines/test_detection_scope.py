"""The detection default's scope: on real photos holding none of its classes it should find nothing.

The photos are scikit-image sample photos that no split of the detection set used
(``benchmarks/detection_false_positives.py``, which also reports the rate).
"""

from __future__ import annotations

import pytest

from benchmarks.detection_false_positives import PHOTOS, THRESHOLD, measure



#: measured on the embedded default (benchmarks/results/detection_false_positives.json): 10 of 35 images get a box.
#: The target is 0 (issue 19, not met: retraining with such photos as negatives is the fix); this holds the line.
MEASURED_RATE = 10 / 35


@pytest.mark.slow
def test_default_false_positive_rate_on_photos_without_its_classes_does_not_grow():
    result = measure(threshold=THRESHOLD)
    assert result["images"] == 5 * len(PHOTOS)
    assert result["false_positive_rate"] <= MEASURED_RATE + 1e-9, result["boxes"]
    assert all(box["score"] >= THRESHOLD for boxes in result["boxes"].values() for box in boxes)
