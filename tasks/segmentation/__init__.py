"""3D medical image segmentation: pyramid backbone (Swin, ConvNeXt) + UNETR decoder, MONAI pre/post-processing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoFeatureExtractor, AutoModel

from polyhead.configuration import register_auto_config
from polyhead.errors import ConfigError
from polyhead.export import ExportSpec
from polyhead.registry import register_task
from polyhead.streaming import StreamRows

from .._base import Task, TaskData
from .configuration import SegmentationConfig
from .data import (
    EMBEDDED_ROOT,
    Case,
    SegmentationPatches,
    SegmentationVolumes,
    check_label_values,
    describe,
    preprocessed_length,
    read_msd_folder,
    read_nifti_dataset,
    region_bounds,
    split_cases,
    synthetic_splits,
)
from .inference import SegmentationInferer
from .metrics import SegmentationMetrics
from .modeling import PolyheadForSegmentation, SegmentationAdapter, SegmentationOutput
from .processing import SegmentationProcessor, load_volume
from .synthesis import SynthesisOptions

__all__ = [
    "SegmentationAdapter",
    "SegmentationConfig",
    "SegmentationInferer",
    "SegmentationMetrics",
    "SegmentationOutput",
    "SegmentationProcessor",
    "SegmentationTask",
    "PolyheadForSegmentation",
    "load_volume",
]

register_auto_config(SegmentationConfig)
AutoModel.register(SegmentationConfig, PolyheadForSegmentation)
AutoFeatureExtractor.register(SegmentationConfig, SegmentationProcessor)

_SPLITS = ("cases", "regions")


def _data_source(data_section: Mapping[str, Any]) -> Any:
    """The Decathlon folder ``data.source`` names (``data.root``: the older name; ``source`` wins), or ``None`` (embedded)."""
    return data_section.get("source", data_section.get("root"))


def _uses_synthesis(data_section: Mapping[str, Any]) -> bool:
    """``data.synthesis`` builds heads around ``data.root`` unless a folder is named by ``data.source`` (``polyhead evaluate
    --data``: that folder's own volumes are evaluated)."""
    return bool(data_section.get("synthesis")) and "source" not in data_section and "dataset" not in data_section


def _uses_dataset(data_section: Mapping[str, Any]) -> bool:
    """``data.dataset`` (a ``datasets`` dataset) is read unless a folder is named by ``data.source`` (``polyhead evaluate --data``)."""
    return "dataset" in data_section and "source" not in data_section


@register_task("segmentation")
class SegmentationTask(Task):
    """Label every voxel of a 3D volume (MRI, CT)."""

    name = "segmentation"
    pipeline_task = "segmentation"
    domain = "medical-imaging"
    models = (PolyheadForSegmentation,)
    processor_class = SegmentationProcessor
    default_config = "segmentation/swin_tiny_brain.py"
    best_metric = "dice"
    greater_is_better = True
    #: ``source``: a Decathlon folder (``root`` is its older name, still read); ``dataset``: a ``datasets`` dataset;
    #: ``synthesis``: train on whole heads synthesised around ``root``'s first case (:mod:`.synthesis`)
    data_options = (
        "source", "root", "dataset", "split", "val_fraction", "test_fraction", "region_axis", "region_margin",
        "patches_per_volume", "cache_volumes", "seed", "synthesis",
    )

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> SegmentationConfig:
        """Label names and channels come from the data's ``dataset.json`` unless the model section sets them."""
        self.check_data_section(data_section)
        section = dict(model_section)
        if not _uses_dataset(data_section):
            folder = read_msd_folder(_data_source(data_section))
            section.setdefault("labels", folder.labels)
            section.setdefault("in_channels", folder.in_channels)  # the config fills the backbone's in_channels from it
        return SegmentationConfig.from_model_section(section)

    def build_processor(self, config: SegmentationConfig) -> SegmentationProcessor:
        return SegmentationProcessor.from_config(config)

    def _cases(self, data_section: Mapping[str, Any], config: SegmentationConfig) -> tuple[list[Case], str]:
        if _uses_dataset(data_section):
            return read_nifti_dataset(data_section["dataset"]), "datasets"
        source = _data_source(data_section)
        folder = read_msd_folder(source)
        if folder.labels != config.labels:
            raise ConfigError(f"The model's labels {config.labels} differ from the data's {folder.labels} (dataset.json).")
        return folder.cases, str(source or EMBEDDED_ROOT)

    def build_data(self, data_section: Mapping[str, Any], config: SegmentationConfig) -> TaskData:
        self.check_data_section(data_section)
        processor = self.build_processor(config)
        cases, source = self._cases(data_section, config)
        if _uses_synthesis(data_section):  # whole-head synthesis: its own three splits
            train, validation, test, splits = synthetic_splits(
                data_section.get("root"), SynthesisOptions.from_section(data_section["synthesis"]), processor,
                seed=int(data_section.get("seed", 0)), cache_volumes=int(data_section.get("cache_volumes", 2)),
            )
            description = {"source": source, "split": "synthesis", "splits": splits, "labels": config.labels}
            # data.streaming: synthetic patch i is seeded by (data.seed, i) alone, wherever it streams
            return TaskData(train=train, validation=validation, test=test, description=description, eval_batch_size=1,
                            train_stream=StreamRows.of_indices(train))
        for case in cases:  # a label map with unknown values fails now, not mid-training
            check_label_values(case, len(config.labels))
        split = data_section.get("split", "regions" if len(cases) < 3 else "cases")
        if split not in _SPLITS:
            raise ConfigError(f"data.split must be one of {', '.join(_SPLITS)}, got {split!r}.")
        val_fraction = float(data_section.get("val_fraction", 0.15))
        test_fraction = float(data_section.get("test_fraction", 0.2))
        seed = int(data_section.get("seed", 0))
        if split == "cases":
            train_ids, val_ids, test_ids = split_cases(len(cases), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
            groups = {"train": [cases[i] for i in train_ids], "validation": [cases[i] for i in val_ids], "test": [cases[i] for i in test_ids]}
        else:
            axis = int(data_section.get("region_axis", 1))
            if axis not in (0, 1, 2):
                raise ConfigError(f"data.region_axis must be 0, 1 or 2 (RAS axes), got {axis!r}.")
            margin = int(data_section.get("region_margin", 4))
            groups = {"train": [], "validation": [], "test": []}
            for case in cases:
                bounds = region_bounds(preprocessed_length(case, processor, axis), val_fraction=val_fraction, test_fraction=test_fraction, margin=margin)
                for name, (start, stop) in bounds.items():
                    groups[name].append(Case(image=case.image, label=case.label, name=case.name, region=(axis, start, stop)))
        cache = int(data_section.get("cache_volumes", 2))
        train = SegmentationPatches(
            groups["train"], processor, patches_per_volume=int(data_section.get("patches_per_volume", 16)), cache_volumes=cache, seed=seed
        )
        return TaskData(
            train=train,
            # data.streaming: patch draws (MONAI's random crop, flip, intensity) reseeded per sample from its place in the stream
            train_stream=StreamRows.of_indices(train, reseeded=[train.transform]),
            validation=SegmentationVolumes(groups["validation"], processor, cache_volumes=cache),
            test=SegmentationVolumes(groups["test"], processor, cache_volumes=cache),
            description={"source": source, "split": split, "splits": describe(groups), "labels": config.labels},
            eval_batch_size=1,  # whole volumes of different sizes
        )

    def build_metrics(self, config: SegmentationConfig) -> SegmentationMetrics:
        return SegmentationMetrics(labels=config.labels, spacing=config.target_spacing)

    def export_spec(self, config: SegmentationConfig) -> ExportSpec:
        """The patch network: patch size fixed, the sliding-window batch dynamic."""

        def make_inputs(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
            return {"pixel_values": torch.rand(sizes["batch"], config.in_channels, *config.patch_size)}

        return ExportSpec(
            input_names=["pixel_values"],
            output_names=["logits"],
            output_class=SegmentationOutput,
            make_inputs=make_inputs,
            dynamic_axes={"pixel_values": {0: "batch"}},
            parity_sizes=[{"batch": 1}, {"batch": 3}, {"batch": 4}],
            latency_batches=(1, 4),  # one patch, and one sliding-window batch
            latency_repeats=5,
        )

    def inferer(self, config: SegmentationConfig) -> SegmentationInferer:
        """Whole volumes through the patch network: MONAI's sliding window with the config's settings."""
        return SegmentationInferer(config)

    @classmethod
    def example_configs(cls) -> list[SegmentationConfig]:
        return [SegmentationConfig(
            patch_size=[32, 32, 32],
            sw_overlap=0.0,
            # ConvNeXt keeps the registry-wide export tests fast; the Swin default is exported by the pipeline tests
            backbone={"type": "convnext", "depths": [1, 1, 1, 1], "dims": [8, 16, 16, 32]},
            # the coarsest map (one voxel of a 32^3 patch) skips its instance-normed block, on any backbone (Swin-UNETR style)
            head={"type": "unetr_decoder", "feature_size": 8, "identity_skip_levels": [-1]},
        )]
