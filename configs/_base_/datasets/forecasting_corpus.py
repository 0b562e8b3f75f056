# The forecasting corpus (polyhead.tasks.forecasting.corpus): the real series bundled in statsmodels, pmdarima and
# pydataset (R's datasets), yearly to half-hourly, in long format (item_id, timestamp, target), built from the
# installed packages at training time. About 30% of the series groups of each frequency are held out (the `heldout`
# column): they are the test split, never trained or validated on. Validation: the last steps of the other series.
# 40% of the training windows are synthetic (KernelSynth + trend/season/noise compositions, drawn on the fly).
data = dict(
    source="forecasting_corpus",
    prediction_length="auto",  # the M4 horizon of each series' frequency: yearly 6, quarterly 8, monthly 18, weekly 13, daily 14, hourly 48
    fill_missing="mask",
    val_windows=1,
    test_windows=1,
    train_samples=1536000,  # 6,000 steps of 256 windows, each drawn once
    augment=dict(truncate=0.4, missing=0.1),
    synthetic=dict(weight=0.4),
    seed=0,
    baselines=["seasonal_naive", "ets", "theta", "auto_arima"],
    baseline_history="auto",  # max(context, 10 seasons); benchmarks/forecasting.py fits them on whole histories
)
