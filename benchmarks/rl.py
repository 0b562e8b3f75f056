"""RL benchmarks (``make bench``): Decision Transformer vs behaviour cloning, policy latency, env steps/s.

1. Decision Transformer vs a behaviour-cloning MLP trained on the same mixed-quality
   CartPole-v1 trajectories (collected with the embedded PPO-GTrXL agent: expert,
   epsilon-0.5-noisy and random episodes): mean return over the same 20 seeded episodes.
   The DT is trained by ``polyhead train configs/rl/decision_transformer_cartpole.py``
   (skipped with ``--dt-dir`` pointing at an already trained one).
2. Policy latency per step at batch 1: eager PyTorch vs ONNX Runtime (median, same process,
   same threads, from :func:`polyhead.export_onnx`), for the PPO agent and the DT.
3. Environment steps per second while evaluating (policy + env), PyTorch vs ONNX Runtime,
   beside a random policy (the environment alone).

Writes ``benchmarks/results/rl.json``.

    python -m benchmarks.rl [--dt-dir runs/dt_cartpole/best] [--work runs/bench_rl]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import polyhead
from polyhead.pipelines import default_model_dir
from polyhead.tasks.rl import RandomPolicy, collect
from polyhead.tasks.rl.data import load_trajectories, split_episodes
from polyhead.tasks.rl.rollout import run_episodes

RESULTS = Path(__file__).resolve().parent / "results" / "rl.json"
ENV = "CartPole-v1"
EPISODES = 20


class BCPolicy:
    """A behaviour-cloning MLP acting greedily (the reference for the Decision Transformer)."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray) -> None:
        self.net, self.mean, self.std = net.eval(), mean, std

    def reset(self, index=None) -> None:
        pass

    @torch.no_grad()
    def act(self, observations, rewards=None) -> np.ndarray:
        x = torch.as_tensor((np.asarray(observations, dtype=np.float32) - self.mean) / self.std)
        return self.net(x).argmax(-1).numpy()


def train_bc(sources: list[str], *, steps: int, seed: int = 0) -> tuple[BCPolicy, dict]:
    """Cross-entropy MLP ``obs -> action`` on the DT's training episodes (same split), AdamW, batch 64."""
    episodes, _ = load_trajectories(sources)
    train = split_episodes(episodes, val_fraction=0.05, test_fraction=0.05, seed=0)["train"]
    obs = np.concatenate([e.observations for e in train])
    actions = np.concatenate([e.actions for e in train]).astype(np.int64)
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    x, y = torch.as_tensor((obs - mean) / std), torch.as_tensor(actions)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(obs.shape[1], 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, int(actions.max()) + 1))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    started = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    info = {"gradient_steps": steps, "batch_size": 64, "train_transitions": len(x), "train_seconds": round(time.perf_counter() - started, 1),
            "parameters": sum(p.numel() for p in net.parameters())}
    return BCPolicy(net, mean, std), info


def make_data(agent_dir: Path, work: Path) -> list[str]:
    """Mixed-quality trajectories, as in configs/rl/decision_transformer_cartpole.py."""
    plan = [("cartpole-expert", str(agent_dir), 50, 0.0, 0), ("cartpole-eps0.5", str(agent_dir), 100, 0.5, 1000),
            ("cartpole-random", "random", 200, 0.0, 2000)]
    sources = []
    for name, policy, episodes, epsilon, seed in plan:
        out = work / name
        if not out.is_dir():
            collect(policy, ENV, episodes=episodes, seed=seed, epsilon=epsilon, out=out)
        sources.append(str(out))
    return sources


def latency(model_dir: Path, tmp: Path) -> dict:
    target = tmp / model_dir.name
    shutil.copytree(model_dir, target)
    report = polyhead.export_onnx(target)
    return {"batch_1": report["latency"]["batch_1"], "onnx_dir": str(target)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dt-dir", help="an already trained Decision Transformer (default: train one)")
    parser.add_argument("--work", default="runs/bench_rl")
    parser.add_argument("--bc-steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small policies act fastest on one thread (and the machine is shared)
    work = Path(args.work)
    agent_dir = default_model_dir("reinforcement-learning")
    sources = make_data(agent_dir, work / "data")
    returns = {"behaviour_data": float(np.mean([e.total_return for e in load_trajectories(sources)[0]]))}

    dt_dir = Path(args.dt_dir) if args.dt_dir else None
    dt_info: dict = {}
    if dt_dir is None:
        result = polyhead.train("configs/rl/decision_transformer_cartpole.py",
                                cfg_options={"data.source": sources, "train.output_dir": str(work / "dt"), "train.progress_bar": False})
        dt_dir = result.best_dir
    metrics = json.loads((dt_dir / "metrics.json").read_text())
    dt_info = {"gradient_steps": metrics.get("global_step"), "train_seconds": metrics.get("train_seconds"), "parameters": metrics.get("num_parameters")}

    dt_eval = polyhead.evaluate_agent(dt_dir, ENV, episodes=EPISODES, seed=0)
    bc, bc_info = train_bc(sources, steps=args.bc_steps)
    bc_eval = run_episodes(ENV, lambda env: bc, episodes=EPISODES, seed=0)
    random_eval = run_episodes(ENV, lambda env: RandomPolicy(env.action_space, seed=0), episodes=EPISODES, seed=0)
    returns.update({"decision_transformer": dt_eval["mean_return"], "decision_transformer_std": dt_eval["std_return"],
                    "bc_mlp": bc_eval["mean_return"], "bc_mlp_std": bc_eval["std_return"], "random": random_eval["mean_return"]})

    tmp = work / "onnx"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lat = {"ppo_gtrxl": latency(agent_dir, tmp), "decision_transformer": latency(dt_dir, tmp)}
    steps = {}
    for name, info in lat.items():
        for backend, model in (("torch", info["onnx_dir"]), ("onnx", info["onnx_dir"])):
            r = polyhead.evaluate_agent(model, ENV, episodes=3, seed=100, backend=backend)
            steps[f"{name}_{backend}"] = round(r["steps_per_second"], 1)
    steps["random_policy"] = round(random_eval["steps_per_second"], 1)

    results = {
        "what": f"{ENV}: mean return over {EPISODES} episodes (reset seeds 0..{EPISODES - 1}, greedy actions); policy latency "
                "per step at batch 1 (median ms, eager PyTorch vs ONNX Runtime, same process and threads); env steps/s while evaluating",
        "threads": torch.get_num_threads(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"polyhead": polyhead.__version__, "torch": torch.__version__},
        "data": {"sources": sources, "episodes": len(load_trajectories(sources)[0]), "behaviour_mean_return": returns["behaviour_data"]},
        "mean_return": returns,
        "dt_vs_bc": {"decision_transformer": dt_info, "bc_mlp": bc_info,
                     "ratio_dt_over_bc": round(returns["decision_transformer"] / max(returns["bc_mlp"], 1e-9), 3)},
        "latency_ms_batch_1": {name: info["batch_1"] for name, info in lat.items()},
        "env_steps_per_second": steps,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"mean return on {ENV}: DT {returns['decision_transformer']:.1f} ± {returns['decision_transformer_std']:.1f} | "
          f"BC-MLP {returns['bc_mlp']:.1f} ± {returns['bc_mlp_std']:.1f} | data {returns['behaviour_data']:.1f} | random {returns['random']:.1f}")
    for name, row in results["latency_ms_batch_1"].items():
        print(f"{name}: eager {row['eager_ms']} ms | ORT {row['onnx_ms']} ms ({row['speedup']}x) per step at batch 1")
    print("env steps/s while evaluating: " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
