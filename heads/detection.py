"""Object detection: a feature pyramid neck and an anchor-free FCOS head, built from torchvision's parts.

Reference: Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection"
(ICCV 2019; TPAMI 2020 for centre sampling and GIoU). The neck is torchvision's
``FeaturePyramidNetwork``, the towers and loss are torchvision's ``FCOSHead``
(classification / regression / centerness towers, sigmoid focal loss, GIoU loss,
``BoxLinearCoder``) and the target assignment is torchvision's ``FCOS.compute_loss``
(centre sampling, one scale range per level). polyhead adds only what torchvision
keeps inside its mode-dependent ``FCOS`` model: choosing the pyramid levels from the
backbone's ``feature_info`` and laying out the anchor points, so that ``forward`` is
tensors in, tensors out in train and eval alike. Box decoding, score thresholds and
NMS are post-processing (:func:`fcos_postprocess`), shared by the PyTorch and ONNX backends.
"""

from __future__ import annotations

import math

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from polyhead.backbones._base import FeatureInfo
from polyhead.errors import ConfigError
from polyhead.registry import register_head
from polyhead.validation import check_positive

from ._base import Head

__all__ = ["FCOSDetectionHead", "fcos_postprocess", "DetectionTarget"]

#: one image's ground truth: ``{"boxes": (M, 4) xyxy in input pixels, "labels": (M,) int64}``
DetectionTarget = dict


@register_head("fcos")
class FCOSDetectionHead(Head):
    """FPN neck + FCOS head over the pyramid levels with ``reduction >= min_reduction``.

    Args:
        feature_info: the backbone's ``feature_info`` (pyramid maps, finest first).
        num_classes: number of object classes ``K`` (no background class: sigmoid scores).
        fpn_channels: channels of every pyramid level (a multiple of 32: the towers use GroupNorm(32)).
        num_convs: convolutions in each of the classification and regression towers.
        min_reduction: the finest stride used (e.g. 8 skips ConvNeXt's stride-4 map).
        extra_level: add one coarser level by max-pooling the last (torchvision's ``LastLevelMaxPool``).
        center_sampling_radius: FCOS centre sampling radius, in strides.
        prior_probability: initial foreground probability of the classifier.
        initial_distance: initial box-side distance predicted at every location, in strides. torchvision
            starts at ~0 (degenerate boxes whose GIoU gradient is nearly nil); with Adam-style optimisers
            the ReLU'd regression then dies within a few steps, so polyhead starts from 2-stride sides.

    Shapes:
        ``forward(feature_maps)`` with maps ``(B, C_i, H / r_i, W / r_i)`` returns a dict:
        ``cls_logits (B, N, K)``, ``bbox_regression (B, N, 4)`` (left, top, right, bottom
        distances in anchor sizes, >= 0), ``bbox_ctrness (B, N)`` (logits) and
        ``anchors (B, N, 4)`` (one stride-sized box per location, xyxy input pixels), where
        ``N = sum_l (H / s_l) (W / s_l)`` over the used strides ``s_l``.

    Example:
        >>> head = FCOSDetectionHead(feature_info=[{"num_chs": 16, "reduction": 8}, {"num_chs": 32, "reduction": 16}], num_classes=3)
        >>> out = head([torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)])
        >>> out["cls_logits"].shape, out["anchors"].shape
        (torch.Size([2, 80, 3]), torch.Size([2, 80, 4]))
    """

    accepted_kinds = frozenset({"pyramid"})

    def __init__(
        self,
        *,
        feature_info: Sequence[FeatureInfo],
        num_classes: int,
        fpn_channels: int = 64,
        num_convs: int = 2,
        min_reduction: int = 8,
        extra_level: bool = False,
        center_sampling_radius: float = 1.5,
        prior_probability: float = 0.01,
        initial_distance: float = 2.0,
    ) -> None:
        from torchvision.models.detection.fcos import FCOSHead  # torchvision loads on first use, not at `import polyhead`
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__(feature_info=feature_info)
        check_positive("num_classes", num_classes)
        check_positive("fpn_channels", fpn_channels)
        check_positive("num_convs", num_convs)
        if fpn_channels % 32:
            raise ConfigError(f"fpn_channels must be a multiple of 32 (FCOS towers use GroupNorm with 32 groups), got {fpn_channels}.")
        if not 0.0 < prior_probability < 1.0:
            raise ConfigError(f"prior_probability must be in (0, 1), got {prior_probability}.")
        if center_sampling_radius <= 0:
            raise ConfigError(f"center_sampling_radius must be > 0, got {center_sampling_radius}.")
        self.levels = [i for i, f in enumerate(self.feature_info) if f["reduction"] >= min_reduction]
        if not self.levels:
            raise ConfigError(
                f"FCOSDetectionHead uses backbone maps with reduction >= {min_reduction}; the backbone gives "
                f"{[f['reduction'] for f in self.feature_info]}. Lower head.min_reduction."
            )
        reductions = [self.feature_info[i]["reduction"] for i in self.levels]
        if any(b != 2 * a for a, b in zip(reductions, reductions[1:])):
            raise ConfigError(f"FCOSDetectionHead needs maps whose strides double from level to level, got {reductions}.")
        self.strides = reductions + ([2 * reductions[-1]] if extra_level else [])
        self.num_classes = num_classes
        self.center_sampling_radius = center_sampling_radius  # read by torchvision's FCOS.compute_loss
        self.fpn = FeaturePyramidNetwork(
            [self.feature_info[i]["num_chs"] for i in self.levels],
            fpn_channels,
            extra_blocks=LastLevelMaxPool() if extra_level else None,
        )
        self.head = FCOSHead(fpn_channels, num_anchors=1, num_classes=num_classes, num_convs=num_convs)
        if initial_distance < 0:
            raise ConfigError(f"initial_distance must be >= 0, got {initial_distance}.")
        self.initial_distance = float(initial_distance)
        self.prior_probability = float(prior_probability)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's FCOS and FPN initialisation, with polyhead's box-distance and class priors.

        FPN convolutions: Kaiming uniform (a=1), zero bias; the towers and outputs: normal (std 0.01),
        zero bias; the class logits' bias ``-log((1 - p) / p)`` (focal-loss prior), the box bias ``initial_distance``.
        """
        for module in self.fpn.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.constant_(module.bias, 0.0)
        classification, regression = self.head.classification_head, self.head.regression_head
        for module in [*classification.conv.modules(), *regression.conv.modules(), classification.cls_logits,
                       regression.bbox_reg, regression.bbox_ctrness]:
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(classification.cls_logits.bias, -math.log((1 - self.prior_probability) / self.prior_probability))
        nn.init.constant_(regression.bbox_reg.bias, self.initial_distance)

    @property
    def size_divisor(self) -> int:
        """Input sizes must be multiples of the coarsest stride."""
        return self.strides[-1]

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"num_classes": 3, "fpn_channels": 32, "num_convs": 1, "min_reduction": 1}

    @classmethod
    def example_backbone_overrides(cls) -> dict:
        return {"spatial_dims": 2}

    def _anchors(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(N, 4)`` stride-sized boxes centred on each location (torchvision's FCOS anchors, + half a stride)."""
        anchors = []
        for fmap, stride in zip(maps, self.strides):
            height, width = fmap.shape[-2:]
            ys = (torch.arange(height, device=fmap.device, dtype=fmap.dtype) + 0.5) * stride
            xs = (torch.arange(width, device=fmap.device, dtype=fmap.dtype) + 0.5) * stride
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 4)
            half = torch.tensor([-0.5, -0.5, 0.5, 0.5], device=fmap.device, dtype=fmap.dtype) * stride
            anchors.append(centres + half)
        return torch.cat(anchors, dim=0)

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(feature_maps) != len(self.feature_info):
            raise ConfigError(f"FCOSDetectionHead was built for {len(self.feature_info)} feature maps, got {len(feature_maps)}.")
        pyramid = self.fpn(OrderedDict((str(i), feature_maps[i]) for i in self.levels))
        maps = list(pyramid.values())
        out = self.head(maps)
        anchors = self._anchors(maps)
        batch = maps[0].shape[0]
        return {
            "cls_logits": out["cls_logits"],
            "bbox_regression": out["bbox_regression"],
            "bbox_ctrness": out["bbox_ctrness"].squeeze(-1),
            "anchors": anchors.unsqueeze(0).expand(batch, -1, -1),
        }

    def example_targets(self, outputs: dict[str, torch.Tensor]) -> list[DetectionTarget]:
        anchors = outputs["anchors"]
        extent = float(anchors[0, :, 2:].max())
        targets = []
        for i in range(anchors.shape[0]):
            xy = torch.rand(2, 2) * extent * 0.5
            wh = torch.rand(2, 2) * extent * 0.4 + 4
            targets.append({"boxes": torch.cat([xy, xy + wh], dim=1), "labels": torch.randint(0, self.num_classes, (2,))})
        targets[-1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}  # an image without objects
        return targets

    def num_anchors_per_level(self, outputs: dict[str, torch.Tensor]) -> list[int]:
        sizes = outputs["anchors"][0, :, 2] - outputs["anchors"][0, :, 0]
        return [int(n) for n in torch.unique_consecutive(sizes, return_counts=True)[1]]

    def loss(self, outputs: dict[str, torch.Tensor], targets: Sequence[DetectionTarget]) -> dict[str, torch.Tensor]:
        """FCOS loss: focal classification + GIoU regression + centerness BCE, each per foreground location.

        Args:
            outputs: :meth:`forward`'s dict.
            targets: one ``{"boxes": (M, 4) xyxy, "labels": (M,)}`` per image (``M`` may be 0).
        """
        if len(targets) != outputs["cls_logits"].shape[0]:
            raise ConfigError(f"Got {len(targets)} targets for a batch of {outputs['cls_logits'].shape[0]} images.")
        head_outputs = {
            "cls_logits": outputs["cls_logits"],
            "bbox_regression": outputs["bbox_regression"],
            "bbox_ctrness": outputs["bbox_ctrness"].unsqueeze(-1),
        }
        dtype = outputs["anchors"].dtype
        targets = [{"boxes": t["boxes"].to(dtype), "labels": t["labels"].long()} for t in targets]
        anchors = list(outputs["anchors"].unbind(0))
        from torchvision.models.detection.fcos import FCOS

        parts = FCOS.compute_loss(self, targets, head_outputs, anchors, self.num_anchors_per_level(outputs))
        return {"loss": sum(parts.values()), **parts}


def fcos_postprocess(
    cls_logits: torch.Tensor,
    bbox_regression: torch.Tensor,
    bbox_ctrness: torch.Tensor,
    anchors: torch.Tensor,
    *,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.6,
    topk_candidates: int = 1000,
    detections_per_image: int = 100,
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Decode FCOS outputs into detections per image (torchvision's ``FCOS.postprocess_detections``, batched).

    Scores are ``sqrt(sigmoid(cls) * sigmoid(ctrness))``; boxes are decoded with
    ``BoxLinearCoder``, clipped to ``image_sizes`` (the un-padded input size ``(h, w)`` per image),
    thresholded, reduced by class-wise NMS and cut to ``detections_per_image``.

    Args:
        cls_logits: ``(B, N, K)``; bbox_regression: ``(B, N, 4)``; bbox_ctrness: ``(B, N)``; anchors: ``(B, N, 4)``.

    Returns:
        one ``{"scores": (D,), "labels": (D,), "boxes": (D, 4) xyxy}`` per image, in input pixels.
    """
    from torchvision.models.detection import _utils as det_utils
    from torchvision.ops import batched_nms

    coder = det_utils.BoxLinearCoder(normalize_by_size=True)
    results = []
    for i in range(cls_logits.shape[0]):
        scores = torch.sqrt(torch.sigmoid(cls_logits[i].float()) * torch.sigmoid(bbox_ctrness[i].float())[:, None]).flatten()
        anchor = anchors[i].float()
        if image_sizes is not None:  # locations in the padding hold no objects
            height, width = image_sizes[i]
            centres = (anchor[:, :2] + anchor[:, 2:]) / 2
            inside = (centres[:, 0] < width) & (centres[:, 1] < height)
            scores = scores * inside.repeat_interleave(cls_logits.shape[-1]).to(scores.dtype)
        keep = scores > score_threshold
        scores, index = scores[keep], torch.nonzero(keep).flatten()
        top = min(topk_candidates, index.numel())
        scores, order = scores.topk(top)
        index = index[order]
        location, labels = index // cls_logits.shape[-1], index % cls_logits.shape[-1]
        boxes = coder.decode(bbox_regression[i, location].float(), anchor[location])
        if image_sizes is not None:
            height, width = image_sizes[i]
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        kept = batched_nms(boxes, scores, labels, nms_threshold)[:detections_per_image]
        results.append({"scores": scores[kept], "labels": labels[kept], "boxes": boxes[kept]})
    return results


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """COCO ``(x, y, w, h)`` -> ``(x0, y0, x1, y1)``."""
    from torchvision.ops import box_convert

    return box_convert(boxes, "xywh", "xyxy")
