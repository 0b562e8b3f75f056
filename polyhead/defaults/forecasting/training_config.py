data = dict(
    eval_stride=1,
    fill_missing='interpolate',
    source='co2_weekly',
    target_columns=[
        'co2',
    ],
    test_fraction=0.2,
    time_column='date',
    train_stride=1,
    val_fraction=0.1)
model = dict(
    backbone=dict(
        depth=2,
        dim=64,
        dropout=0.1,
        max_length=64,
        mlp_ratio=2.0,
        num_heads=4,
        position='sinusoidal',
        type='transformer'),
    context_length=104,
    head=dict(dropout=0.1, quantiles=[
        0.1,
        0.5,
        0.9,
    ], type='forecast'),
    horizon=52,
    patch_length=8,
    patch_stride=8,
    seasonal_period=52,
    task='forecasting')
train = dict(
    batch_size=64,
    early_stopping_patience=4,
    epochs=15,
    grad_accum=1,
    log_with=None,
    lr=0.002,
    max_grad_norm=1.0,
    output_dir='runs/defaults/forecasting',
    precision='no',
    scheduler='cosine',
    seed=0,
    warmup_steps=20,
    weight_decay=0.01)
