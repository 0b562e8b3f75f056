# The embedded pasted-objects detection set (polyhead/assets/detection_paste; scripts/make_detection_dataset.py):
# faces (LFW) and Fashion-MNIST trousers, bags and sneakers on real photographs, COCO json + JPEG.
# Point data.root (or data.source) at your own COCO folder or a save_to_disk Hub-schema dataset to train on it.
data = dict(source="detection_paste", max_objects=100, flip_prob=0.5, scale_range=(0.6, 1.25))
