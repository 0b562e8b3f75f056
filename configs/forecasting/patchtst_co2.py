# PatchTST-style forecaster on the embedded weekly CO2 series:
# two years of history -> one year ahead, with 10/50/90% quantiles.
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/co2_weekly.py"]

model = dict(
    task="forecasting",
    context_length=104,
    horizon=52,
    patch_length=8,
    patch_stride=8,
    seasonal_period=52,
    backbone=dict(type="transformer", dim=64, depth=2, num_heads=4, mlp_ratio=2.0, dropout=0.1, position="sinusoidal", max_length=64),
    head=dict(type="forecast", quantiles=[0.1, 0.5, 0.9], dropout=0.1),
)

train = dict(output_dir="runs/forecast", epochs=15, batch_size=64, lr=2e-3, warmup_steps=20, early_stopping_patience=4)
