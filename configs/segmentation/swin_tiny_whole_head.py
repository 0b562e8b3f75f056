# Swin-UNETR-style grey/white matter segmentation of WHOLE-HEAD T1 MRI (skull, scalp, neck), trained on heads
# synthesised around the embedded MNI152 template (configs/_base_/datasets/mni152_whole_head.py, SynthSeg-style).
# The recipe meant to replace the embedded default (swin_tiny_brain.py, trained on the skull-stripped template only);
# it is not the default yet: 5,000 steps are about 10 hours on 2 CPU cores (a GPU: minutes).
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/mni152_whole_head.py"]

model = dict(
    task="segmentation",
    patch_size=[32, 32, 32],
    target_spacing=[2.0, 2.0, 2.0],
    intensity=dict(mode="percentiles", lower=0.5, upper=99.5),
    sw_overlap=0.25,
    sw_batch_size=4,
    keep_largest_component=True,  # the brain is one piece: stray foreground (neck, face) becomes background
    backbone=dict(type="swin", feature_size=12, depths=[1, 1, 1, 1], num_heads=[1, 2, 3, 6], window_size=4),
    head=dict(type="unetr_decoder", feature_size=8, identity_skip_levels=[5]),
)

train = dict(
    output_dir="runs/seg_whole_head",
    max_steps=5000,
    eval_every=1000,
    batch_size=2,
    eval_batch_size=1,
    lr=2e-3,
    warmup_steps=100,
    best_metric="dice",
    greater_is_better=True,
    early_stopping_patience=None,
)
