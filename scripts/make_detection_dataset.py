"""Build polyhead's embedded object-detection set from real images that ship in packages.

    python scripts/make_detection_dataset.py            # writes polyhead/assets/detection_paste/

No multi-image detection set ships offline, so this one is composed: objects
cropped from real photographs/scans are pasted at random positions, scales and
overlaps onto crops of real photographs, and each box is the exact extent of
the pasted pixels.

* objects: Fashion-MNIST items (Debian package ``dataset-fashion-mnist``,
  ``/usr/share/datasets/fashion-mnist``; classes trouser, bag, sneaker) pasted
  through their own silhouette, and faces from scikit-image's ``lfw_subset``
  (the first 100 of its 200 crops are faces) pasted as rectangles;
* backgrounds: scikit-image sample photos and scikit-learn's two sample photos.

Train / validation / test never share a source crop or a background photo:
Fashion-MNIST train file -> train, its t10k file halves -> validation / test;
LFW faces 0-59 / 60-79 / 80-99; disjoint background photo lists. Output: COCO
json per split + JPEG folders + LICENSE.md, deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
from PIL import Image

from polyhead.model_dir import write_folder

ROOT = Path(__file__).resolve().parents[1]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Fashion-MNIST label -> our class name
FASHION_CLASSES = {1: "trouser", 8: "bag", 7: "sneaker"}
CATEGORIES = ["face", "trouser", "bag", "sneaker"]  # COCO ids 1..4
BACKGROUNDS = {
    "train": ["sklearn:china.jpg", "astronaut", "chelsea", "coffee", "rocket", "brick", "gravel"],
    "validation": ["hubble_deep_field", "grass", "retina"],
    "test": ["sklearn:flower.jpg", "motorcycle_left", "camera"],
}
SPLIT_SIZES = {"train": 300, "validation": 60, "test": 80}
LICENCES = {
    "sklearn:china.jpg": "scikit-learn sample image; CC BY 2.0, danielbuechele on Flickr",
    "sklearn:flower.jpg": "scikit-learn sample image; CC BY 2.0, vultilion on Flickr",
    "astronaut": "scikit-image; NASA photograph of Eileen Collins, public domain",
    "chelsea": "scikit-image; CC0, Stefan van der Walt",
    "coffee": "scikit-image; CC0, Rachel Michetti",
    "rocket": "scikit-image; SpaceX, released into the public domain",
    "brick": "scikit-image; CC0 (CC0Textures Bricks25)",
    "gravel": "scikit-image; CC0 (CC0Textures Gravel04)",
    "hubble_deep_field": "scikit-image; NASA/HubbleSite, public domain",
    "grass": "scikit-image; CC0 (DeviantArt linolafett Grass-01)",
    "retina": "scikit-image; CC0 1.0, Mikael Haggstrom (Wikimedia Commons)",
    "motorcycle_left": "scikit-image; Middlebury stereo data set 2014 (Scharstein et al.), free for research use",
    "camera": "scikit-image; CC0, Lav Varshney",
}


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_items(split: str) -> list[tuple[str, np.ndarray]]:
    """``(class name, 28x28 uint8)`` items of ``split`` (disjoint across splits)."""
    prefix = "train" if split == "train" else "t10k"
    images = _idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = _idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    index = np.arange(len(labels))
    if split == "validation":
        index = index[: len(index) // 2]
    elif split == "test":
        index = index[len(index) // 2 :]
    return [(FASHION_CLASSES[int(labels[i])], images[i]) for i in index if int(labels[i]) in FASHION_CLASSES]


def faces(split: str) -> list[np.ndarray]:
    from skimage import data

    lfw = data.lfw_subset()[:100]  # the first 100 crops are faces, the rest are not
    start, end = {"train": (0, 60), "validation": (60, 80), "test": (80, 100)}[split]
    return [(np.clip(f, 0, 1) * 255).astype(np.uint8) for f in lfw[start:end]]


def background(name: str) -> np.ndarray:
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name.split(":", 1)[1])
    else:
        from skimage import data

        image = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _canvas(rng: np.random.Generator, photo: np.ndarray) -> Image.Image:
    """A random crop of ``photo`` resized to 256 px on its longer side (aspect 1:1, 4:3 or 3:4)."""
    height, width = [(256, 256), (192, 256), (256, 192)][rng.integers(3)]
    scale = rng.uniform(0.45, 1.0) * min(photo.shape[0] / height, photo.shape[1] / width)
    crop_h, crop_w = int(height * scale), int(width * scale)
    y = rng.integers(0, photo.shape[0] - crop_h + 1)
    x = rng.integers(0, photo.shape[1] - crop_w + 1)
    crop = Image.fromarray(photo[y : y + crop_h, x : x + crop_w])
    return crop.resize((width, height), Image.BILINEAR)


def _paste(canvas: Image.Image, rng: np.random.Generator, item: np.ndarray, is_face: bool, boxes: list) -> list[float] | None:
    """Paste one object; returns its exact ``[x, y, w, h]`` box, or ``None`` if it would hide another too much."""
    size = int(rng.uniform(28, 88))
    aspect = rng.uniform(0.85, 1.15)
    w, h = max(8, int(size * aspect)), max(8, int(size / aspect))
    patch = Image.fromarray(item).resize((w, h), Image.BILINEAR)
    if is_face:
        alpha = np.full((h, w), 255, np.uint8)
    else:  # Fashion-MNIST items lie on black: their own intensity is the silhouette
        alpha = np.where(np.asarray(patch) > 12, 255, 0).astype(np.uint8)
    ys, xs = np.nonzero(alpha)
    if len(xs) == 0:
        return None
    x0 = int(rng.integers(-w // 4, canvas.width - 3 * w // 4))
    y0 = int(rng.integers(-h // 4, canvas.height - 3 * h // 4))
    # the exact extent of the visible pasted pixels
    visible_x = np.clip(xs + x0, 0, canvas.width - 1)
    visible_y = np.clip(ys + y0, 0, canvas.height - 1)
    inside = (xs + x0 >= 0) & (xs + x0 < canvas.width) & (ys + y0 >= 0) & (ys + y0 < canvas.height)
    if inside.mean() < 0.6:
        return None
    bx0, by0 = float(visible_x[inside].min()), float(visible_y[inside].min())
    bx1, by1 = float(visible_x[inside].max() + 1), float(visible_y[inside].max() + 1)
    if bx1 - bx0 < 8 or by1 - by0 < 8:
        return None
    for other in boxes:  # overlaps are allowed, but no earlier object may lose more than 40% of its box
        ox0, oy0, ow, oh = other
        iw = max(0.0, min(bx1, ox0 + ow) - max(bx0, ox0))
        ih = max(0.0, min(by1, oy0 + oh) - max(by0, oy0))
        if iw * ih > 0.4 * ow * oh:
            return None
    rgb = Image.merge("RGB", [patch] * 3)
    canvas.paste(rgb, (x0, y0), Image.fromarray(alpha))
    return [bx0, by0, bx1 - bx0, by1 - by0]


def make_split(split: str, out: Path, rng: np.random.Generator) -> dict:
    items = fashion_items(split)
    face_crops = faces(split)
    photos = {name: background(name) for name in BACKGROUNDS[split]}
    images, annotations = [], []
    (out / split).mkdir(parents=True, exist_ok=True)
    used_items: set[int] = set()
    for image_id in range(1, SPLIT_SIZES[split] + 1):
        name = BACKGROUNDS[split][rng.integers(len(BACKGROUNDS[split]))]
        canvas = _canvas(rng, photos[name])
        boxes: list[list[float]] = []
        for _ in range(int(rng.integers(2, 7))):
            for _attempt in range(10):
                if rng.random() < 0.3:
                    label, crop, is_face = "face", face_crops[rng.integers(len(face_crops))], True
                else:
                    pick = int(rng.integers(len(items)))
                    (label, crop), is_face = items[pick], False
                box = _paste(canvas, rng, crop, is_face, boxes)
                if box is not None:
                    boxes.append(box)
                    if not is_face:
                        used_items.add(pick)
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": image_id, "category_id": CATEGORIES.index(label) + 1,
                        "bbox": [round(v, 2) for v in box], "area": round(box[2] * box[3], 2), "iscrowd": 0,
                    })
                    break
        file_name = f"{image_id:04d}.jpg"
        canvas.save(out / split / file_name, quality=80, optimize=True)
        images.append({"id": image_id, "file_name": file_name, "width": canvas.width, "height": canvas.height, "background": name})
    coco = {
        "info": {"description": f"polyhead pasted-objects detection set, {split} split", "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CATEGORIES)],
    }
    (out / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")) + "\n")
    return {"images": len(images), "objects": len(annotations), "fashion_items_used": len(used_items), "backgrounds": BACKGROUNDS[split]}


LICENCE_TEXT = """# polyhead pasted-objects detection set (`detection_paste`)

Generated by `scripts/make_detection_dataset.py` (seed {seed}); every box is the exact
extent of the pasted pixels. Splits use disjoint object crops and disjoint background photos.

## Sources and licences
- Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017), Copyright 2017 Zalando SE, MIT (Expat) licence;
  taken from Debian's `dataset-fashion-mnist` package. Classes used: trouser, bag, sneaker.
  Train split from `train-*-ubyte`, validation / test from the first / second half of `t10k-*-ubyte`.
- Faces: scikit-image's `lfw_subset` (25x25 crops from Labeled Faces in the Wild, Huang et al., 2007),
  shipped in the scikit-image wheel (BSD-3-Clause package). Faces 0-59 train, 60-79 validation, 80-99 test.
- Backgrounds:
{backgrounds}

## Summary
{summary}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "polyhead" / "assets" / "detection_paste")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not FASHION_DIR.is_dir():
        raise SystemExit(f"{FASHION_DIR} not found: apt-get install dataset-fashion-mnist")
    with write_folder(args.out, kind="data", overwrite=True, what="--out folder") as tmp:  # never a folder polyhead did not write
        write(tmp, args)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out}: {size / 1e6:.2f} MB")


def write(tmp: Path, args: argparse.Namespace) -> None:
    summary = {}
    for offset, split in enumerate(("train", "validation", "test")):
        summary[split] = make_split(split, tmp, np.random.default_rng(args.seed + offset))
    backgrounds = "\n".join(f"  - `{name}` ({split}): {LICENCES[name]}" for split, names in BACKGROUNDS.items() for name in names)
    (tmp / "LICENSE.md").write_text(LICENCE_TEXT.format(seed=args.seed, backgrounds=backgrounds, summary=json.dumps(summary, indent=2)))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
