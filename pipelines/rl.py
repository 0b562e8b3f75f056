"""``reinforcement-learning`` pipeline: an observation in, an action out, the episode's context kept between calls.

Example:
    >>> import gymnasium as gym, polyhead
    >>> agent = polyhead.pipeline("reinforcement-learning")      # the embedded CartPole agent
    >>> env = gym.make("CartPole-v1")
    >>> obs, _ = env.reset(seed=0); agent.reset(); reward = None
    >>> while True:
    ...     action = agent(obs, reward=reward)["action"]
    ...     obs, reward, terminated, truncated, _ = env.step(action)
    ...     if terminated or truncated: break
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline

from polyhead.errors import InputError
from polyhead.tasks.rl.rollout import AgentPolicy, check_target_return

__all__ = ["ReinforcementLearningPipeline"]


class ReinforcementLearningPipeline(Pipeline):
    """Act in one environment, one step per call.

    ``agent(observation, reward=None)`` returns ``{"action": int | list[float]}``. The
    pipeline keeps the agent's context window (past observations, actions and, for a
    Decision Transformer, the return still to collect) across calls; ``reward`` is the
    reward received after the previous action (it lowers the return-to-go). Call
    :meth:`reset` at the start of every episode. ``target_return=`` (at construction or
    on :meth:`reset`) sets the return a Decision Transformer is conditioned on.
    Observations of the wrong shape or type, rewards or target returns that are not numbers,
    and values that are NaN or infinite (as given or in float32, the precision the agent
    computes in) raise :class:`InputError`; so does a step whose action scores come out NaN
    (an observation too large for the network). A call that raises leaves the episode's
    context as it was.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args: Any, target_return: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = AgentPolicy(self.model, self.feature_extractor, target_return=target_return)

    def reset(self, target_return: float | None = None) -> None:
        """Start a new episode (optionally conditioned on another ``target_return``)."""
        if target_return is not None:
            self.policy.target_return = check_target_return(target_return)
        self.policy.reset()

    def __call__(self, observation: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(observation, (list, tuple)):  # one observation as a list, not a batch of inputs
            observation = self.feature_extractor.check_observations(observation)
        try:
            return super().__call__(observation, **kwargs)
        except BaseException:
            self.policy.undo()  # a failed step is not part of the episode
            raise

    def _sanitize_parameters(self, reward: float | None = None, **kwargs: Any):
        if kwargs:
            raise InputError(f"Unknown pipeline argument(s) {sorted(kwargs)}; this pipeline takes reward=.")
        return {"reward": reward}, {}, {}

    def preprocess(self, observation: Any, reward: float | None = None) -> dict[str, torch.Tensor]:
        observation = self.feature_extractor.check_observations(observation)
        return self.policy.prepare(observation[None], None if reward is None else [reward])

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"action_preds": self.model(**model_inputs).action_preds[:, -1]}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        action = self.policy.choose(model_outputs["action_preds"])[0]
        return {"action": int(action) if self.model.config.discrete else [float(a) for a in action]}
