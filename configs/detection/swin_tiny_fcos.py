# The same detector on MONAI's Swin Transformer (2-D): only the backbone section changes.
# Swin's maps have strides 2..32; the head reads those with stride >= 8.
_base_ = ["./convnext_tiny_fcos.py"]

model = dict(
    backbone=dict(
        _delete_=True, type="swin", spatial_dims=2, in_channels=3, feature_size=24,
        depths=(1, 1, 2, 1), num_heads=(2, 3, 6, 12), window_size=8,
    ),
)

train = dict(output_dir="runs/det_swin")
