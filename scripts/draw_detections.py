"""Draw the embedded default detector's detections on test images of the embedded set.

    python scripts/draw_detections.py        # writes docs/detection_example.jpg

Left of each pair: the ground-truth boxes (green); right: the model's detections (score >= 0.5,
coloured by class, with label and score), as ``polyhead.pipeline("object-detection")`` returns them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

import polyhead
from polyhead.pipelines import default_model_dir
from polyhead.pipelines.detection import draw_detections

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["0001.jpg", "0005.jpg", "0012.jpg"])
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "detection_example.jpg")
    args = parser.parse_args()
    folder = default_model_dir("object-detection").parent.parent / "assets" / "detection_paste"
    truth = json.loads((folder / "test.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    ids = {i["file_name"]: i["id"] for i in truth["images"]}
    detect = polyhead.pipeline("object-detection")
    tiles = []
    for name in args.images:
        image = Image.open(folder / "test" / name).convert("RGB")
        left = image.copy()
        draw = ImageDraw.Draw(left)
        for ann in truth["annotations"]:
            if ann["image_id"] == ids[name]:
                x, y, w, h = ann["bbox"]
                draw.rectangle([x, y, x + w, y + h], outline=(0, 255, 0), width=2)
                draw.text((x + 2, y + 1), names[ann["category_id"]], fill=(0, 255, 0))
        right = draw_detections(image, detect(image, threshold=args.threshold))  # the library's own drawing
        pair = Image.new("RGB", (image.width * 2 + 4, image.height), (255, 255, 255))
        pair.paste(left, (0, 0))
        pair.paste(right, (image.width + 4, 0))
        tiles.append(pair)
    sheet = Image.new("RGB", (max(t.width for t in tiles), sum(t.height + 4 for t in tiles)), (255, 255, 255))
    y = 0
    for tile in tiles:
        sheet.paste(tile, (0, y))
        y += tile.height + 4
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
