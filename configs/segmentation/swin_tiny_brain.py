# Swin-UNETR-style grey/white matter segmentation of the embedded MNI152 T1 template (2 mm).
# A Medical Segmentation Decathlon folder works too:
#   polyhead train configs/segmentation/swin_tiny_brain.py --cfg-options data.root=/data/Task09_Spleen
# (labels and channels come from its dataset.json; for CT, a fixed window: model.intensity=dict(mode='range', a_min=-175, a_max=250))
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/mni152_brain.py"]

model = dict(
    task="segmentation",
    patch_size=[32, 32, 32],
    target_spacing=[2.0, 2.0, 2.0],
    intensity=dict(mode="percentiles", lower=0.5, upper=99.5),
    sw_overlap=0.25,
    sw_batch_size=4,
    backbone=dict(type="swin", feature_size=12, depths=[1, 1, 1, 1], num_heads=[1, 2, 3, 6], window_size=4),
    head=dict(type="unetr_decoder", feature_size=8, identity_skip_levels=[5]),
)

train = dict(
    output_dir="runs/seg",
    max_steps=480,
    eval_every=60,
    batch_size=2,
    eval_batch_size=1,
    lr=2e-3,
    warmup_steps=20,
    best_metric="dice",
    greater_is_better=True,
    early_stopping_patience=4,
)
