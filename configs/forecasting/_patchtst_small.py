# The forecaster both forecasting recipes train (a partial config: their `_base_`): PatchTST-style patches of 8 steps
# over 104 steps of context, a 2-block Transformer of width 64, up to 52 steps ahead with 10/50/90% quantiles.
# The zero-shot default (patchtst_zero_shot.py) and the CO2 recipe (patchtst_co2.py) share it, so
# `polyhead train forecasting --init-from polyhead/defaults/forecasting` fine-tunes the default.
model = dict(
    task="forecasting",
    context_length=104,
    horizon=52,
    patch_length=8,
    patch_stride=8,
    patch_mask=True,  # each patch's observed-values mask goes into its token: missing steps are not read as the mean
    trend_skip=True,  # the head forecasts the deviation from the window's least-squares line (short trending histories)
    backbone=dict(type="transformer", dim=64, depth=2, num_heads=4, mlp_ratio=2.0, dropout=0.1, position="sinusoidal", max_length=64),
    head=dict(type="forecast", quantiles=[0.1, 0.5, 0.9], dropout=0.1),
)
