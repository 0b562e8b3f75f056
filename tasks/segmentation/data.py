"""Segmentation data: Medical Segmentation Decathlon folders and ``datasets`` NIfTI datasets.

Volumes are read one at a time when a sample needs them (a small LRU cache keeps the
last preprocessed ones), so a dataset never has to fit in memory. Training samples are
random patches; validation and test samples are whole (preprocessed) volumes, segmented
with the sliding window.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialCropd
from torch.utils.data import Dataset

from polyhead.errors import DataError, InputError

from .processing import SegmentationProcessor, load_volume
from .synthesis import HeadAnatomy, SynthesisOptions, SynthesisPatches, phantom_head, synthetic_head

__all__ = [
    "EMBEDDED_ROOT",
    "Case",
    "MSDFolder",
    "read_msd_folder",
    "read_nifti_dataset",
    "split_cases",
    "region_bounds",
    "SegmentationPatches",
    "SegmentationVolumes",
    "SYNTHESIS_SEEDS",
    "synthetic_splits",
]

#: The embedded set: the MNI ICBM152 2009a T1 template at 2 mm, grey/white matter labels.
EMBEDDED_ROOT = "mni152_2mm"


@dataclass(frozen=True)
class Case:
    """One labelled volume: NIfTI paths (or nibabel images), and optionally a slab of it.

    ``region = (axis, start, stop)`` keeps voxels ``start:stop`` along RAS ``axis`` of the
    preprocessed volume (the region split of a single-volume dataset).
    """

    image: Any
    label: Any
    name: str
    region: tuple[int, int, int] | None = None


@dataclass
class MSDFolder:
    cases: list[Case]
    labels: list[str]
    in_channels: int
    name: str


def _embedded_root() -> Path:
    return Path(str(resources.files("polyhead") / "assets" / EMBEDDED_ROOT))


def read_msd_folder(root: str | os.PathLike | None) -> MSDFolder:
    """Read ``dataset.json`` and check every training image and label file exists."""
    folder = _embedded_root() if root in (None, EMBEDDED_ROOT) else Path(root)
    meta_path = folder / "dataset.json"
    if not folder.is_dir():
        raise DataError(f"data.source {folder} is not a folder; expected a Medical Segmentation Decathlon folder (dataset.json, imagesTr/, labelsTr/).")
    if not meta_path.is_file():
        raise DataError(f"{folder} has no dataset.json; expected the Medical Segmentation Decathlon layout (dataset.json, imagesTr/, labelsTr/).")
    try:
        meta = json.loads(meta_path.read_text())
        labels_map = {int(k): str(v) for k, v in meta["labels"].items()}
        entries = meta["training"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{meta_path} is not a Decathlon dataset.json (needs 'labels' {{value: name}} and 'training' [{{image, label}}]): {exc}") from exc
    if sorted(labels_map) != list(range(len(labels_map))):
        raise DataError(f"{meta_path}: label values must be 0..K-1 without gaps, got {sorted(labels_map)}.")
    if not entries:
        raise DataError(f"{meta_path} lists no training cases.")
    cases = []
    for entry in entries:
        image, label = folder / entry["image"], folder / entry["label"]
        for kind, path in (("image", image), ("label", label)):
            if not path.is_file():
                raise DataError(f"{meta_path} lists {kind} {entry[kind]!r}, but {path} does not exist.")
        cases.append(Case(image=str(image), label=str(label), name=image.name.split(".nii")[0]))
    channels = len(meta.get("modality", {"0": "image"})) or 1
    return MSDFolder(cases=cases, labels=[labels_map[i] for i in range(len(labels_map))], in_channels=channels, name=str(meta.get("name", folder.name)))


def read_nifti_dataset(source: Any) -> list[Case]:
    """Cases from a ``datasets`` dataset (or a saved one's path) with ``image`` and ``label`` columns.

    The columns may be ``datasets.Nifti`` features (decoded to nibabel images) or file paths.
    """
    import datasets

    dataset = datasets.load_from_disk(str(source)) if isinstance(source, (str, os.PathLike)) else source
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"]
    if not isinstance(dataset, datasets.Dataset):
        raise DataError(f"data.dataset must be a datasets.Dataset or a saved one's path, got {type(dataset).__name__}.")
    missing = {"image", "label"} - set(dataset.column_names)
    if missing:
        raise DataError(f"The segmentation dataset needs 'image' and 'label' columns; missing {sorted(missing)} (has {dataset.column_names}).")
    if len(dataset) == 0:
        raise DataError("The segmentation dataset is empty.")
    return [Case(image=row["image"], label=row["label"], name=f"case_{i}") for i, row in enumerate(dataset)]


def check_label_values(case: Case, num_labels: int) -> None:
    """Raise :class:`DataError` when ``case``'s label map holds values outside ``0..num_labels-1``."""
    image = nib.load(case.label) if isinstance(case.label, (str, os.PathLike)) else case.label
    values = np.unique(np.asanyarray(image.dataobj))
    if values.size and (values.min() < 0 or values.max() >= num_labels or not np.allclose(values, np.round(values))):
        unknown = [float(v) for v in values if v < 0 or v >= num_labels or v != round(v)]
        raise DataError(f"{case.name}: the label map holds values {unknown[:10]} that the config's {num_labels} labels (0..{num_labels - 1}) don't cover.")


def split_cases(count: int, *, val_fraction: float, test_fraction: float, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Shuffle case indices and cut them into train / validation / test (each non-empty)."""
    if count < 3:
        raise DataError(f"Splitting by cases needs at least 3 labelled volumes, got {count}; use data.split='regions' for fewer.")
    order = np.random.default_rng(seed).permutation(count).tolist()
    n_test = max(1, round(test_fraction * count))
    n_val = max(1, round(val_fraction * count))
    if n_test + n_val >= count:
        raise DataError(f"val_fraction + test_fraction leave no training volume out of {count}.")
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def region_bounds(length: int, *, val_fraction: float, test_fraction: float, margin: int) -> dict[str, tuple[int, int]]:
    """Slabs along one axis: test first, then validation, then training, ``margin`` voxels apart."""
    n_test, n_val = round(test_fraction * length), round(val_fraction * length)
    bounds = {"test": (0, n_test), "validation": (n_test + margin, n_test + margin + n_val), "train": (n_test + 2 * margin + n_val, length)}
    if min(stop - start for start, stop in bounds.values()) < 1:
        raise DataError(f"A region split of {length} voxels with margin {margin} leaves an empty split: {bounds}.")
    return bounds


class _VolumeCache:
    """Preprocessed ``{"image", "label"}`` pairs, loaded on demand, at most ``size`` kept."""

    def __init__(self, cases: Sequence[Case], processor: SegmentationProcessor, size: int) -> None:
        self.cases = list(cases)
        self.processor = processor
        self.size = max(1, size)
        self._items: OrderedDict[int, dict[str, MetaTensor]] = OrderedDict()
        self._transform = processor.deterministic_transforms(with_label=True)

    def __getitem__(self, index: int) -> dict[str, MetaTensor]:
        if index in self._items:
            self._items.move_to_end(index)
            return self._items[index]
        case = self.cases[index]
        try:
            image = self.processor.load(case.image)
            label = load_volume(case.label)
        except InputError as exc:
            raise DataError(f"{case.name}: {exc}") from exc
        if label.shape[0] != 1 or label.shape[1:] != image.shape[1:]:
            raise DataError(f"{case.name}: the label map has shape {tuple(label.shape[1:])}, the image {tuple(image.shape[1:])}; they must share a grid.")
        label = MetaTensor(label.as_tensor(), affine=image.affine.clone())  # one grid for both
        data = self._transform({"image": image, "label": label})
        if case.region is not None:
            axis, start, stop = case.region
            slices = [slice(None)] * 3
            slices[axis] = slice(start, stop)
            data = SpatialCropd(["image", "label"], roi_slices=slices)(data)
        self._items[index] = data
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return data


class SegmentationPatches(Dataset):
    """Random training patches: ``{"pixel_values": (C, *patch), "labels": (1, *patch)}``.

    ``patches_per_volume`` patches are drawn from each volume per epoch.
    """

    def __init__(
        self, cases: Sequence[Case], processor: SegmentationProcessor, *, patches_per_volume: int, cache_volumes: int, seed: int
    ) -> None:
        self.volumes = _VolumeCache(cases, processor, cache_volumes)
        self.patches_per_volume = patches_per_volume
        self.transform = processor.training_transforms()
        self.transform.set_random_state(seed=seed)

    def __len__(self) -> int:
        return len(self.volumes.cases) * self.patches_per_volume

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        data = self.volumes[index % len(self.volumes.cases)]
        patch = self.transform(dict(data))
        patch = patch[0] if isinstance(patch, list) else patch
        return {"pixel_values": patch["image"].as_tensor().float(), "labels": patch["label"].as_tensor().to(torch.uint8)}


class SegmentationVolumes(Dataset):
    """Whole preprocessed volumes for evaluation: ``{"pixel_values": (C, *S), "labels": (1, *S)}``.

    Attributes:
        cases: the volumes, in order; a region split's ``Case.region`` says which slab of each.
    """

    def __init__(self, cases: Sequence[Case], processor: SegmentationProcessor, *, cache_volumes: int) -> None:
        self.cases = list(cases)
        self.volumes = _VolumeCache(cases, processor, cache_volumes)

    def __len__(self) -> int:
        return len(self.volumes.cases)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        data = self.volumes[index]
        return {"pixel_values": data["image"].as_tensor().float(), "labels": data["label"].as_tensor().to(torch.uint8)}


def preprocessed_length(case: Case, processor: SegmentationProcessor, axis: int) -> int:
    """Voxels along ``axis`` of ``case``'s preprocessed volume (for a region split)."""
    image = processor.preprocess(processor.load(case.image))["image"]
    return int(image.shape[axis + 1])


def describe(cases: Mapping[str, Sequence[Case]]) -> dict[str, dict[str, Any]]:
    """Per split: the number of volumes and which (slabs of) cases, for metrics.json and the card."""
    return {
        name: {
            "volumes": len(group),
            "cases": ", ".join(c.name + (f"[axis {c.region[0]} voxels {c.region[1]}:{c.region[2]}]" if c.region else "") for c in group[:5])
            + (" ..." if len(group) > 5 else ""),
        }
        for name, group in cases.items()
    }


#: seed offsets of the synthetic splits: training patches use ``data.seed`` itself, validation heads
#: ``data.seed + 10_000 + i`` (the training generator), test phantoms ``data.seed + 20_000 + i`` (:func:`phantom_head`)
SYNTHESIS_SEEDS = {"validation": 10_000, "test": 20_000}


def synthetic_splits(
    source: Any, options: SynthesisOptions, processor: SegmentationProcessor, *, seed: int, cache_volumes: int
) -> tuple[SynthesisPatches, SegmentationVolumes, SegmentationVolumes, dict[str, Any]]:
    """Whole-head synthesis around the first case of ``source`` (see :mod:`.synthesis`).

    Training: ``options.samples`` synthetic patches per epoch; validation: ``options.validation_heads`` whole
    synthetic heads (the training generator, other seeds); test: ``options.test_phantoms`` whole-head phantoms
    built by another method (:func:`phantom_head`). Returns the three datasets and their description.
    """
    spacing = processor.target_spacing
    if len(set(spacing)) != 1:
        raise DataError(f"Whole-head synthesis builds heads on an isotropic grid; model.target_spacing is {spacing}.")
    anatomy = HeadAnatomy.from_folder(source, spacing=spacing[0])
    train = SynthesisPatches(anatomy, patch_size=processor.patch_size, length=options.samples, seed=seed, options=options)
    validation = []
    for i in range(options.validation_heads):
        image, label = synthetic_head(anatomy, seed + SYNTHESIS_SEEDS["validation"] + i, options)
        validation.append(Case(image=image, label=label, name=f"synthetic_head_{seed + SYNTHESIS_SEEDS['validation'] + i}"))
    test = []
    for i in range(options.test_phantoms):
        image, label, _ = phantom_head(anatomy, seed + SYNTHESIS_SEEDS["test"] + i)
        test.append(Case(image=image, label=label, name=f"phantom_head_{seed + SYNTHESIS_SEEDS['test'] + i}"))
    name = Path(str(source or EMBEDDED_ROOT)).name
    description = {
        "train": {"volumes": "synthesised", "cases": f"{options.samples} synthetic whole-head patches per epoch around {name} (new head, contrast and scanner each)"},
        "validation": {"volumes": len(validation), "cases": ", ".join(c.name for c in validation)},
        "test": {"volumes": len(test), "cases": ", ".join(c.name for c in test) + " (phantom_head: another construction)"},
    }
    cache = max(cache_volumes, len(validation), len(test))
    return train, SegmentationVolumes(validation, processor, cache_volumes=cache), SegmentationVolumes(test, processor, cache_volumes=cache), description
