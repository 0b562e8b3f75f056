"""The ``polyhead`` command: train, evaluate, export, push, predict, list."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import PolyheadError

__all__ = ["main", "build_parser"]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(test: dict[str, float], baselines: dict[str, dict[str, float]]) -> str:
    """``metric | model | baseline...`` as aligned text."""
    names = list(baselines)
    rows = [["metric", "model", *names]]
    for metric, value in test.items():
        rows.append([metric, _fmt(value), *(_fmt(baselines[n].get(metric, "-")) for n in names)])
    return _table(rows)


def _cmd_train(args: argparse.Namespace) -> int:
    from .workflows import train

    result = train(args.config, cfg_options=args.cfg_options or (), resume=args.resume, init_from=args.init_from,
                   init_modules=args.init_modules, init_ignore_mismatched=args.init_ignore_mismatched or None)
    print()
    print(metrics_table(result.metrics["test"], result.metrics["baselines"]))
    print(f"\nTest split: {json.dumps(result.metrics['data'].get('splits', {}).get('test', {}))}")
    print(f"Saved model: {result.best_dir}")
    return 0


def _is_rl_model(model_dir: str) -> bool:
    from .model_dir import read_config_dict, task_of

    return Path(model_dir).is_dir() and task_of(read_config_dict(model_dir)) == "rl"


def _cmd_evaluate_agent(args: argparse.Namespace) -> int:
    from .tasks.rl import evaluate_agent

    report = evaluate_agent(args.model_dir, args.env, episodes=args.episodes, seed=args.seed, target_return=args.target_return,
                            video=args.video, backend=args.backend)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"{report['env_id']}: mean return {report['mean_return']:.2f} ± {report['std_return']:.2f} over {report['episodes']} "
              f"episodes (seeds {report['seed']}..{report['seed'] + report['episodes'] - 1}; min {report['min_return']:.1f}, "
              f"max {report['max_return']:.1f}), {report['steps_per_second']:.0f} env steps/s ({args.backend})")
        if report.get("video"):
            print(f"Video: {report['video']}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .workflows import evaluate_model_dir

    if args.env is not None or _is_rl_model(args.model_dir):  # RL agents are evaluated in their environment
        return _cmd_evaluate_agent(args)
    report = evaluate_model_dir(args.model_dir, data=args.data, split=args.split, batch_size=args.batch_size, backend=args.backend)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(metrics_table(report["metrics"], report["baselines"]))
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    import numpy as np

    from .tasks.rl import collect

    out = args.out or str(Path("runs/trajectories") / f"{args.env}-{Path(args.model_dir).name}")
    dataset = collect(args.model_dir, args.env, episodes=args.episodes, out=out, seed=args.seed, epsilon=args.epsilon,
                      deterministic=not args.stochastic, target_return=args.target_return, noise=args.noise,
                      overwrite=args.overwrite)
    returns = np.asarray(dataset["episode_return"])
    print(f"Collected {len(dataset)} {args.env} episodes ({int(np.sum(dataset['length']))} steps), return "
          f"{returns.mean():.2f} ± {returns.std():.2f} (min {returns.min():.1f}, max {returns.max():.1f}) -> {out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .model_dir import onnx_names

    report = export_onnx(args.model_dir, quantize=args.quantize, atol=args.atol, rtol=args.rtol, task=args.task)
    onnx_name, _, report_name = onnx_names(args.task)
    rows = [["input sizes", "output", "max abs diff", "max rel diff", "ok"]]
    for row in report["parity"]:
        for name, diff in row["outputs"].items():
            rows.append([str(row["shapes"]), name, f"{diff['max_abs_diff']:.3g}", f"{diff['max_rel_diff']:.3g}", "yes" if diff["within_tolerance"] else "NO"])
    print(f"Exported {Path(args.model_dir) / onnx_name} ({report['file_bytes'] / 1e6:.2f} MB, opset {report['opset']}, "
          f"dynamic axes {report['dynamic_axes']}) in {report['export_seconds']} s")
    print(f"Parity with PyTorch (tolerance {report['tolerance']['rule']}, atol={report['tolerance']['atol']}, rtol={report['tolerance']['rtol']}):")
    print(_table(rows))
    for batch, lat in report["latency"].items():
        print(f"{batch}: eager {lat['eager_ms']} ms, ONNX Runtime {lat['onnx_ms']} ms ({lat['speedup']}x)")
    if "int8" in report:
        int8 = report["int8"]
        for batch, lat in int8["latency"].items():
            print(f"int8 {batch}: ONNX Runtime {lat['onnx_ms']} ms ({lat['speedup']}x eager)")
        if "test_metrics" in int8:
            change = ", ".join(f"{k} {v:+.2%}" for k, v in int8["test_metrics"]["relative_change"].items())
            print(f"int8 test metrics vs fp32: {change}")
    print(f"Report: {Path(args.model_dir) / report_name}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    import os

    from .errors import ConfigError
    from .hub import push_to_hub

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env) or None
        if token is None:
            raise ConfigError(f"--token-env {args.token_env}: that environment variable is not set (or empty).")
    url = push_to_hub(args.model_dir, args.repo_id, private=args.private, revision=args.revision, token=token,
                      commit_message=args.commit_message)
    print(f"Pushed {args.model_dir} to {args.repo_id}{f' ({args.revision})' if args.revision else ''} in one commit: {url}")
    return 0


def _jsonable(value: Any) -> Any:
    """A pipeline result as JSON: numbers as numbers; a large array (a mask) as its shape, not its values."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .model_dir import MULTITASK_MODEL_TYPE, read_config_dict, task_of
    from .pipelines import ALIASES, PIPELINES, pipeline
    from .registry import TASKS, get

    if args.model in PIPELINES or args.model in ALIASES:  # a task name: its embedded default
        task, model, extra = get(TASKS, PIPELINES[ALIASES.get(args.model, args.model)][1])(), None, {}
    else:
        from .loading import local_model_dir

        config = read_config_dict(local_model_dir(args.model))  # a Hub repo id: config.json says the task
        model, extra = args.model, {}
        if config["model_type"] == MULTITASK_MODEL_TYPE:  # one of its tasks, on the shared backbone
            tasks = config.get("tasks") or {}
            if args.task_name not in tasks:
                raise InputError(f"{args.model} is a multi-task model: name one of its tasks with --task-name ({', '.join(tasks)}).")
            config, extra = tasks[args.task_name], {"task_name": args.task_name}
        task = get(TASKS, task_of(config))()
    options = {name: getattr(args, name) for name in ("threshold", "top_k", "prediction_length", "plot", "output", "episodes", "seed")
               if getattr(args, name) is not None}
    if "output" in options and len(args.inputs) > 1:
        raise InputError("--output names one file; predict one input per call to write it.")
    pipe = pipeline(task.pipeline_task, model=model, backend=args.backend, **extra)
    for result in task.predict(pipe, args.inputs, **options):  # JSON lines: one result per input, in order
        print(json.dumps(result, default=_jsonable))
    return 0


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from .upgrade import upgrade_model_dir

    print(f"Upgraded: {upgrade_model_dir(args.model_dir, args.out)}")
    return 0


def _list_model_dir(model_dir: str, as_json: bool) -> int:
    from .loading import AutoModel
    from .model_dir import MULTITASK_MODEL_TYPE

    model = AutoModel.from_pretrained(model_dir)
    tasks = list(model.config.tasks) if model.config.model_type == MULTITASK_MODEL_TYPE else [model.config.model_type]
    parts = [[name, type(module).__name__, f"{sum(p.numel() for p in module.parameters()):,}"] for name, module in model.named_parts()]
    if as_json:
        print(json.dumps({"model_type": model.config.model_type, "tasks": {n: model.config.tasks[n]["model_type"] for n in tasks}
                          if model.config.model_type == MULTITASK_MODEL_TYPE else tasks, "parts": {r[0]: r[2] for r in parts}}, indent=2))
        return 0
    print(f"{model_dir}: {model.config.model_type}, tasks: {', '.join(tasks)}")
    print(_table([["part", "class", "parameters"], *parts]))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from . import registry

    if args.model_dir is not None:
        return _list_model_dir(args.model_dir, args.json)

    backbones = {n: registry.get(registry.BACKBONES, n) for n in registry.names(registry.BACKBONES)}
    heads = {n: registry.get(registry.HEADS, n) for n in registry.names(registry.HEADS)}
    tasks = {n: registry.get(registry.TASKS, n) for n in registry.names(registry.TASKS)}
    if args.json:
        print(json.dumps({
            "tasks": {n: {"pipeline": t.pipeline_task, "config": t.default_config} for n, t in tasks.items()},
            "backbones": {n: b.kind for n, b in backbones.items()},
            "heads": {n: sorted(b for b, bc in backbones.items() if h.accepts(bc)) for n, h in heads.items()},
        }, indent=2))
        return 0
    print("Tasks")
    print(_table([["task", "pipeline", "default config"]] + [[n, t.pipeline_task, t.default_config] for n, t in tasks.items()]))
    print("\nBackbones")
    print(_table([["backbone", "kind", "class"]] + [[n, b.kind, b.__name__] for n, b in backbones.items()]))
    print("\nHeads (and the backbones each accepts)")
    print(_table([["head", "class", "accepts"]] + [
        [n, h.__name__, ", ".join(b for b, bc in backbones.items() if h.accepts(bc)) or "-"] for n, h in heads.items()
    ]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polyhead",
        description="Train, evaluate and run polyhead models. Every model dir is a Hugging Face model dir.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a config file or a task's default recipe",
                       description="Train from an mmengine config (or a task name such as 'forecasting'); "
                       "writes <train.output_dir>/best with the model, processor and metrics.")
    p.add_argument("config", help="config file (e.g. configs/forecasting/patchtst_co2.py) or task name")
    p.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", help="override config keys, e.g. train.epochs=5 model.horizon=26")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in <output_dir>/checkpoints")
    p.add_argument("--init-from", metavar="DIR_OR_HUB_ID",
                   help="start from the weights of a trained polyhead model (fine-tuning) instead of random weights")
    p.add_argument("--init-modules", metavar="MODULES",
                   help="which parts to copy with --init-from: backbone, adapter, head, stem (comma-separated; default: all)")
    p.add_argument("--init-ignore-mismatched", action="store_true",
                   help="skip tensors whose shapes differ (they are listed) instead of failing")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="report a model's metrics on the test split of its data (or --data)",
                       description="Evaluate a saved model dir on the test split of its training data, or of --data.")
    p.add_argument("model_dir")
    p.add_argument("--data", help="data source replacing the training data (file or folder)")
    p.add_argument("--split", default="test", choices=["test", "validation"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="run PyTorch or the exported model.onnx")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    rl = p.add_argument_group("RL agents (played in a Gymnasium environment)")
    rl.add_argument("--env", help="Gymnasium id (default: the agent's training environment)")
    rl.add_argument("--episodes", type=int, default=20)
    rl.add_argument("--seed", type=int, default=0, help="reset seed of the first episode (then +1 each)")
    rl.add_argument("--target-return", type=float, help="return a Decision Transformer is conditioned on")
    rl.add_argument("--video", metavar="OUT.mp4", help="record the first episode (Gymnasium RecordVideo; needs moviepy)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("collect", help="roll an RL agent (or 'random') out into a datasets dataset of trajectories",
                       description="Play episodes with MODEL_DIR (a polyhead RL agent), 'random', or a hand-written controller "
                       "('lunarlander-heuristic': Gymnasium's LunarLander heuristic; 'pendulum-swingup': energy-based "
                       "swing-up + PD) and save them with datasets' save_to_disk: one row per episode (observations, "
                       "actions, rewards, terminations, truncations).")
    p.add_argument("model_dir", help="RL model dir, 'random' (uniform actions), 'lunarlander-heuristic' or 'pendulum-swingup'")
    p.add_argument("--env", required=True, help="Gymnasium id, e.g. CartPole-v1")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--out", help="output folder (default: runs/trajectories/<env>-<model>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a trajectory folder polyhead wrote before (a folder polyhead did not write is never replaced)")
    p.add_argument("--seed", type=int, default=0, help="reset seed of the first episode (then +1 each)")
    p.add_argument("--epsilon", type=float, default=0.0, help="probability of a random action instead of the agent's")
    p.add_argument("--noise", type=float, default=0.0,
                   help="std of Gaussian noise added to a hand-written controller's continuous actions (clipped to the bounds)")
    p.add_argument("--stochastic", action="store_true", help="sample the agent's actions instead of taking the most likely")
    p.add_argument("--target-return", type=float, help="return a Decision Transformer is conditioned on")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("export", help="export a model to ONNX and check its parity with PyTorch",
                       description="Write MODEL_DIR/model.onnx (dynamic batch), run ONNX Runtime against PyTorch on "
                       "fresh inputs of other sizes, fail if they differ beyond the tolerance, and write onnx_report.json.")
    p.add_argument("model_dir")
    p.add_argument("--quantize", choices=["int8"], help="also write a dynamic-int8 model.int8.onnx with its own report")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: the task's, 1e-4)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: the task's, 1e-5)")
    p.add_argument("--task", help="the task to export of a multi-task model folder (writes model.<task>.onnx)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("push", help="push a model dir (weights, config, processor, ONNX, model card) to the Hub in one commit",
                       description="Render MODEL_DIR's model card (README.md) from its metrics, then upload the weights, "
                       "config, processor, metrics, training config, model.onnx (if exported) and the card to REPO_ID "
                       "in one commit. The endpoint is HF_ENDPOINT (default huggingface.co).")
    p.add_argument("model_dir")
    p.add_argument("repo_id", help="org/name (or name, in your own namespace)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    p.add_argument("--revision", help="branch to commit to (default: main; created if missing)")
    p.add_argument("--token-env", metavar="VAR", help="read the token from this environment variable "
                   "(default: HF_TOKEN, then the token saved by `hf auth login`)")
    p.add_argument("--commit-message", help="default: 'Upload polyhead <task> model'")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("predict", help="run a model (or a task's embedded default) on input files and print JSON lines",
                       description="Run MODEL's pipeline on each INPUT and print one JSON line per input. MODEL is a model folder, "
                       "a Hub repo id, or a task name (forecasting, recommendation, asr, object-detection, segmentation, rl) for its "
                       "embedded default. Inputs are each task's natural files: .csv/.parquet/.json tables (forecasting), a JSON "
                       "file or JSON lines of requests (recommendation), .wav/.flac/.ogg (speech), images (detection), .nii/.nii.gz "
                       "(segmentation), a Gymnasium id (rl: the agent plays episodes).")
    p.add_argument("model", metavar="MODEL_OR_TASK")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="run PyTorch or the exported model.onnx")
    p.add_argument("--threshold", type=float, help="object detection: the score threshold (default 0.5)")
    p.add_argument("--top-k", dest="top_k", type=int, help="recommendation: how many items (default 10)")
    p.add_argument("--prediction-length", dest="prediction_length", type=int, help="forecasting: how many steps (default: the model's)")
    p.add_argument("--plot", metavar="OUT.png", help="forecasting: also save a plot of each forecast (history, median, quantile band)")
    p.add_argument("--output", metavar="OUT.nii.gz", help="segmentation: also write the mask as NIfTI (one input per call)")
    p.add_argument("--episodes", type=int, help="rl: episodes to play per environment (default 1)")
    p.add_argument("--seed", type=int, help="rl: reset seed of the first episode (default 0)")
    p.add_argument("--task-name", dest="task_name", help="a multi-task model folder: which of its tasks to run")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("upgrade", help="rewrite a model folder written by polyhead 0.1 in the backbone + adapter layout",
                       description="Rename the tensors of a polyhead 0.1 model folder (stem.x -> adapter.stem.x) and update its "
                       "config.json (RL and recommendation get one model type per objective). The weights are unchanged.")
    p.add_argument("model_dir")
    p.add_argument("--out", help="write the upgraded folder here instead of in place")
    p.set_defaults(func=_cmd_upgrade)

    p = sub.add_parser("list", help="list tasks, backbones, heads and which heads accept which backbones (or what a model folder holds)")
    p.add_argument("model_dir", nargs="?", help="a model folder: list its backbone and task adapters with their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PolyheadError as err:
        print(f"polyhead {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
