"""Detection benchmark: polyhead ConvNeXt+FCOS vs torchvision FCOS (small ResNet), and pipeline throughput.

What is measured, in one process, on the embedded pasted-objects set (256 px):

* ``same_budget``: polyhead's recipe (``configs/detection/convnext_tiny_fcos.py``: ConvNeXt-tiny-ish +
  FPN + FCOS, AdamW) and torchvision's ``FCOS`` as ``fcos_resnet50_fpn`` builds it (ResNet + FPN with
  P6/P7 + ``FCOSHead``) but on a ResNet-18 (``weights=None``), with torchvision's reference recipe
  (SGD, momentum 0.9, lr 0.01, weight decay 1e-4), each trained for the same number of steps on the same
  batches (same augmentation, same normalised 256 x 256 inputs: torchvision's transform is set to an
  identity resize and normalisation), both from scratch. Reported: test mAP / mAP50 of each, and the
  mean training step time (forward, loss, backward, optimizer step) with their ratio.
  Target: polyhead mAP50 >= torchvision's at <= 1.2x its step time.
* ``same_time``: polyhead's recipe again from scratch, for as many steps as fit in the training time
  torchvision used above (its mean step time x steps / polyhead's), on the same data stream; test mAP / mAP50.
* ``pipeline_throughput``: images per second through ``polyhead.pipeline("object-detection")`` with the
  embedded default model, PyTorch vs the exported ``model.onnx`` in ONNX Runtime, one test image
  per call (decode, resize, network, post-processing), same thread count.

Writes ``benchmarks/results/detection.json`` and prints a summary.
Run: ``python -m benchmarks.detection`` from the repository root (``--steps`` sets the budget).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models import resnet18
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import polyhead
from polyhead.config import load_config
from polyhead.pipelines import default_model_dir
from polyhead.registry import TASKS, get
from polyhead.tasks.detection.modeling import labels_from_padded

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "detection.json"
RECIPE = "configs/detection/convnext_tiny_fcos.py"
TARGET_STEP_TIME_RATIO = 1.2


def torchvision_fcos(num_classes: int, image_size: int, fpn_channels: int, num_convs: int) -> FCOS:
    """``fcos_resnet50_fpn``'s construction (layers 2-4 + P6/P7, FCOSHead) on a ResNet-18, no pretrained weights."""
    body = resnet18(weights=None)
    backbone = BackboneWithFPN(
        body, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"}, in_channels_list=[128, 256, 512],
        out_channels=fpn_channels, extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels),
    )
    head = FCOSHead(fpn_channels, num_anchors=1, num_classes=num_classes, num_convs=num_convs)
    # inputs arrive resized, normalised and padded by polyhead's data pipeline: make torchvision's transform an identity
    return FCOS(backbone, num_classes, min_size=image_size, max_size=image_size, image_mean=[0.0] * 3, image_std=[1.0] * 3, head=head)


def _tv_targets(labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": t["boxes"], "labels": t["class_labels"]} for t in labels_from_padded(labels)]


def _stream(loader: DataLoader, count: int):
    """``count`` batches from ``loader``, epoch after epoch."""
    produced = 0
    while produced < count:
        for batch in loader:
            yield batch
            produced += 1
            if produced == count:
                return


def _train(name: str, step, batches) -> dict[str, Any]:
    times = []
    for batch in batches:
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    steady = times[2:] if len(times) > 4 else times
    return {"steps": len(times), "mean_step_seconds": round(statistics.mean(steady), 4), "median_step_seconds": round(statistics.median(steady), 4),
            "train_minutes": round(sum(times) / 60, 2)}


def _map(predict, loader) -> dict[str, float]:
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    with torch.no_grad():
        for batch in loader:
            metric.update(predict(batch), _tv_targets(batch["labels"]))
    result = metric.compute()
    return {"map": round(float(result["map"]), 4), "map_50": round(float(result["map_50"]), 4), "map_75": round(float(result["map_75"]), 4)}


def same_budget(steps: int, seed: int = 0) -> dict[str, Any]:
    cfg = load_config(RECIPE)
    task = get(TASKS, "detection")()
    model_section = {k: v for k, v in cfg.model.to_dict().items() if k != "task"}
    data_section = cfg.data.to_dict()
    config = task.build_config(model_section, data_section)
    data = task.build_data(data_section, config)
    batch_size = int(cfg.train.batch_size)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data.train, batch_size=batch_size, shuffle=True, collate_fn=data.collate_fn, generator=generator, drop_last=True)
    torch.manual_seed(seed)
    batches = list(_stream(loader, steps))  # the same augmented batches for both models
    test_loader = DataLoader(data.test, batch_size=20, collate_fn=data.collate_fn)

    def polyhead_run(total: int):
        torch.manual_seed(seed)
        model = task.build_model(config).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg.train.lr), weight_decay=float(cfg.train.weight_decay))
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(cfg.train.lr), total_steps=total, pct_start=max(0.1, 2.5 / total))

        def step(batch):
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.train.max_grad_norm))
            optimizer.step()
            schedule.step()

        return model, step

    ours, ours_step = polyhead_run(steps)

    head = config.head
    torch.manual_seed(seed)
    theirs = torchvision_fcos(config.num_labels, config.image_size, int(head.get("fpn_channels", 64)), int(head.get("num_convs", 2))).train()
    tv_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    tv_schedule = torch.optim.lr_scheduler.OneCycleLR(tv_optimizer, max_lr=0.01, total_steps=steps, pct_start=max(0.1, 2.5 / steps))

    def theirs_step(batch):
        losses = theirs(list(batch["pixel_values"]), _tv_targets(batch["labels"]))
        loss = sum(losses.values())
        tv_optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), float(cfg.train.max_grad_norm))
        tv_optimizer.step()
        tv_schedule.step()

    ours_train = _train("polyhead", ours_step, batches)
    theirs_train = _train("torchvision", theirs_step, batches)
    processor = task.build_processor(config)
    ours.eval()
    theirs.eval()

    def ours_predict(batch):
        out = ours(pixel_values=batch["pixel_values"])
        return processor.post_process_object_detection(out, threshold=0.05, image_sizes=[tuple(s.tolist()) for s in batch["image_sizes"]])

    def theirs_predict(batch):
        return [{k: d[k] for k in ("boxes", "scores", "labels")} for d in theirs(list(batch["pixel_values"]))]

    ours_map, theirs_map = _map(ours_predict, test_loader), _map(theirs_predict, test_loader)
    ratio = ours_train["mean_step_seconds"] / theirs_train["mean_step_seconds"]

    del batches
    same_time_steps = max(steps, round(steps / ratio))
    ours, ours_step = polyhead_run(same_time_steps)
    torch.manual_seed(seed)
    same_time_train = _train("polyhead", ours_step, _stream(DataLoader(data.train, batch_size=batch_size, shuffle=True, collate_fn=data.collate_fn,
                                                                       generator=torch.Generator().manual_seed(seed), drop_last=True), same_time_steps))
    ours.eval()
    same_time_map = _map(ours_predict, test_loader)
    return {
        "budget": {"steps": steps, "batch_size": batch_size, "image_size": config.image_size, "train_images": len(data.train), "test_images": len(data.test)},
        "polyhead": {"model": "ConvNeXt (depths 1-1-2-1, dims 32-64-128-192) + FPN + FCOS", "optimizer": "AdamW (recipe)",
                     "parameters": sum(p.numel() for p in ours.parameters()), **ours_train, "test": ours_map},
        "torchvision": {"model": "torchvision FCOS, ResNet-18 + FPN (P3-P7) + FCOSHead, weights=None", "optimizer": "SGD momentum 0.9 (torchvision reference)",
                        "parameters": sum(p.numel() for p in theirs.parameters()), **theirs_train, "test": theirs_map},
        "step_time_ratio": round(ratio, 3),
        "map_50_ratio": round(ours_map["map_50"] / theirs_map["map_50"], 3) if theirs_map["map_50"] else None,
        "target": f"polyhead map_50 >= torchvision's at <= {TARGET_STEP_TIME_RATIO}x its step time",
        "target_met": bool(ours_map["map_50"] >= theirs_map["map_50"] and ratio <= TARGET_STEP_TIME_RATIO),
        "same_time": {
            "what": "polyhead's recipe for as many steps as fit in torchvision's training time above",
            "steps": same_time_steps, **same_time_train, "test": same_time_map,
            "map_50_ratio": round(same_time_map["map_50"] / theirs_map["map_50"], 3) if theirs_map["map_50"] else None,
            "map_ratio": round(same_time_map["map"] / theirs_map["map"], 3) if theirs_map["map"] else None,
        },
    }


def pipeline_throughput(images: int = 40) -> dict[str, Any]:
    from PIL import Image

    folder = default_model_dir("object-detection").parent.parent / "assets" / "detection_paste" / "test"
    pictures = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.jpg"))[:images]]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "m"
        shutil.copytree(default_model_dir("object-detection"), model_dir)
        polyhead.export_onnx(model_dir)
        result = {}
        for backend in ("torch", "onnx"):
            pipe = polyhead.pipeline("object-detection", model=str(model_dir), backend=backend)
            for picture in pictures[:3]:
                pipe(picture, threshold=0.3)
            start = time.perf_counter()
            for picture in pictures:
                pipe(picture, threshold=0.3)
            seconds = time.perf_counter() - start
            result[backend] = {"images_per_second": round(len(pictures) / seconds, 2), "images": len(pictures)}
    result["onnx_speedup"] = round(result["onnx"]["images_per_second"] / result["torch"]["images_per_second"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("budget", "pipeline"), help="re-measure one part, keep the other from the results file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = json.loads(RESULTS_PATH.read_text()) if args.only and RESULTS_PATH.is_file() else {}
    results.update({
        "benchmark": "detection",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads()},
    })
    if args.only != "pipeline":
        results["same_budget"] = same_budget(args.steps)
    if args.only != "budget":
        results["pipeline_throughput"] = pipeline_throughput()
        results["default_model"] = json.loads((default_model_dir("object-detection") / "metrics.json").read_text())["test"]
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")
    budget = results.get("same_budget")
    if budget:
        print(json.dumps({k: budget[k] for k in ("step_time_ratio", "map_50_ratio", "target_met")}, indent=2))
        print(f"polyhead test {budget['polyhead']['test']}, {budget['polyhead']['mean_step_seconds']} s/step")
        print(f"torchvision test {budget['torchvision']['test']}, {budget['torchvision']['mean_step_seconds']} s/step")
        print(f"polyhead, same training time ({budget['same_time']['steps']} steps): test {budget['same_time']['test']}")
    if "pipeline_throughput" in results:
        print(f"pipeline images/s: {results['pipeline_throughput']}")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
