"""FCOS head: level selection from feature_info, anchors, loss, post-processing, construction errors."""

from __future__ import annotations

import pytest
import torch

from polyhead.errors import ConfigError
from polyhead.heads.detection import FCOSDetectionHead, fcos_postprocess

#: a stand-in pyramid: strides 4, 8, 16, 32 (ConvNeXt-like)
INFO = [{"num_chs": 8, "reduction": 4}, {"num_chs": 16, "reduction": 8}, {"num_chs": 16, "reduction": 16}, {"num_chs": 32, "reduction": 32}]


def _maps(batch=2, size=64):
    return [torch.randn(batch, f["num_chs"], size // f["reduction"], size // f["reduction"]) for f in INFO]


def test_levels_come_from_feature_info_and_anchors_tile_the_image():
    head = FCOSDetectionHead(feature_info=INFO, num_classes=3, fpn_channels=32, num_convs=1, min_reduction=8)
    assert head.levels == [1, 2, 3] and head.strides == [8, 16, 32]
    out = head(_maps(size=64))
    n = 8 * 8 + 4 * 4 + 2 * 2
    assert out["cls_logits"].shape == (2, n, 3) and out["bbox_regression"].shape == (2, n, 4)
    assert out["bbox_ctrness"].shape == (2, n) and out["anchors"].shape == (2, n, 4)
    anchors = out["anchors"][0]
    assert torch.equal(anchors[0], torch.tensor([0.0, 0.0, 8.0, 8.0]))  # first stride-8 cell
    assert torch.equal(anchors[-1], torch.tensor([32.0, 32.0, 64.0, 64.0]))  # last stride-32 cell
    assert head.num_anchors_per_level(out) == [64, 16, 4]
    assert (out["bbox_regression"] >= 0).all()  # ReLU'd distances, alive at initialisation
    assert out["bbox_regression"].mean() > 1.0

    extra = FCOSDetectionHead(feature_info=INFO, num_classes=3, fpn_channels=32, num_convs=1, extra_level=True)
    assert extra.strides == [8, 16, 32, 64] and extra(_maps(size=64))["anchors"].shape[1] == n + 1


def test_loss_learns_one_box():
    torch.manual_seed(0)
    head = FCOSDetectionHead(feature_info=INFO, num_classes=2, fpn_channels=32, num_convs=1)
    maps = _maps(batch=1, size=64)
    target = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 44.0]]), "labels": torch.tensor([1])}]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        losses = head.loss(head(maps), target)
        first = first if first is not None else {k: float(v.detach()) for k, v in losses.items()}
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert set(losses) == {"loss", "classification", "bbox_regression", "bbox_ctrness"}
    assert float(losses["bbox_regression"].detach()) < 0.5 * first["bbox_regression"]
    head.eval()
    with torch.no_grad():
        out = head(maps)
    best = fcos_postprocess(out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"], out["anchors"], image_sizes=[(64, 64)])[0]
    assert int(best["labels"][0]) == 1
    from torchvision.ops import box_iou

    assert float(box_iou(best["boxes"][:1], target[0]["boxes"])) > 0.5


def test_images_without_objects_give_a_finite_loss():
    head = FCOSDetectionHead(feature_info=INFO, num_classes=2, fpn_channels=32, num_convs=1)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    losses = head.loss(head(_maps()), [empty, empty])
    assert torch.isfinite(losses["loss"]) and float(losses["bbox_regression"]) == 0.0


def test_postprocess_clips_thresholds_and_ignores_padding():
    head = FCOSDetectionHead(feature_info=INFO, num_classes=2, fpn_channels=32, num_convs=1)
    out = head(_maps(batch=2))
    results = fcos_postprocess(out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"], out["anchors"],
                               score_threshold=0.0, image_sizes=[(40, 24), (64, 64)], detections_per_image=7)
    assert len(results) == 2 and all(len(r["scores"]) <= 7 for r in results)
    boxes = results[0]["boxes"]
    assert (boxes[:, 0::2] <= 24).all() and (boxes[:, 1::2] <= 40).all() and (boxes >= 0).all()
    assert (results[0]["scores"][:-1] >= results[0]["scores"][1:]).all()
    none = fcos_postprocess(out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"], out["anchors"], score_threshold=1.0)
    assert all(r["boxes"].shape == (0, 4) for r in none)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_reduction": 64}, r"reduction >= 64.*Lower head.min_reduction"),
        ({"fpn_channels": 48}, "multiple of 32"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"prior_probability": 1.0}, "prior_probability"),
        ({"initial_distance": -1.0}, "initial_distance"),
    ],
)
def test_bad_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FCOSDetectionHead(feature_info=INFO, **{"num_classes": 2, "fpn_channels": 32, **kwargs})


def test_strides_must_double():
    with pytest.raises(ConfigError, match="double"):
        FCOSDetectionHead(feature_info=[{"num_chs": 8, "reduction": 8}, {"num_chs": 8, "reduction": 32}], num_classes=2, fpn_channels=32)
    with pytest.raises(ConfigError, match="feature_info"):
        FCOSDetectionHead(feature_info=[], num_classes=2)
