# The same task with a ConvNeXt encoder: a config change only.
_base_ = ["./swin_tiny_brain.py"]

model = dict(
    backbone=dict(_delete_=True, type="convnext", depths=[1, 1, 1, 1], dims=[16, 32, 64, 128]),
    head=dict(type="unetr_decoder", feature_size=8, identity_skip_levels=[4]),
)

train = dict(output_dir="runs/seg-convnext")
