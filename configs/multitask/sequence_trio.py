# One shared Transformer encoder, co-trained on three domains at once: weekly CO2 forecasting,
# MovieLens-100k next-item recommendation and speech recognition (CTC over log-mel features),
# each through its own task adapter (stem + head + loss). Each optimizer step draws one task.
_base_ = ["../_base_/default_runtime.py"]

model = dict(
    task="multitask",
    backbone=dict(type="transformer", dim=64, depth=3, num_heads=4, mlp_ratio=2.0, dropout=0.1, position="rotary"),
    tasks=dict(
        forecasting=dict(task="forecasting", context_length=104, horizon=52, patch_length=8, patch_stride=8,
                         seasonal_period=52, head=dict(type="forecast", quantiles=[0.1, 0.5, 0.9], dropout=0.1)),
        next_item=dict(task="recommendation", objective="next_item", max_length=50, head=dict(type="next_item", loss="full")),
        speech=dict(task="asr", n_mels=64, head=dict(type="ctc", dropout=0.1), spec_augment=True),
    ),
    # no `lora`: the backbone is co-trained; lora=dict(r=8) freezes it and gives each task its own low-rank
    # adapters (PEFT), as sequence_trio_lora.py does
)

data = dict(
    sampling=dict(temperature=2.0),  # or "proportional" / "uniform"
    tasks=dict(
        forecasting=dict(source="co2_weekly", time_column="date", target_columns=["co2"], weight=1.0, batch_size=64),
        next_item=dict(source="ml-100k", weight=1.0, batch_size=128),
        speech=dict(source="speech_commands", weight=1.0, batch_size=16),
    ),
)

train = dict(output_dir="runs/multitask", max_steps=3000, eval_every=500, lr=2e-3, warmup_steps=100,
             best_metric="task_mean_loss", log_with=None)
