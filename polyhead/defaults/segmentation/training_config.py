data = dict(
    cache_volumes=2,
    patches_per_volume=32,
    region_axis=1,
    region_margin=4,
    root='mni152_2mm',
    split='regions',
    test_fraction=0.3,
    val_fraction=0.15)
model = dict(
    backbone=dict(
        depths=[
            1,
            1,
            1,
            1,
        ],
        feature_size=12,
        num_heads=[
            1,
            2,
            3,
            6,
        ],
        type='swin',
        window_size=4),
    head=dict(
        feature_size=8, identity_skip_levels=[
            5,
        ], type='unetr_decoder'),
    intensity=dict(lower=0.5, mode='percentiles', upper=99.5),
    patch_size=[
        32,
        32,
        32,
    ],
    sw_batch_size=4,
    sw_overlap=0.25,
    target_spacing=[
        2.0,
        2.0,
        2.0,
    ],
    task='segmentation')
train = dict(
    batch_size=2,
    best_metric='dice',
    early_stopping_patience=4,
    epochs=10,
    eval_batch_size=1,
    eval_every=60,
    grad_accum=1,
    greater_is_better=True,
    log_with=None,
    lr=0.002,
    max_grad_norm=1.0,
    max_steps=480,
    output_dir='runs/defaults/segmentation',
    precision='no',
    scheduler='cosine',
    seed=0,
    warmup_steps=20,
    weight_decay=0.01)
