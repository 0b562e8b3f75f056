"""Object detection: a pyramid backbone with an FPN neck and an anchor-free FCOS head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel, AutoModelForObjectDetection

from polyhead.configuration import register_auto_config
from polyhead.errors import ConfigError, DataError
from polyhead.export import ExportSpec
from polyhead.registry import BACKBONES, get, register_task
from polyhead.streaming import StreamRows

from .._base import Task, TaskData
from .configuration import DetectionConfig
from .data import EMBEDDED_SETS, DetectionCollator, DetectionDataset, coco_to_dataset, load_detection_source
from .metrics import DetectionMetrics
from .modeling import DetectionAdapter, DetectionOutput, PolyheadForObjectDetection, input_size_divisor
from .processing import DetectionImageProcessor, to_rgb_tensor

__all__ = [
    "DetectionAdapter",
    "DetectionConfig",
    "DetectionImageProcessor",
    "DetectionMetrics",
    "DetectionOutput",
    "DetectionTask",
    "PolyheadForObjectDetection",
    "coco_to_dataset",
    "load_detection_source",
    "to_rgb_tensor",
]

register_auto_config(DetectionConfig)
AutoModel.register(DetectionConfig, PolyheadForObjectDetection)
AutoModelForObjectDetection.register(DetectionConfig, PolyheadForObjectDetection)
AutoImageProcessor.register(DetectionConfig, image_processor_classes={"pil": DetectionImageProcessor, "torchvision": DetectionImageProcessor})
AutoFeatureExtractor.register(DetectionConfig, DetectionImageProcessor)

#: the input layout every detection backbone has: RGB images
_IMAGE_LAYOUT = {"spatial_dims": 2, "in_channels": 3}


def _processor_for(config: DetectionConfig) -> DetectionImageProcessor:
    """The processor of a model built from ``config`` (its padding multiple comes from the network's strides)."""
    return DetectionImageProcessor.from_config(config, size_divisor=input_size_divisor(config))


@register_task("detection")
class DetectionTask(Task):
    """Find objects in images: boxes, class labels and scores."""

    name = "detection"
    pipeline_task = "object-detection"
    domain = "vision"
    models = (PolyheadForObjectDetection,)
    processor_class = DetectionImageProcessor
    default_config = "detection/convnext_tiny_fcos.py"
    best_metric = "map"
    greater_is_better = True
    data_options = ("source", "root", "val_fraction", "test_fraction", "seed", "bbox_format", "max_objects", "flip_prob", "scale_range", "augment")

    def _source(self, data_section: Mapping[str, Any]):
        self.check_data_section(data_section)
        # data.root is shorthand for a COCO folder; a source other than the embedded set (`polyhead evaluate --data`) wins
        source = data_section.get("source", "detection_paste")
        if data_section.get("root") and isinstance(source, str) and source in EMBEDDED_SETS:
            source = data_section["root"]
        return load_detection_source(
            source,
            val_fraction=float(data_section.get("val_fraction", 0.1)),
            test_fraction=float(data_section.get("test_fraction", 0.1)),
            seed=int(data_section.get("seed", 0)),
            bbox_format=str(data_section.get("bbox_format", "xywh")),
        )

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> DetectionConfig:
        """Class names come from the data unless the model section sets ``id2label``; a pyramid backbone that
        omits ``spatial_dims`` / ``in_channels`` gets RGB images' (2, 3): Swin's own defaults are volumes'."""
        section = dict(model_section)
        backbone = dict(section.get("backbone") or {})
        if backbone and get(BACKBONES, backbone.get("type")).kind == "pyramid":
            section["backbone"] = {**_IMAGE_LAYOUT, **backbone}
        if "id2label" not in section:
            names = self._source(data_section).class_names
            section["id2label"] = {i: n for i, n in enumerate(names)}
        return DetectionConfig.from_model_section(section)

    def build_processor(self, config: DetectionConfig) -> DetectionImageProcessor:
        return _processor_for(config)

    def build_data(self, data_section: Mapping[str, Any], config: DetectionConfig) -> TaskData:
        source = self._source(data_section)
        model_names = [config.id2label[i] for i in range(config.num_labels)]
        if source.class_names != model_names:
            raise DataError(f"The data's classes {source.class_names} differ from the model's {model_names}.")
        processor = _processor_for(config)
        augment = bool(data_section.get("augment", True))
        scale_range = tuple(float(v) for v in data_section.get("scale_range", (0.6, 1.25)))
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ConfigError(f"data.scale_range must be (low, high) with 0 < low <= high, got {scale_range}.")
        splits = {
            name: DetectionDataset(
                source.splits[name], processor, num_classes=config.num_labels, train=(name == "train" and augment),
                flip_prob=float(data_section.get("flip_prob", 0.5)), scale_range=scale_range,
            )
            for name in ("train", "validation", "test")
        }
        collate = DetectionCollator(processor, max_objects=int(data_section.get("max_objects", 100)))
        # data.streaming: the Hub-schema rows, each image read, augmented and resized by the training split's own function
        stream = StreamRows(splits["train"].dataset, splits["train"].process)
        return TaskData(**splits, collate_fn=collate, description=source.description, train_stream=stream)

    def build_metrics(self, config: DetectionConfig) -> DetectionMetrics:
        processor = _processor_for(config)
        return DetectionMetrics(
            class_names=[config.id2label[i] for i in range(config.num_labels)],
            postprocess=lambda outputs, sizes: processor.post_process_object_detection(outputs, image_sizes=sizes),
        )

    def export_spec(self, config: DetectionConfig) -> ExportSpec:
        """Dynamic batch, height and width (multiples of the coarsest stride)."""
        divisor = input_size_divisor(config)

        def make_inputs(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
            height = sizes.get("height", 2 * divisor)
            width = sizes.get("width", 3 * divisor)
            return {"pixel_values": torch.randn(sizes["batch"], 3, height, width)}

        return ExportSpec(
            input_names=["pixel_values"],
            output_names=["logits", "box_regression", "centerness", "anchors"],
            output_class=DetectionOutput,
            make_inputs=make_inputs,
            dynamic_axes={"pixel_values": {0: "batch", 2: "height", 3: "width"}},
            example_sizes={"batch": 2, "height": 2 * divisor, "width": 3 * divisor},
            parity_sizes=[
                {"batch": 1, "height": 2 * divisor, "width": 3 * divisor},
                {"batch": 3, "height": 4 * divisor, "width": 2 * divisor},
                {"batch": 8, "height": divisor, "width": divisor},
            ],
            min_sizes={"batch": 1, "height": divisor, "width": divisor},
            multiples={"height": divisor, "width": divisor},
        )

    @classmethod
    def example_configs(cls) -> list[DetectionConfig]:
        return [DetectionConfig(
            id2label={0: "face", 1: "bag", 2: "shoe"},
            image_size=64,
            backbone={"type": "convnext", "spatial_dims": 2, "in_channels": 3, "depths": [1, 1, 1, 1], "dims": [8, 16, 16, 32]},
            head={"type": "fcos", "fpn_channels": 32, "num_convs": 1, "min_reduction": 8},
        )]
