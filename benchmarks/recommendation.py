"""Recommendation on the real MovieLens-100k (``make bench``).

1. Next-item: the embedded default (SASRec-style, trained by ``polyhead train
   configs/recommendation/sasrec_ml100k.py``) evaluated on the leave-one-out test split,
   ranked against all 1,682 items, beside most-popular and BPR-MF fitted in the same run.
2. CTR: ``configs/recommendation/hiformer_ctr_ml100k.py`` trained here, AUC / LogLoss beside
   logistic regression on the same split.
3. Top-10 retrieval throughput (users/s) at batch 256: the network plus history masking and
   top-k, eager PyTorch vs ONNX Runtime, same process, same thread count.

Writes ``benchmarks/results/recommendation.json`` and prints the tables.

    python -m benchmarks.recommendation [--skip-ctr]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import polyhead
from polyhead.cli import metrics_table
from polyhead.export import export_onnx
from polyhead.loading import load_model
from polyhead.pipelines import default_model_dir
from polyhead.tasks.recommendation import RecommendationTask
from polyhead.tasks.recommendation.metrics import mask_items
from polyhead.workflows import evaluate_model_dir

RESULTS = Path(__file__).resolve().parent / "results" / "recommendation.json"
BATCH = 256
RECBOLE_NOTE = (
    "Not compared: RecBole's published SASRec figures for ml-100k could not be located with certainty "
    "(no verifiable page found in this offline session), so none are quoted. Note that figures from "
    "sampled-negative protocols (rank among 100 negatives) are not comparable with the all-item ranking here."
)


def _interleaved_medians(fns: dict, repeats: int = 40) -> dict[str, float]:
    """Median seconds of each function, the functions run alternately so drifting load hits both alike."""
    for fn in fns.values():
        fn(), fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def next_item() -> dict:
    report = evaluate_model_dir(default_model_dir("recommendation"))
    return {"test": report["metrics"], "baselines": report["baselines"], "data": report["data"]}


def ctr(output_dir: Path) -> dict:
    result = polyhead.train(
        "configs/recommendation/hiformer_ctr_ml100k.py",
        cfg_options={"train.output_dir": str(output_dir), "train.log_with": None, "train.progress_bar": False},
    )
    return {"test": result.metrics["test"], "baselines": result.metrics["baselines"], "train_seconds": result.metrics["train_seconds"],
            "data": result.metrics["data"]}


def throughput() -> dict:
    """Users/s of top-10 retrieval (network + masking + top-k) at batch 256."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        shutil.copytree(default_model_dir("recommendation"), model_dir)
        export_onnx(model_dir)
        model = load_model(model_dir, backend="torch").eval()
        onnx_model = load_model(model_dir, backend="onnx")
        task = RecommendationTask()
        data = task.build_data({"source": "ml-100k"}, model.config)
        rows = [data.test[i] for i in range(BATCH)]
        input_ids = torch.stack([r["input_ids"] for r in rows])
        width = max(r["exclude_items"].numel() for r in rows)
        exclude = torch.stack([torch.cat((r["exclude_items"], r["exclude_items"].new_full((width - r["exclude_items"].numel(),), model.config.num_items))) for r in rows])

        def retrieve(net):
            scores = net(input_ids=input_ids).scores
            return mask_items(scores, exclude).topk(10, dim=1).indices

        with torch.inference_mode():
            same = torch.equal(retrieve(model), retrieve(onnx_model))
            medians = _interleaved_medians({"eager": lambda: retrieve(model), "onnx": lambda: retrieve(onnx_model)})
            eager, onnx = medians["eager"], medians["onnx"]
    return {
        "batch": BATCH,
        "threads": torch.get_num_threads(),
        "pytorch_users_per_s": round(BATCH / eager, 1),
        "onnxruntime_users_per_s": round(BATCH / onnx, 1),
        "onnx_over_pytorch": round(eager / onnx, 3),
        "same_top10": same,
        "what": "median of 40 interleaved runs each; a run = network forward on (256, max_length) histories + history masking + top-10",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-ctr", action="store_true", help="skip training the CTR model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results: dict = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"polyhead": polyhead.__version__, "torch": torch.__version__},
        "protocol": "MovieLens-100k, leave-one-out by time per user, ranked against ALL items, history masked",
        "recbole_reference": RECBOLE_NOTE,
    }
    started = time.perf_counter()
    results["next_item"] = next_item()
    print("Next-item (MovieLens-100k, leave-one-out, all-item ranking):")
    print(metrics_table(results["next_item"]["test"], results["next_item"]["baselines"]))
    beats = {
        base: all(results["next_item"]["test"][m] > results["next_item"]["baselines"][base][m] for m in ("hr@10", "ndcg@10"))
        for base in results["next_item"]["baselines"]
    }
    results["next_item"]["beats_baselines_on_hr_and_ndcg"] = beats
    if not args.skip_ctr:
        with tempfile.TemporaryDirectory() as tmp:
            results["ctr"] = ctr(Path(tmp) / "ctr")
        print("\nCTR (rating >= 4, random 80/10/10 rows):")
        print(metrics_table(results["ctr"]["test"], results["ctr"]["baselines"]))
    results["throughput"] = throughput()
    tp = results["throughput"]
    print(f"\nTop-10 retrieval at batch {BATCH}: PyTorch {tp['pytorch_users_per_s']} users/s, ONNX Runtime "
          f"{tp['onnxruntime_users_per_s']} users/s ({tp['onnx_over_pytorch']}x), same top-10: {tp['same_top10']}")
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nWrote {RESULTS}")


if __name__ == "__main__":
    main()
