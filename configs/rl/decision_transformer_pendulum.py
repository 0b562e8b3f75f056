# Decision Transformer with a tanh-squashed continuous action head on Pendulum-v1, trained offline on
# mixed-quality trajectories collected with `polyhead collect`. The behaviour policies are a hand-written
# energy-based swing-up controller with a PD balancer ('pendulum-swingup', polyhead.tasks.rl.rollout.pendulum_swing_up),
# the same with Gaussian action noise of std 2 (clipped to ±2), and a uniformly random policy; reset seeds start at 1000 / 5000 / 9000,
# so the evaluation episodes (seeds 0-19) are not in the data:
#   polyhead collect pendulum-swingup --env Pendulum-v1 --episodes 100 --seed 1000 --out runs/trajectories/pendulum-swingup
#   polyhead collect pendulum-swingup --env Pendulum-v1 --episodes 100 --noise 2.0 --seed 5000 --out runs/trajectories/pendulum-swingup-noise2
#   polyhead collect random --env Pendulum-v1 --episodes 100 --seed 9000 --out runs/trajectories/pendulum-random
#   polyhead train configs/rl/decision_transformer_pendulum.py
#   polyhead evaluate runs/dt_pendulum/best --env Pendulum-v1 --episodes 20
_base_ = ["../_base_/default_runtime.py"]

model = dict(
    task="rl",
    algorithm="decision_transformer",  # DecisionTransformerConfig -> PolyheadForDecisionTransformer
    context_length=10,
    max_timestep=200,
    return_scale=100.0,
    target_return=-150.0,
    backbone=dict(type="transformer", dim=64, depth=2, num_heads=4, mlp_ratio=4.0, dropout=0.0,
                  position="none", max_length=30),
    head=dict(type="dt_action", dropout=0.0),
)

data = dict(
    source=["runs/trajectories/pendulum-swingup", "runs/trajectories/pendulum-swingup-noise2",
            "runs/trajectories/pendulum-random"],
    val_fraction=0.05,
    test_fraction=0.05,
    stride=1,
    eval_episodes=20,
    seed=0,
)

train = dict(output_dir="runs/dt_pendulum", epochs=1, max_steps=3000, batch_size=64, lr=6e-4, weight_decay=1e-4,
             scheduler="cosine", warmup_steps=200, eval_every=500, max_grad_norm=0.25, log_with=None)
