# The zero-shot default (polyhead/defaults/forecasting, `make defaults`): the CO2 recipe's architecture trained on the
# forecasting corpus, real series of every frequency plus synthetic ones drawn on the fly. Its test split is the
# held-out real series, never trained or validated on; the best step is chosen on the other series' last steps.
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/forecasting_corpus.py", "./_patchtst_small.py"]

model = dict(
    seasonal_period=None,  # MASE and the baselines use each series' own season (yearly 1, quarterly 4, monthly 12, ...)
    backbone=dict(dropout=0.0),
    head=dict(dropout=0.0),
)

train = dict(
    output_dir="runs/forecast_zero_shot",
    epochs=1,  # one pass over data.train_samples drawn windows: 6,000 steps
    batch_size=256,
    lr=2e-3,
    warmup_steps=300,
    eval_every=500,
    best_metric="loss",  # the pinball loss on the validation windows (MASE over short contexts is too noisy to choose by)
    early_stopping_patience=None,
)
