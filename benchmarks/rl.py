"""RL benchmarks (``make bench``): Decision Transformer vs behaviour cloning, policy latency, env steps/s.

1. Offline RL, per environment: a Decision Transformer vs a behaviour-cloning MLP trained on the
   same mixed-quality trajectories (same training episodes), mean return over the same 20 seeded
   episodes, beside the clean behaviour policy and a random policy on those seeds:

   * CartPole-v1: the embedded PPO-GTrXL agent (expert), the same with epsilon 0.5, random.
   * LunarLander-v3: Gymnasium's heuristic controller, the same with epsilon 0.3, random.
   * Pendulum-v1 (continuous actions): the energy-based swing-up controller, the same with
     Gaussian action noise (std 2), random.

   Each DT is trained by ``polyhead train configs/rl/decision_transformer_<env>.py`` (skipped with
   ``--dt-dir ENV=DIR`` pointing at an already trained one).
2. Policy latency per step at batch 1: eager PyTorch vs ONNX Runtime (median, same process,
   same threads, from :func:`polyhead.export_onnx`), for the PPO agent and the CartPole DT.
3. Environment steps per second while evaluating (policy + env), PyTorch vs ONNX Runtime,
   beside a random policy (the environment alone).

Writes ``benchmarks/results/rl.json``; ``--envs`` runs a subset and keeps the other entries.

    python -m benchmarks.rl [--envs CartPole-v1 LunarLander-v3 Pendulum-v1] [--dt-dir LunarLander-v3=runs/dt_lunarlander/best]
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
from polyhead.tasks.rl.rollout import BEHAVIOUR_POLICIES, ScriptedPolicy, run_episodes

RESULTS = Path(__file__).resolve().parent / "results" / "rl.json"
EPISODES = 20
AGENT = "<embedded PPO-GTrXL agent>"

# env -> DT recipe, data plan (folder name, behaviour policy, episodes, epsilon, Gaussian action noise, first reset seed),
# clean behaviour policy
OFFLINE = {
    "CartPole-v1": {
        "config": "configs/rl/decision_transformer_cartpole.py",
        "plan": [("cartpole-expert", AGENT, 50, 0.0, 0.0, 0), ("cartpole-eps0.5", AGENT, 100, 0.5, 0.0, 1000),
                 ("cartpole-random", "random", 200, 0.0, 0.0, 2000)],
        "behaviour": AGENT,
    },
    "LunarLander-v3": {
        "config": "configs/rl/decision_transformer_lunarlander.py",
        "plan": [("lunarlander-heuristic", "lunarlander-heuristic", 600, 0.0, 0.0, 1000),
                 ("lunarlander-heuristic-eps0.3", "lunarlander-heuristic", 200, 0.3, 0.0, 5000),
                 ("lunarlander-random", "random", 200, 0.0, 0.0, 9000)],
        "behaviour": "lunarlander-heuristic",
    },
    "Pendulum-v1": {
        "config": "configs/rl/decision_transformer_pendulum.py",
        "plan": [("pendulum-swingup", "pendulum-swingup", 100, 0.0, 0.0, 1000),
                 ("pendulum-swingup-noise2", "pendulum-swingup", 100, 0.0, 2.0, 5000),
                 ("pendulum-random", "random", 100, 0.0, 0.0, 9000)],
        "behaviour": "pendulum-swingup",
    },
}


class BCPolicy:
    """A behaviour-cloning MLP acting greedily (the reference for the Decision Transformer)."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray, bounds: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.net, self.mean, self.std, self.bounds = net.eval(), mean, std, bounds

    def reset(self, index=None) -> None:
        pass

    @torch.no_grad()
    def act(self, observations, rewards=None) -> np.ndarray:
        x = torch.as_tensor((np.asarray(observations, dtype=np.float32) - self.mean) / self.std)
        out = self.net(x)
        if self.bounds is None:
            return out.argmax(-1).numpy()
        low, high = self.bounds
        return low + (torch.tanh(out).numpy() + 1) / 2 * (high - low)


def train_bc(sources: list[str], *, steps: int, seed: int = 0) -> tuple[BCPolicy, dict]:
    """MLP ``obs -> action`` on the DT's training episodes (same split), AdamW, batch 64.

    Discrete actions: cross-entropy on logits. Continuous: mean-squared error of a tanh output on the
    actions scaled to [-1, 1] (as the DT's head).
    """
    episodes, meta = load_trajectories(sources)
    train = split_episodes(episodes, val_fraction=0.05, test_fraction=0.05, seed=0)["train"]
    obs = np.concatenate([e.observations for e in train])
    actions = np.concatenate([e.actions for e in train])
    space = meta.get("action_space", {"type": "discrete"})
    discrete = space["type"] == "discrete"
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    x = torch.as_tensor((obs - mean) / std)
    if discrete:
        y, outputs, bounds = torch.as_tensor(actions.astype(np.int64)), int(space.get("n", actions.max() + 1)), None
    else:
        low, high = np.asarray(space["low"], dtype=np.float32), np.asarray(space["high"], dtype=np.float32)
        y = torch.as_tensor(((actions.reshape(len(actions), -1) - low) / (high - low) * 2 - 1).clip(-1, 1).astype(np.float32))
        outputs, bounds = y.shape[1], (low, high)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(obs.shape[1], 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, outputs))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    started = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        out = net(x[idx])
        loss = nn.functional.cross_entropy(out, y[idx]) if discrete else ((torch.tanh(out) - y[idx]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    info = {"gradient_steps": steps, "batch_size": 64, "train_transitions": len(x), "train_seconds": round(time.perf_counter() - started, 1),
            "parameters": sum(p.numel() for p in net.parameters())}
    return BCPolicy(net, mean, std, bounds), info


def make_data(env_id: str, work: Path) -> list[str]:
    """Mixed-quality trajectories, as in the env's ``configs/rl/decision_transformer_*.py``."""
    sources = []
    for name, policy, episodes, epsilon, noise, seed in OFFLINE[env_id]["plan"]:
        out = work / name
        if not out.is_dir():
            policy = str(default_model_dir("reinforcement-learning")) if policy == AGENT else policy
            collect(policy, env_id, episodes=episodes, seed=seed, epsilon=epsilon, noise=noise, out=out)
        sources.append(str(out))
    return sources


def behaviour_returns(env_id: str) -> dict:
    """The clean behaviour policy on the evaluation seeds."""
    policy = OFFLINE[env_id]["behaviour"]
    if policy == AGENT:
        result = polyhead.evaluate_agent(default_model_dir("reinforcement-learning"), env_id, episodes=EPISODES, seed=0)
    else:
        controller = BEHAVIOUR_POLICIES[policy][0]
        result = run_episodes(env_id, lambda env: ScriptedPolicy(controller, env), episodes=EPISODES, seed=0)
    return {"policy": "embedded PPO-GTrXL agent" if policy == AGENT else policy, "mean_return": result["mean_return"],
            "std_return": result["std_return"]}


def offline(env_id: str, work: Path, dt_dir: Path | None, bc_steps: int) -> tuple[dict, Path]:
    """DT vs BC-MLP on one environment's mixed data; returns the results and the DT dir."""
    sources = make_data(env_id, work / "data")
    episodes = load_trajectories(sources)[0]
    if dt_dir is None:
        result = polyhead.train(OFFLINE[env_id]["config"], cfg_options={
            "data.source": sources, "train.output_dir": str(work / f"dt_{env_id}"), "train.progress_bar": False})
        dt_dir = result.best_dir
    metrics = json.loads((dt_dir / "metrics.json").read_text())
    dt_info = {"model_dir": str(dt_dir), "gradient_steps": metrics.get("global_step"), "train_seconds": metrics.get("train_seconds"),
               "parameters": metrics.get("num_parameters")}
    dt_eval = polyhead.evaluate_agent(dt_dir, env_id, episodes=EPISODES, seed=0)
    dt_info["target_return"] = dt_eval.get("target_return")
    bc, bc_info = train_bc(sources, steps=bc_steps)
    bc_eval = run_episodes(env_id, lambda env: bc, episodes=EPISODES, seed=0)
    random_eval = run_episodes(env_id, lambda env: RandomPolicy(env.action_space, seed=0), episodes=EPISODES, seed=0)
    returns = {
        "decision_transformer": dt_eval["mean_return"], "decision_transformer_std": dt_eval["std_return"],
        "bc_mlp": bc_eval["mean_return"], "bc_mlp_std": bc_eval["std_return"],
        "behaviour_policy": behaviour_returns(env_id),
        "behaviour_data": float(np.mean([e.total_return for e in episodes])),
        "random": random_eval["mean_return"], "random_std": random_eval["std_return"],
    }
    row = {
        "data": {"sources": sources, "episodes": len(episodes), "steps": int(sum(len(e) for e in episodes)),
                 "behaviour_mean_return": returns["behaviour_data"]},
        "mean_return": returns,
        "dt_vs_bc": {"decision_transformer": dt_info, "bc_mlp": bc_info,
                     "difference_dt_minus_bc": round(returns["decision_transformer"] - returns["bc_mlp"], 2)},
        "random_policy_steps_per_second": round(random_eval["steps_per_second"], 1),
    }
    return row, dt_dir


def latency(model_dir: Path, tmp: Path) -> dict:
    target = tmp / model_dir.name
    shutil.copytree(model_dir, target)
    report = polyhead.export_onnx(target)
    return {"batch_1": report["latency"]["batch_1"], "onnx_dir": str(target)}


def speed(dt_dir: Path, work: Path, random_steps_per_second: float) -> tuple[dict, dict]:
    """Latency at batch 1 and env steps/s (CartPole-v1) for the PPO agent and a DT."""
    tmp = work / "onnx"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lat = {"ppo_gtrxl": latency(default_model_dir("reinforcement-learning"), tmp), "decision_transformer": latency(dt_dir, tmp)}
    steps = {}
    for name, info in lat.items():
        for backend in ("torch", "onnx"):
            r = polyhead.evaluate_agent(info["onnx_dir"], "CartPole-v1", episodes=3, seed=100, backend=backend)
            steps[f"{name}_{backend}"] = round(r["steps_per_second"], 1)
    steps["random_policy"] = random_steps_per_second
    return {name: info["batch_1"] for name, info in lat.items()}, steps


def _dt_dirs(pairs: list[str]) -> dict[str, Path]:
    dirs = {}
    for pair in pairs:
        env_id, sep, path = pair.partition("=")
        if not sep or env_id not in OFFLINE:
            raise SystemExit(f"--dt-dir takes ENV=DIR with ENV one of {', '.join(OFFLINE)}, got {pair!r}")
        dirs[env_id] = Path(path)
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", nargs="+", default=list(OFFLINE), choices=list(OFFLINE))
    parser.add_argument("--dt-dir", nargs="*", default=[], metavar="ENV=DIR", help="already trained Decision Transformers")
    parser.add_argument("--work", default="runs/bench_rl")
    parser.add_argument("--bc-steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small policies act fastest on one thread (and the machine is shared)
    work = Path(args.work)
    dt_dirs = _dt_dirs(args.dt_dir)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results = {
        "what": f"offline RL: mean ± std return over {EPISODES} episodes (reset seeds 0..{EPISODES - 1}, greedy actions) of a "
                "Decision Transformer and a behaviour-cloning MLP trained on the same mixed-quality data, beside the clean "
                "behaviour policy and a random policy on the same seeds; policy latency per step at batch 1 (median ms, eager "
                "PyTorch vs ONNX Runtime, same process and threads); CartPole-v1 env steps/s while evaluating",
        "threads": torch.get_num_threads(),
        "versions": {"polyhead": polyhead.__version__, "torch": torch.__version__},
        "offline": dict(previous.get("offline", {})),
        "latency_ms_batch_1": previous.get("latency_ms_batch_1"),
        "env_steps_per_second": previous.get("env_steps_per_second"),
    }
    for env_id in args.envs:
        row, dt_dir = offline(env_id, work / env_id, dt_dirs.get(env_id), args.bc_steps)
        row["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["offline"][env_id] = row
        r = row["mean_return"]
        print(f"mean return on {env_id}: DT {r['decision_transformer']:.1f} ± {r['decision_transformer_std']:.1f} | "
              f"BC-MLP {r['bc_mlp']:.1f} ± {r['bc_mlp_std']:.1f} | behaviour policy {r['behaviour_policy']['mean_return']:.1f} "
              f"± {r['behaviour_policy']['std_return']:.1f} | data {r['behaviour_data']:.1f} | random {r['random']:.1f} ± {r['random_std']:.1f}")
        if env_id == "CartPole-v1":
            lat, steps = speed(dt_dir, work, row["random_policy_steps_per_second"])
            results["latency_ms_batch_1"], results["env_steps_per_second"] = lat, steps
            for name, one in lat.items():
                print(f"{name}: eager {one['eager_ms']} ms | ORT {one['onnx_ms']} ms ({one['speedup']}x) per step at batch 1")
            print("env steps/s while evaluating: " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
