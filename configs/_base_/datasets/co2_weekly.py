# Weekly Mauna Loa CO2 (1958-2001, public domain), shipped in polyhead/assets.
# Split by time: the last 20% of weeks are the test targets, the 10% before them validation.
data = dict(
    source="co2_weekly",
    time_column="date",
    target_columns=["co2"],
    fill_missing="interpolate",
    val_fraction=0.1,
    test_fraction=0.2,
    train_stride=1,
    eval_stride=1,
)
