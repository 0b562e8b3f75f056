# PPO-GTrXL on CartPole-v1: the shared causal Transformer with GTrXL gated residuals
# reads the last 4 observations; actor and critic heads act on the newest one.
# Online: `polyhead train` runs polyhead.tasks.rl.ppo (the `train` section is PPOArguments).
model = dict(
    task="rl",
    algorithm="ppo",  # PPOConfig -> PolyheadForPPO (model_type polyhead-ppo)
    env_id="CartPole-v1",
    context_length=4,
    backbone=dict(type="transformer", dim=32, depth=2, num_heads=2, mlp_ratio=2.0, dropout=0.0,
                  position="learned", max_length=4, residual="gru", gate_bias=2.0),
    head=dict(type="actor_critic", hidden_dim=64, clip_coef=0.2, value_coef=0.5, entropy_coef=0.01),
)

train = dict(
    output_dir="runs/ppo_cartpole",
    total_timesteps=200_000,
    num_envs=8,
    num_steps=128,
    lr=1e-3,
    anneal_lr=True,
    gamma=0.99,
    gae_lambda=0.95,
    num_minibatches=4,
    update_epochs=4,
    max_grad_norm=0.5,
    eval_every=5,
    eval_episodes=10,
    final_eval_episodes=20,
    stop_at_return=500.0,
    seed=0,
    log_with=None,
)
