# A small ConvNeXt + FPN + FCOS detector on the embedded pasted-objects set (256 px images).
# Swap the backbone (configs/detection/swin_tiny_fcos.py) or the head's depth (head.num_convs) here.
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/detection_paste.py"]

model = dict(
    task="detection",
    image_size=256,
    backbone=dict(type="convnext", spatial_dims=2, in_channels=3, depths=(1, 1, 2, 1), dims=(32, 64, 128, 192), drop_path_rate=0.0),
    head=dict(type="fcos", fpn_channels=64, num_convs=2, min_reduction=8, center_sampling_radius=1.5),
    score_threshold=0.05,
    nms_threshold=0.6,
)

train = dict(
    output_dir="runs/det",
    epochs=24,
    batch_size=8,
    eval_batch_size=20,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=50,
    max_grad_norm=5.0,
    best_metric="map",
    greater_is_better=True,
)
