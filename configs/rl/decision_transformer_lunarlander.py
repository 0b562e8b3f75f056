# Decision Transformer on LunarLander-v3, trained offline on mixed-quality trajectories collected with
# `polyhead collect` (no downloads, no Box2D build: the `box2d` wheel is pinned in pyproject). The behaviour
# policies are Gymnasium's own hand-written LunarLander controller (gymnasium.envs.box2d.lunar_lander.heuristic),
# the same with 30% random actions, and a uniformly random policy; reset seeds start at 1000 / 5000 / 9000, so
# the evaluation episodes (seeds 0-19) are not in the data:
#   polyhead collect lunarlander-heuristic --env LunarLander-v3 --episodes 600 --seed 1000 --out runs/trajectories/lunarlander-heuristic
#   polyhead collect lunarlander-heuristic --env LunarLander-v3 --episodes 200 --epsilon 0.3 --seed 5000 --out runs/trajectories/lunarlander-heuristic-eps0.3
#   polyhead collect random --env LunarLander-v3 --episodes 200 --seed 9000 --out runs/trajectories/lunarlander-random
#   polyhead train configs/rl/decision_transformer_lunarlander.py
#   polyhead evaluate runs/dt_lunarlander/best --env LunarLander-v3 --episodes 50
_base_ = ["../_base_/default_runtime.py"]

model = dict(
    task="rl",
    algorithm="decision_transformer",  # DecisionTransformerConfig -> PolyheadForDecisionTransformer
    context_length=10,
    max_timestep=1000,
    return_scale=100.0,
    target_return=280.0,
    backbone=dict(type="transformer", dim=64, depth=3, num_heads=4, mlp_ratio=4.0, dropout=0.0,
                  position="none", max_length=30),
    head=dict(type="dt_action", dropout=0.0),
)

data = dict(
    source=["runs/trajectories/lunarlander-heuristic", "runs/trajectories/lunarlander-heuristic-eps0.3",
            "runs/trajectories/lunarlander-random"],
    val_fraction=0.05,
    test_fraction=0.05,
    stride=1,
    eval_episodes=20,
    seed=0,
)

train = dict(output_dir="runs/dt_lunarlander", epochs=1, max_steps=10000, batch_size=64, lr=6e-4, weight_decay=1e-4,
             scheduler="cosine", warmup_steps=200, eval_every=2000, max_grad_norm=0.25, log_with=None)
