"""PPO with a gated-Transformer memory (PPO-GTrXL), in one readable module.

CleanRL's ``ppo.py`` (Huang et al., 2022) built from polyhead parts: the agent is a
:class:`~polyhead.tasks.rl.PolyheadForPPO` whose observation stem embeds the last ``K``
observations of each environment, the shared Transformer with GTrXL gating
(``residual="gru"``, Parisotto et al., 2020) reads that window causally, and the
actor-critic head gives the policy and value of the newest step; the head's ``loss`` is
PPO's clipped objective on the rollout's targets. Rollouts come from Gymnasium
vector environments; advantages from GAE (Schulman et al., 2016); updates run on the
same Accelerate set-up as every polyhead task (``make_accelerator``).

``polyhead train configs/rl/ppo_gtrxl_cartpole.py`` runs :func:`train_ppo` (through
:meth:`~polyhead.tasks.rl.RLTask.train`) with the config's ``train`` section as :class:`PPOArguments`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from polyhead.errors import ConfigError
from polyhead.validation import dataclass_from_section
from polyhead.model_dir import BEST_DIR, EVAL_RESULTS_NAME, save_model_dir
from polyhead.training import make_accelerator
from polyhead.workflows import finish_run

from .processing import RLFeatureExtractor, make_env
from .rollout import AgentPolicy, ContextWindow, RandomPolicy, run_episodes

__all__ = ["PPOArguments", "train_ppo"]


@dataclass
class PPOArguments:
    """The ``train`` section of a PPO config."""

    output_dir: str = "runs/ppo"
    """run folder: ``best/`` (the model dir), ``metrics.json``, ``logs/``"""
    total_timesteps: int = 200_000
    """environment steps to train for (summed over the parallel environments)"""
    num_envs: int = 8
    """parallel Gymnasium environments (``gymnasium.vector.SyncVectorEnv``)"""
    num_steps: int = 128
    """steps per environment per rollout; a rollout is ``num_envs * num_steps`` transitions"""
    lr: float = 2.5e-4
    """Adam learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over training"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """λ of generalised advantage estimation"""
    num_minibatches: int = 4
    """minibatches per rollout"""
    update_epochs: int = 4
    """passes over each rollout"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    target_kl: float | None = None
    """stop a rollout's updates early once the approximate KL passes this"""
    eval_every: int = 10
    """evaluate the deterministic policy every N rollouts (and keep the best)"""
    eval_episodes: int = 5
    """episodes per evaluation during training"""
    final_eval_episodes: int = 20
    """episodes of the final evaluation of the best agent (seeds 0, 1, ...), reported in metrics.json"""
    stop_at_return: float | None = None
    """stop once an evaluation's mean return reaches this (e.g. 500 on CartPole-v1)"""
    seed: int = 0
    """seed of weights, environments and sampling"""
    torch_threads: int | None = 1
    """PyTorch CPU threads (``torch.set_num_threads``); small agents act fastest on one thread, ``None`` keeps torch's default"""
    log_with: str | None = "tensorboard"
    """``"tensorboard"`` or ``None``"""
    progress_bar: bool = True
    """tqdm bar on the main process"""

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "eval_every", "eval_episodes", "final_eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}.")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ConfigError(f"train.num_minibatches ({self.num_minibatches}) must divide num_envs * num_steps ({self.num_envs * self.num_steps}).")
        for name in ("lr", "gamma", "gae_lambda", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"train.{name} must be a positive number, got {value!r}.")

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> "PPOArguments":
        return dataclass_from_section(cls, section, "a PPO option")


def evaluate_policy(model: Any, processor: RLFeatureExtractor, env_id: str, *, episodes: int, seed: int) -> dict[str, Any]:
    """Deterministic episodes of ``model`` in ``env_id`` (mean ± std return)."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        return run_episodes(env_id, lambda env: AgentPolicy(model, processor), episodes=episodes, seed=seed, check_env=processor.check_env)
    finally:
        if was_training:
            model.train()


def random_policy_returns(env_id: str, *, episodes: int, seed: int) -> dict[str, Any]:
    return run_episodes(env_id, lambda env: RandomPolicy(env.action_space, seed=seed), episodes=episodes, seed=seed)


def train_ppo(model: Any, processor: RLFeatureExtractor, args: PPOArguments, *, env_id: str, cfg: Any = None,
              init: dict[str, Any] | None = None, pretrained: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` (a :class:`~polyhead.tasks.rl.PolyheadForPPO`) in ``env_id``; write ``<output_dir>/best``.

    ``init`` is the report of :func:`polyhead.loading.initialise_from` when the agent started
    from another model's weights (recorded as ``metrics["init"]``).

    Returns ``metrics.json``'s content: the best agent's returns beside a random policy's, and the budget.
    """
    import gymnasium as gym

    config = model.config
    output_dir = Path(args.output_dir)
    acc = make_accelerator(log_with=args.log_with, project_dir=output_dir)
    set_seed(args.seed + acc.process_index)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)

    # -- environments and storage ------------------------------------------------------
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id) for _ in range(args.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    processor.check_env(envs)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-5)
    model, optimizer = acc.prepare(model, optimizer)
    agent = acc.unwrap_model(model)
    head = agent.adapter.head  # owns PPO's clipped loss
    n, s, k = args.num_envs, args.num_steps, config.context_length
    action_shape = () if config.discrete else (config.action_dim,)
    window = ContextWindow(num_envs=n, context_length=k, observation_dim=config.observation_dim, action_shape=action_shape, discrete=config.discrete)
    obs_buf = torch.zeros(s, n, k, config.observation_dim)
    mask_buf = torch.zeros(s, n, k, dtype=torch.long)
    actions_buf = torch.zeros(s, n, *action_shape, dtype=torch.long if config.discrete else torch.float32)
    logprobs_buf, rewards_buf, dones_buf, values_buf = (torch.zeros(s, n) for _ in range(4))

    if args.log_with:
        acc.init_trackers("polyhead-ppo", config={k_: v for k_, v in dataclasses.asdict(args).items() if isinstance(v, (int, float, str, bool))})
    batch_size = n * s
    minibatch_size = batch_size // args.num_minibatches
    num_updates = max(1, args.total_timesteps // batch_size)
    next_obs, _ = envs.reset(seed=args.seed + 1000 * acc.process_index)
    window.push(next_obs)
    next_done = torch.zeros(n)
    episode_returns, running = [], np.zeros(n)
    best_return, best_update, global_step, gradient_steps = -float("inf"), None, 0, 0
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(total=num_updates, desc="ppo", disable=not (args.progress_bar and acc.is_local_main_process), dynamic_ncols=True)

    for update in range(1, num_updates + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (update - 1.0) / num_updates) * args.lr

        # -- rollout: act with the newest token of each environment's window -----------
        model.eval()
        for step in range(s):
            global_step += n
            obs_buf[step], mask_buf[step], dones_buf[step] = window.observations, window.attention_mask, next_done
            with torch.no_grad():
                out = model(observations=window.observations, attention_mask=window.attention_mask)
                dist = head.distribution(out.action_preds[:, -1])
                action = dist.sample()
                logprobs_buf[step], values_buf[step] = dist.log_prob(action), out.state_values[:, -1]
            actions_buf[step] = action
            env_action = action.numpy()
            if not config.discrete:
                env_action = np.clip(env_action, config.action_space["low"], config.action_space["high"])
            next_obs, reward, terminated, truncated, _ = envs.step(env_action)
            done = np.logical_or(terminated, truncated)
            rewards_buf[step] = torch.as_tensor(reward, dtype=torch.float32)
            next_done = torch.as_tensor(done, dtype=torch.float32)
            running += reward
            for i in np.nonzero(done)[0]:
                episode_returns.append(float(running[i]))
                running[i] = 0.0
            window.reset(np.nonzero(done)[0])  # SAME_STEP autoreset: next_obs starts the new episode
            window.push(next_obs)

        # -- generalised advantage estimation -------------------------------------------
        with torch.no_grad():
            next_value = model(observations=window.observations, attention_mask=window.attention_mask).state_values[:, -1]
        advantages = torch.zeros(s, n)
        last = torch.zeros(n)
        for t in reversed(range(s)):
            not_done = 1.0 - (next_done if t == s - 1 else dones_buf[t + 1])
            next_v = next_value if t == s - 1 else values_buf[t + 1]
            delta = rewards_buf[t] + args.gamma * next_v * not_done - values_buf[t]
            last = delta + args.gamma * args.gae_lambda * not_done * last
            advantages[t] = last
        returns = advantages + values_buf

        # -- PPO update: the head owns the clipped loss ------------------------------------
        model.train()
        b_obs, b_mask = obs_buf.reshape(batch_size, k, -1), mask_buf.reshape(batch_size, k)
        b_actions = actions_buf.reshape(batch_size, *action_shape)
        targets_all = {"actions": b_actions, "logprobs": logprobs_buf.reshape(-1), "advantages": advantages.reshape(-1),
                       "returns": returns.reshape(-1), "values": values_buf.reshape(-1)}
        stats: dict[str, float] = {}
        for _ in range(args.update_epochs):
            order = torch.randperm(batch_size)
            for start in range(0, batch_size, minibatch_size):
                idx = order[start:start + minibatch_size]
                out = model(observations=b_obs[idx], attention_mask=b_mask[idx])
                outputs = torch.cat((out.action_preds[:, -1], out.state_values[:, -1, None]), dim=-1)
                losses = head.loss(outputs, {name: value[idx] for name, value in targets_all.items()})
                optimizer.zero_grad()
                acc.backward(losses["loss"])
                acc.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                gradient_steps += 1
                stats = {name: float(value.detach()) for name, value in losses.items()}
            if args.target_kl is not None and stats["approx_kl"] > args.target_kl:
                break

        recent = float(np.mean(episode_returns[-20:])) if episode_returns else float("nan")
        acc.log({"train/episode_return": recent, "train/lr": optimizer.param_groups[0]["lr"], **{f"train/{k_}": v for k_, v in stats.items()}}, step=global_step)
        bar.update(1)
        bar.set_postfix(ret=f"{recent:.1f}", steps=global_step)

        # -- evaluate the deterministic policy; keep the best -------------------------------
        if update % args.eval_every == 0 or update == num_updates:
            result = evaluate_policy(agent, processor, env_id, episodes=args.eval_episodes, seed=10_000 + update)
            record = {"update": update, "env_steps": global_step, "eval_mean_return": result["mean_return"],
                      "train_mean_return_last20": recent, "seconds": round(time.perf_counter() - started, 1)}
            history.append(record)
            acc.print(f"update {update}/{num_updates}: {global_step} env steps, eval return {result['mean_return']:.1f}, "
                      f"train return (last 20) {recent:.1f}, {record['seconds']} s")
            acc.log({"eval/mean_return": result["mean_return"]}, step=global_step)
            if result["mean_return"] > best_return and acc.is_main_process:
                best_return, best_update = result["mean_return"], update
                save_model_dir(output_dir / BEST_DIR, agent, processor, {EVAL_RESULTS_NAME: record})
            if args.stop_at_return is not None and result["mean_return"] >= args.stop_at_return:
                break
    bar.close()
    envs.close()
    for tracker in acc.trackers:
        tracker.finish()
    train_seconds = time.perf_counter() - started

    # -- final evaluation of the best agent beside a random policy ----------------------------
    from polyhead.loading import AutoModel

    best = AutoModel.from_pretrained(output_dir / BEST_DIR).eval()
    final = evaluate_policy(best, processor, env_id, episodes=args.final_eval_episodes, seed=0)
    random_ = random_policy_returns(env_id, episodes=args.final_eval_episodes, seed=0)
    metrics = {
        "task": "rl",
        "algorithm": "ppo",
        "best_step": best_update,
        "global_step": update,
        "stopped_early": update < num_updates,
        "train_seconds": round(train_seconds, 2),
        "num_processes": acc.num_processes,
        "num_parameters": sum(p.numel() for p in best.parameters()),
        "init": init,
        "pretrained": pretrained,
        "validation": {"best_eval_mean_return": best_return},
        "test": _return_metrics(final),
        "baselines": {"random_policy": _return_metrics(random_)},
        "budget": {"env_steps": global_step, "gradient_steps": gradient_steps, "updates": update,
                   "wall_seconds": round(train_seconds, 1), "torch_threads": torch.get_num_threads()},
        "data": {"env_id": env_id, "online": "PPO rollouts", "evaluation": f"{args.final_eval_episodes} episodes, reset seeds 0..{args.final_eval_episodes - 1}, deterministic policy"},
        "returns": final["returns"],
        "history": history,
    }
    if acc.is_main_process:
        finish_run(output_dir, output_dir / BEST_DIR, metrics, cfg)
    acc.wait_for_everyone()
    return metrics


def _return_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {"mean_return": result["mean_return"], "std_return": result["std_return"],
            "min_return": result["min_return"], "max_return": result["max_return"]}
