# PatchTST-style forecaster on the embedded weekly CO2 series: two years of history -> one year ahead, with
# 10/50/90% quantiles, beside seasonal naive, ETS, Theta and AutoARIMA on the same test windows.
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/co2_weekly.py", "./_patchtst_small.py"]

model = dict(seasonal_period=52)

train = dict(output_dir="runs/forecast", epochs=15, batch_size=64, lr=2e-3, warmup_steps=20, early_stopping_patience=4)
