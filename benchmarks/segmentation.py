"""Segmentation benchmark: polyhead's Swin + UNETR decoder vs MONAI's own ``SwinUNETR``.

Three measurements, in one run:

* ``step_time``: one training step (forward, Dice+CE loss, backward, AdamW step) of
  ``PolyheadForSegmentation(swin)`` built to MONAI ``SwinUNETR``'s exact layout (same
  feature size, depths, heads, window, patch; the stride-16 map fed raw, as Swin-UNETR
  does; the parameter counts are checked equal) vs ``SwinUNETR`` itself, on one fixed
  batch. Blocks of steps alternate between the two models so machine noise reaches both
  alike; the ratio of the mean block times is reported. Target <= 1.1x.
* ``inference``: the embedded default model segmenting the full embedded volume
  (preprocess, sliding window, inversion to the input grid) through the pipeline, with
  PyTorch and with ONNX Runtime, each in a fresh subprocess: seconds per volume and the
  peak resident memory while segmenting (sampled every 2 ms).
* ``dice``: test-split Dice of polyhead (the default recipe's architecture) vs MONAI
  ``SwinUNETR`` (feature size 12, MONAI's depths/heads) trained with the same budget
  (the recipe's data, patches, optimizer, lr, schedule and number of steps) in one plain
  loop, evaluated with the same sliding window and metrics. SwinUNETR normalises its
  stride-32 map with instance norm, which needs more than one voxel, so both use 64^3
  patches here. Target: polyhead >= SwinUNETR.
* ``whole_head``: the embedded default (or ``--model``) through the pipeline on whole-head
  phantoms (:func:`polyhead.tasks.segmentation.synthesis.phantom_head`: another construction
  than the training heads, seeds ``30000+`` that neither training nor its test split uses), each
  as built (2 mm, RAS), stored left-posterior-superior in int16 (another orientation), and
  resampled to 2 x 2 x 4 mm (thick slices): brain-tissue Dice (grey + white matter against the
  reference's), grey and white matter Dice, brain volume error, and the millilitres labelled
  brain outside the skull (beyond one voxel of the intracranial mask). Targets: brain Dice >= 0.85,
  nothing outside the skull.

Writes ``benchmarks/results/segmentation.json``. Run: ``python -m benchmarks.segmentation``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import SwinUNETR
from torch.utils.data import DataLoader
from transformers import get_scheduler

import polyhead
from polyhead import registry
from polyhead.config import load_config
from polyhead.pipelines import default_model_dir
from polyhead.tasks.segmentation import PolyheadForSegmentation, SegmentationConfig, SegmentationInferer, SegmentationMetrics, SegmentationOutput

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "configs/segmentation/swin_tiny_brain.py"
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "segmentation.json"
TARGET_STEP_TIME_RATIO = 1.1
VOLUME = ROOT / "polyhead" / "assets" / "mni152_2mm" / "imagesTr" / "mni152_2009a.nii.gz"

_INFERENCE_WORKER = r"""
import json, os, sys, threading, time
import polyhead

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

backend, model_dir, volume, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seg = polyhead.pipeline("segmentation", model=model_dir, backend=backend)
seg(volume)  # warm-up
before = rss_mb()
peak = [before]
running = True

def sample():
    while running:
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.002)

thread = threading.Thread(target=sample, daemon=True)
thread.start()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    out = seg(volume)
    times.append(time.perf_counter() - start)
running = False
thread.join()
print(json.dumps({"seconds": times, "rss_after_load_mb": before, "peak_rss_mb": peak[0], "peak_increase_mb": peak[0] - before, "voxels": int(out["mask"].size)}))
"""


def _swinunetr_like_config(feature_size: int, patch: int, num_labels: int) -> SegmentationConfig:
    return SegmentationConfig(
        labels=[f"class_{i}" for i in range(num_labels)],
        patch_size=[patch] * 3,
        backbone={"type": "swin", "feature_size": feature_size, "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
        head={"type": "unetr_decoder", "feature_size": feature_size, "identity_skip_levels": [4]},
    )


def _swinunetr(feature_size: int, num_labels: int) -> SwinUNETR:
    return SwinUNETR(in_channels=1, out_channels=num_labels, feature_size=feature_size, spatial_dims=3, use_checkpoint=False)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def step_time(*, feature_size: int, patch: int, batch_size: int, rounds: int, block: int) -> dict[str, Any]:
    torch.manual_seed(0)
    ours = PolyheadForSegmentation(_swinunetr_like_config(feature_size, patch, 3)).train()
    monai_model = _swinunetr(feature_size, 3).train()
    if _params(ours) != _params(monai_model):
        raise RuntimeError(f"layouts differ: polyhead {_params(ours):,} vs SwinUNETR {_params(monai_model):,} parameters")
    x = torch.rand(batch_size, 1, patch, patch, patch)
    y = torch.randint(0, 3, (batch_size, 1, patch, patch, patch))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    steps = {
        "polyhead": (ours, lambda: ours(pixel_values=x, labels=y).loss),
        "swinunetr": (monai_model, lambda: loss_fn(monai_model(x), y)),
    }
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, (model, _) in steps.items()}

    def run(name: str) -> None:
        optimizers[name].zero_grad(set_to_none=True)
        steps[name][1]().backward()
        optimizers[name].step()

    for name in steps:  # warm-up
        run(name)
        run(name)
    blocks: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for r in range(rounds):
        for name in order[r % 2 :] + order[: r % 2]:
            start = time.perf_counter()
            for _ in range(block):
                run(name)
            blocks[name].append((time.perf_counter() - start) / block)
    mean = {name: statistics.mean(v) for name, v in blocks.items()}
    return {
        "feature_size": feature_size,
        "patch": [patch] * 3,
        "batch_size": batch_size,
        "parameters": {"polyhead": _params(ours), "swinunetr": _params(monai_model)},
        "seconds_per_step": mean,
        "median_seconds_per_step": {name: statistics.median(v) for name, v in blocks.items()},
        "ratio_polyhead_over_swinunetr": mean["polyhead"] / mean["swinunetr"],
        "target": TARGET_STEP_TIME_RATIO,
        "met": mean["polyhead"] / mean["swinunetr"] <= TARGET_STEP_TIME_RATIO,
        "rounds": rounds,
        "block": block,
    }


def inference(*, repeats: int) -> dict[str, Any]:
    from polyhead.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "default"
        import shutil

        shutil.copytree(default_model_dir("segmentation"), model_dir)
        export_onnx(model_dir)
        result = {}
        for backend in ("torch", "onnx"):
            out = subprocess.run(
                [sys.executable, "-c", _INFERENCE_WORKER, backend, str(model_dir), str(VOLUME), str(repeats)],
                check=True, capture_output=True, text=True, cwd=ROOT,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["mean_seconds"] = statistics.mean(row["seconds"])
            result[backend] = row
    result["speedup_onnx_over_torch"] = result["torch"]["mean_seconds"] / result["onnx"]["mean_seconds"]
    result["memory_ratio_onnx_over_torch"] = result["onnx"]["peak_rss_mb"] / result["torch"]["peak_rss_mb"]
    result["memory_note"] = "peak resident memory sampled every 2 ms during the timed volumes (after a warm-up volume); peak_increase_mb is above the loaded pipeline"
    result["volume"] = str(VOLUME.relative_to(ROOT))
    return result


class _Logits:
    """A bare patch network (``patches -> logits``) behind the call signature the task's inferer runs."""

    def __init__(self, forward_logits) -> None:
        self.forward_logits = forward_logits

    def __call__(self, pixel_values: torch.Tensor) -> SegmentationOutput:
        return SegmentationOutput(logits=self.forward_logits(pixel_values))


def _train_and_test(name: str, model: torch.nn.Module, forward_logits, data, config: SegmentationConfig, *, steps: int, lr: float, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    loader = DataLoader(data.train, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=20, num_training_steps=steps)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    done, start = 0, time.perf_counter()
    model.train()
    while done < steps:
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward_logits(batch["pixel_values"]), batch["labels"].long())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            done += 1
            if done == steps:
                break
    train_seconds = time.perf_counter() - start
    model.eval()
    metrics = SegmentationMetrics(labels=config.labels, spacing=config.target_spacing)
    inferer = SegmentationInferer(config)  # the task's sliding window, for both networks
    patch_network = _Logits(forward_logits)
    with torch.no_grad():
        for sample in data.test:
            logits = inferer.logits(patch_network, sample["pixel_values"][None])
            metrics.update({"prediction": logits.argmax(1).to(torch.uint8), "labels": sample["labels"]})
    return {**metrics.compute(), "train_seconds": train_seconds, "steps": steps, "parameters": _params(model)}


def dice(*, steps: int, patch: int) -> dict[str, Any]:
    cfg = load_config(RECIPE, [f"model.patch_size=[{patch},{patch},{patch}]"])
    task = registry.get(registry.TASKS, "segmentation")()
    model_section = {k: v for k, v in cfg["model"].items() if k != "task"}
    config = task.build_config(model_section, cfg["data"])
    data = task.build_data(cfg["data"], config)
    lr = float(cfg["train"]["lr"])
    torch.manual_seed(0)
    ours = PolyheadForSegmentation(config)
    torch.manual_seed(0)
    theirs = _swinunetr(12, len(config.labels))
    return {
        "patch": [patch] * 3,
        "budget": {"steps": steps, "batch_size": 2, "lr": lr, "schedule": "cosine, 20 warm-up steps"},
        "polyhead": _train_and_test("polyhead", ours, lambda x: ours(pixel_values=x).logits, data, config, steps=steps, lr=lr, seed=0),
        "swinunetr": _train_and_test("swinunetr", theirs, theirs, data, config, steps=steps, lr=lr, seed=0),
        "test_split": data.description["splits"]["test"],
    }


WHOLE_HEAD_SEEDS = (30000, 30001, 30002, 30003)
TARGET_BRAIN_DICE = 0.85


def _whole_head_variants(image, labels, inside) -> list[tuple[str, Any, np.ndarray, np.ndarray]]:
    """``(name, scan, reference labels, intracranial mask)`` in the scan's own grid, for one phantom."""
    import nibabel as nib
    from monai.data import MetaTensor
    from monai.transforms import Spacingd

    data = [np.asanyarray(v.dataobj) for v in (image, labels, inside)]
    variants = [("2mm_ras", image, data[1], data[2])]
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = data[0].shape[0] - 1, data[0].shape[1] - 1
    variants.append(("2mm_lps_int16", nib.Nifti1Image(np.ascontiguousarray(data[0][::-1, ::-1]), image.affine @ flip), data[1][::-1, ::-1], data[2][::-1, ::-1]))
    pair = {k: MetaTensor(torch.as_tensor(v[None].astype(np.float32)), affine=torch.as_tensor(image.affine)) for k, v in zip(("image", "label", "inside"), data)}
    thick = Spacingd(["image", "label", "inside"], pixdim=(2.0, 2.0, 4.0), mode=("bilinear", "nearest", "nearest"))(pair)
    scan = nib.Nifti1Image(thick["image"][0].numpy().astype(np.float32), np.asarray(thick["image"].affine))
    variants.append(("2x2x4mm_thick", scan, thick["label"][0].numpy().round().astype(np.uint8), thick["inside"][0].numpy().round().astype(np.uint8)))
    return variants


def whole_head(*, model: str | None = None, seeds: tuple[int, ...] = WHOLE_HEAD_SEEDS) -> dict[str, Any]:
    """Dice, volume error and labels outside the skull of a model on whole-head phantoms (see the module docstring)."""
    from scipy import ndimage

    from polyhead.tasks.segmentation.synthesis import HeadAnatomy, phantom_head

    seg = polyhead.pipeline("segmentation", model=model)
    anatomy = HeadAnatomy.from_folder("mni152_2mm")
    rows = []
    for seed in seeds:
        image, labels, inside = phantom_head(anatomy, seed)
        for name, scan, reference, intracranial in _whole_head_variants(image, labels, inside):
            start = time.perf_counter()
            out = seg(scan)
            seconds = time.perf_counter() - start
            mask, voxel_ml = out["mask"], abs(float(np.linalg.det(out["affine"][:3, :3]))) / 1000.0
            brain, truth = mask > 0, reference > 0
            near = ndimage.binary_dilation(intracranial > 0, iterations=1)

            def dice_of(a: np.ndarray, b: np.ndarray) -> float:
                return float(2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1))

            rows.append({
                "seed": seed, "variant": name, "seconds": round(seconds, 2),
                "dice_brain": dice_of(brain, truth), "dice_grey_matter": dice_of(mask == 1, reference == 1),
                "dice_white_matter": dice_of(mask == 2, reference == 2),
                "brain_ml": float(brain.sum() * voxel_ml), "reference_brain_ml": float(truth.sum() * voxel_ml),
                "volume_error": float((brain.sum() - truth.sum()) / truth.sum()),
                "outside_skull_ml": float((brain & ~near).sum() * voxel_ml),
            })
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        part = [r for r in rows if r["variant"] == variant]
        summary[variant] = {k: statistics.mean(r[k] for r in part) for k in ("dice_brain", "dice_grey_matter", "dice_white_matter", "volume_error", "outside_skull_ml", "seconds")}
        summary[variant]["abs_volume_error"] = statistics.mean(abs(r["volume_error"]) for r in part)
        summary[variant]["max_outside_skull_ml"] = max(r["outside_skull_ml"] for r in part)
    every = [r["dice_brain"] for r in rows]
    return {
        "model": model or "embedded default",
        "phantoms": "phantom_head(mni152_2mm, seed): smoothed-skull head, fixed T1 contrasts, real template T1 in the brain, bias, Rician noise",
        "seeds": list(seeds),
        "summary": summary,
        "rows": rows,
        "target_dice_brain": TARGET_BRAIN_DICE,
        "met": min(every) >= TARGET_BRAIN_DICE and all(r["outside_skull_ml"] == 0 for r in rows),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("step_time", "inference", "dice", "whole_head"), action="append")
    parser.add_argument("--model", default=None, help="whole_head: a model folder instead of the embedded default")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--block", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dice-steps", type=int, default=240)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    parts = args.only or ["step_time", "inference", "dice", "whole_head"]
    results: dict[str, Any] = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.is_file() and args.only else {}
    if "step_time" in parts:
        results["step_time"] = step_time(feature_size=12, patch=64, batch_size=1, rounds=args.rounds, block=args.block)
        print("step time", json.dumps(results["step_time"], indent=1))
    if "inference" in parts:
        results["inference"] = inference(repeats=args.repeats)
        print("inference", json.dumps(results["inference"], indent=1))
    if "dice" in parts:
        results["dice"] = dice(steps=args.dice_steps, patch=64)
        print("dice", json.dumps(results["dice"], indent=1))
    if "whole_head" in parts:
        results["whole_head"] = whole_head(model=args.model)
        print("whole head", json.dumps(results["whole_head"]["summary"], indent=1))
    results["environment"] = {
        "date": datetime.date.today().isoformat(), "polyhead": polyhead.__version__, "torch": torch.__version__,
        "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
    }
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
