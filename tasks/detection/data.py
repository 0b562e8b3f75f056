"""Detection data: COCO json + image folders, or a ``datasets`` dataset with the Hub schema.

Everything becomes a ``datasets.Dataset`` with the Hub's detection schema:
``image`` (an ``Image`` feature), ``objects: {"bbox": [[x, y, w, h], ...], "category": [int, ...]}``
(COCO ``xywh`` pixels, categories ``0..K-1``), ``image_id``. :class:`DetectionDataset`
then loads, augments (horizontal flip, scale jitter; torchvision ``transforms.v2`` moves
the boxes with the pixels) and resizes each image; :class:`DetectionCollator` pads a
batch to one fixed size and the boxes to ``max_objects`` rows, so batches gather across
processes.

Sources (``data.source``, or ``data.root`` for a COCO folder):

* ``"detection_paste"``: the embedded set (``polyhead/assets/detection_paste``);
* a folder with COCO json per split: ``{split}.json``, ``annotations/instances_{split}.json``, or
  COCO's own ``annotations/instances_train2017.json`` + ``train2017/`` (``val2017`` the validation split)
  (``split`` in train / validation|val / test) and images in ``{root}/{split}/``,
  ``{root}/images/{split}/``, ``{root}/images/`` or ``{root}/``; a missing validation or
  test split is cut from train (``val_fraction`` / ``test_fraction``);
* a ``datasets.save_to_disk`` folder or a ``DatasetDict`` with the Hub schema.

Bad annotations: boxes reaching outside the image are clipped to it, boxes with zero
area (before or after clipping) are dropped and counted in the data description;
unknown category ids, malformed boxes, missing image files and empty image lists are
:class:`~polyhead.errors.DataError`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from polyhead.errors import DataError, InputError

from .processing import DetectionImageProcessor, to_rgb_tensor

__all__ = [
    "EMBEDDED_SETS",
    "DetectionCollator",
    "DetectionDataset",
    "DetectionSource",
    "coco_to_dataset",
    "load_detection_source",
]

#: Detection sets that ship inside polyhead: name -> folder in polyhead/assets
EMBEDDED_SETS = {"detection_paste": "detection_paste"}
_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val", "valid"), "test": ("test",)}


class DetectionSource:
    """The three splits (Hub schema) and the class names, in category order."""

    def __init__(self, splits: dict[str, datasets.Dataset], class_names: list[str], description: dict[str, Any]) -> None:
        self.splits = splits
        self.class_names = class_names
        self.description = description


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not a readable COCO json file: {err}") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise DataError(f"{path} is not COCO detection json: it needs 'images', 'annotations' and 'categories'.")
    return data


def coco_categories(data: Mapping[str, Any], where: str) -> tuple[dict[int, int], list[str]]:
    """COCO category ids (gaps allowed, any order) -> contiguous indices ``0..K-1`` sorted by id, and names."""
    categories = data["categories"]
    if not categories:
        raise DataError(f"{where} has no categories.")
    try:
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        names = [str(c["name"]) for c in ordered]
        ids = [int(c["id"]) for c in ordered]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: every category needs an integer 'id' and a 'name'.") from None
    if len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise DataError(f"{where}: category ids and names must be unique, got ids {ids} and names {names}.")
    return {cid: i for i, cid in enumerate(ids)}, names


def coco_to_dataset(annotation_file: str | Path, image_dir: str | Path, *, class_names: Sequence[str] | None = None) -> tuple[datasets.Dataset, list[str], dict[str, int]]:
    """One COCO json + its image folder -> a Hub-schema ``datasets.Dataset``, the class names and counts.

    Args:
        class_names: map categories to these names' order (all splits share the train split's classes).
    """
    path = Path(annotation_file)
    data = _read_json(path)
    index, names = coco_categories(data, str(path))
    if class_names is not None:
        unknown = [n for n in names if n not in class_names]
        if unknown:
            raise DataError(f"{path} has categories {unknown} that the training classes {list(class_names)} do not have.")
        index = {cid: list(class_names).index(names[i]) for cid, i in index.items()}
        names = list(class_names)
    images = data["images"]
    if not images:
        raise DataError(f"{path} lists no images.")
    counts = {"images": len(images), "objects": 0, "clipped_boxes": 0, "dropped_zero_area_boxes": 0}
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    rows: dict[str, list[Any]] = {"image": [], "image_id": [], "objects": []}
    image_dir = Path(image_dir)
    for image in images:
        try:
            image_id, file_name = image["id"], str(image["file_name"])
        except (KeyError, TypeError):
            raise DataError(f"{path}: every image needs an 'id' and a 'file_name'.") from None
        file = image_dir / file_name
        if not file.is_file():
            raise DataError(f"{path}: image {file_name!r} not found in {image_dir}.")
        width, height = image.get("width"), image.get("height")
        boxes, cats = [], []
        for ann in by_image.pop(image_id, []):
            bbox, cid = ann.get("bbox"), ann.get("category_id")
            if cid not in index:
                raise DataError(f"{path}: annotation {ann.get('id')} has category_id {cid!r}, not one of {sorted(index)}.")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
                raise DataError(f"{path}: annotation {ann.get('id')} needs a bbox [x, y, width, height], got {bbox!r}.")
            x, y, w, h = (float(v) for v in bbox)
            x0, y0, x1, y1 = x, y, x + w, y + h
            if width and height:
                cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
                cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
                if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
                    counts["clipped_boxes"] += 1
                x0, y0, x1, y1 = cx0, cy0, cx1, cy1
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                counts["dropped_zero_area_boxes"] += 1
                continue
            boxes.append([x0, y0, x1 - x0, y1 - y0])
            cats.append(index[cid])
        counts["objects"] += len(boxes)
        rows["image"].append(str(file))
        rows["image_id"].append(int(image_id) if isinstance(image_id, int) else len(rows["image_id"]))
        rows["objects"].append({"bbox": boxes, "category": cats})
    orphans = [k for k in by_image if k is not None]
    if orphans:
        raise DataError(f"{path}: annotations refer to image ids {orphans[:5]} that are not in 'images'.")
    features = datasets.Features({
        "image": datasets.Image(),
        "image_id": datasets.Value("int64"),
        "objects": {"bbox": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)), "category": datasets.Sequence(datasets.Value("int64"))},
    })
    return datasets.Dataset.from_dict(rows, features=features), names, counts


def _find_split(root: Path, split: str) -> tuple[Path, Path] | None:
    """``(annotation json, image folder)`` of a split, in the layouts COCO tools write.

    ``train.json`` + ``train/``; ``annotations/instances_train.json``; and COCO's own
    ``annotations/instances_train2017.json`` + ``train2017/`` (the images folder is named
    after the annotation file).
    """
    for name in _SPLIT_NAMES[split]:
        candidates = [root / f"{name}.json", root / "annotations" / f"instances_{name}.json", root / "annotations" / f"{name}.json",
                      *sorted((root / "annotations").glob(f"instances_{name}[0-9]*.json"))]
        for ann in candidates:
            if ann.is_file():
                stem = ann.stem.removeprefix("instances_")
                for images in (root / stem, root / "images" / stem, root / name, root / "images" / name, root / "images", root):
                    if images.is_dir():
                        return ann, images
    return None


def _cut(train: datasets.Dataset, fraction: float, seed: int, what: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    count = max(1, round(len(train) * fraction))
    if len(train) - count < 1:
        raise DataError(f"The training split has {len(train)} image(s): too few to cut a {what} split from it.")
    parts = train.train_test_split(test_size=count, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def _hub_class_names(dataset: datasets.Dataset) -> list[str] | None:
    feature = dataset.features.get("objects")
    category = feature.get("category") if isinstance(feature, Mapping) else None
    inner = getattr(category, "feature", None) if category is not None else None
    if isinstance(category, list) and category:
        inner = category[0]
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def load_detection_source(source: Any, *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, bbox_format: str = "xywh") -> DetectionSource:
    """The train / validation / test splits of ``source`` (see the module docstring)."""
    if bbox_format not in ("xywh", "xyxy"):
        raise DataError(f"data.bbox_format must be 'xywh' (COCO, the Hub's usual) or 'xyxy', got {bbox_format!r}.")
    name = str(source) if isinstance(source, (str, Path)) else None
    if isinstance(source, str) and source in EMBEDDED_SETS:
        source = Path(str(resources.files("polyhead") / "assets" / EMBEDDED_SETS[source]))
    if isinstance(source, (datasets.DatasetDict, dict)):
        return _from_dataset_dict(dict(source), val_fraction, test_fraction, seed, "a DatasetDict", bbox_format)
    path = Path(str(source))
    if not path.exists():
        raise DataError(f"Detection data {str(source)!r} not found: expected {', '.join(EMBEDDED_SETS)}, a COCO folder or a save_to_disk folder.")
    if (path / "dataset_dict.json").is_file():
        return _from_dataset_dict(dict(datasets.load_from_disk(str(path))), val_fraction, test_fraction, seed, name or str(path), bbox_format)
    if not path.is_dir():
        raise DataError(f"Detection data {path} must be a folder (COCO json + images, or a save_to_disk folder).")
    train = _find_split(path, "train")
    if train is None:
        raise DataError(f"No COCO training annotations in {path}: expected train.json, annotations/instances_train.json or "
                        "annotations/instances_train2017.json (+ train2017/).")
    splits, counts = {}, {}
    splits["train"], names, counts["train"] = coco_to_dataset(*train)
    for split in ("validation", "test"):
        found = _find_split(path, split)
        if found is not None:
            splits[split], _, counts[split] = coco_to_dataset(*found, class_names=names)
    if "test" not in splits:
        splits["train"], splits["test"] = _cut(splits["train"], test_fraction, seed, "test")
    if "validation" not in splits:
        splits["train"], splits["validation"] = _cut(splits["train"], val_fraction, seed + 1, "validation")
    rows = {k: {"images": len(v), **{c: n for c, n in counts.get(k, {}).items() if c != "images"}} for k, v in splits.items()}
    for split_name, row in rows.items():  # a split cut from train: count its objects
        row.setdefault("objects", sum(len(o["category"]) for o in splits[split_name]["objects"]))
    description = {"source": name or str(path), "format": "coco", "classes": names, "splits": rows}
    return DetectionSource(splits, names, description)


def _from_dataset_dict(dd: dict[str, Any], val_fraction: float, test_fraction: float, seed: int, where: str, bbox_format: str) -> DetectionSource:
    named = {}
    for split, aliases in _SPLIT_NAMES.items():
        for alias in aliases:
            if alias in dd:
                named[split] = dd[alias]
                break
    if "train" not in named:
        raise DataError(f"{where} has no 'train' split (splits: {sorted(dd)}).")
    for split, dataset in named.items():
        missing = {"image", "objects"} - set(dataset.column_names)
        if missing:
            raise DataError(f"The {split} split of {where} lacks column(s) {sorted(missing)}; the Hub detection schema is image + objects {{bbox, category}}.")
        if len(dataset) == 0:
            raise DataError(f"The {split} split of {where} is empty.")
    names = _hub_class_names(named["train"])
    if names is None:
        seen = sorted({int(c) for objects in named["train"]["objects"] for c in objects["category"]})
        names = [str(i) for i in range(max(seen) + 1)] if seen else ["0"]
    if bbox_format == "xyxy":
        def to_xywh(row: dict[str, Any]) -> dict[str, Any]:
            row["objects"]["bbox"] = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in row["objects"]["bbox"]]
            return row
        named = {k: v.map(to_xywh) for k, v in named.items()}
    if "test" not in named:
        named["train"], named["test"] = _cut(named["train"], test_fraction, seed, "test")
    if "validation" not in named:
        named["train"], named["validation"] = _cut(named["train"], val_fraction, seed + 1, "validation")
    description = {"source": where, "format": "hub", "classes": names, "splits": {k: {"images": len(v)} for k, v in named.items()}}
    return DetectionSource(named, names, description)


def _open_image(value: Any) -> Any:
    """A Hub ``Image`` cell (decoded PIL image, or ``{"path", "bytes"}``) or a path -> something :func:`to_rgb_tensor` takes."""
    try:
        if isinstance(value, Mapping):
            if value.get("bytes"):
                import io

                return Image.open(io.BytesIO(value["bytes"]))
            value = value.get("path")
        if isinstance(value, (str, Path)):
            image = Image.open(value)
            image.load()
            return image
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"Cannot read image {value!r}: {err}") from None
    return value


class DetectionDataset(Dataset):
    """Hub-schema rows -> ``{"pixel_values": (3, h, w), "boxes": (M, 4) xyxy, "class_labels": (M,), "size": (2,)}``.

    Args:
        dataset: a Hub-schema ``datasets.Dataset``.
        processor: resizes (longer side ``image_size``) and normalises.
        num_classes: categories must be in ``[0, num_classes)``.
        train: augment with a horizontal flip and scale jitter.
        flip_prob / scale_range: the augmentation (scale relative to the processor's resize).
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        processor: DetectionImageProcessor,
        *,
        num_classes: int,
        train: bool = False,
        flip_prob: float = 0.5,
        scale_range: tuple[float, float] = (0.6, 1.25),
    ) -> None:
        if len(dataset) == 0:
            raise DataError("The detection dataset has no images.")
        self.dataset = dataset.cast_column("image", datasets.Image(decode=False)) if "image" in dataset.features else dataset
        self.processor = processor
        self.num_classes = num_classes
        self.train = train
        size = processor.image_size
        self.augment = v2.Compose([
            v2.RandomHorizontalFlip(flip_prob),
            v2.ScaleJitter(target_size=(size, size), scale_range=tuple(scale_range), antialias=True),
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=2.0),
        ])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.process(self.dataset[i], where=i)

    def process(self, row: Mapping[str, Any], where: Any = None) -> dict[str, torch.Tensor]:
        """One Hub-schema row (image undecoded) -> its sample; ``where`` names it in errors (default: its ``image_id``)."""
        i = row.get("image_id") if where is None else where
        try:
            image = to_rgb_tensor(_open_image(row["image"]))
        except InputError as err:
            raise DataError(f"Image {i} of the detection data: {err}") from None
        height, width = image.shape[-2:]
        objects = row["objects"]
        boxes = torch.tensor(objects["bbox"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(objects["category"], dtype=torch.long).reshape(-1)
        if boxes.shape[0] != labels.shape[0]:
            raise DataError(f"Image {i}: {boxes.shape[0]} boxes but {labels.shape[0]} categories.")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataError(f"Image {i}: category ids must be in [0, {self.num_classes}), got {labels.tolist()}.")
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)  # outside the image: clipped
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # zero area: dropped
        boxes, labels = boxes[keep], labels[keep]
        if self.train:
            sample = self.augment({
                "image": tv_tensors.Image(image),
                "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
                "labels": labels,
            })
            image, boxes, labels = sample["image"].as_subclass(torch.Tensor), sample["boxes"].as_subclass(torch.Tensor), sample["labels"]
            image, boxes, labels = self._crop_to_canvas(image, boxes, labels)
        else:
            new_h, new_w = self.processor.resized_size(height, width)
            image = self.processor.resize(image)
            boxes = boxes * torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height])
        return {
            "pixel_values": self.processor.normalize(image),
            "boxes": boxes,
            "class_labels": labels,
            "size": torch.tensor(image.shape[-2:]),
        }

    def _crop_to_canvas(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor):
        """A random ``image_size`` window of a scaled-up image; boxes clipped, boxes left with < 2 px dropped."""
        size = self.processor.image_size
        height, width = image.shape[-2:]
        if height <= size and width <= size:
            return image, boxes, labels
        top = random.randint(0, max(0, height - size))
        left = random.randint(0, max(0, width - size))
        image = image[:, top : top + size, left : left + size]
        boxes = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.shape[2])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.shape[1])
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
        return image, boxes[keep], labels[keep]


class DetectionCollator:
    """Pad a batch to ``pad_size`` and its boxes to ``(B, max_objects, 5)`` rows ``[class, x0, y0, x1, y1]`` (class -1: padding).

    The fixed sizes make every batch the same shape, so ``gather_for_metrics`` works across processes.
    """

    def __init__(self, processor: DetectionImageProcessor, *, max_objects: int = 100) -> None:
        self.processor = processor
        self.max_objects = max_objects
        self.pad_size = processor.padded_size(processor.image_size, processor.image_size)

    def __call__(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if not samples:
            raise DataError("Got an empty batch of images.")
        batch = self.processor.pad([s["pixel_values"] for s in samples], pad_size=self.pad_size)
        labels = torch.full((len(samples), self.max_objects, 5), -1.0)
        for i, sample in enumerate(samples):
            count = sample["class_labels"].numel()
            if count > self.max_objects:
                raise DataError(f"An image has {count} objects, more than data.max_objects={self.max_objects}; raise it.")
            labels[i, :count, 0] = sample["class_labels"].float()
            labels[i, :count, 1:] = sample["boxes"]
        return {"pixel_values": batch["pixel_values"], "pixel_mask": batch["pixel_mask"], "labels": labels,
                "image_sizes": torch.stack([s["size"] for s in samples])}
