# Weekly Mauna Loa CO2 (1958-2001, public domain), shipped in polyhead/assets.
# Split by time: the last 20% of weeks are the test targets, the 10% before them validation;
# evaluation windows start every 26 weeks (the statistical baselines are fit once per test window).
# The 59 missing weeks stay missing (masked); training windows may have short, left-padded contexts.
data = dict(
    source="co2_weekly",
    time_column="date",
    target_columns=["co2"],
    fill_missing="mask",
    val_fraction=0.1,
    test_fraction=0.2,
    train_stride=1,
    eval_stride=26,
    baselines=["seasonal_naive", "ets", "theta", "auto_arima"],
)
