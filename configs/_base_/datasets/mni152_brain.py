# The embedded MNI ICBM152 2009a T1 template at 2 mm (grey / white matter labels). data.split is
# chosen from the data: one or two volumes are split into slabs along region_axis (RAS; 1 = posterior
# to anterior: test first, then validation, then training, region_margin voxels apart, so no training
# patch overlaps the held-out regions); three or more are split by whole volumes (data.split="cases").
data = dict(
    root="mni152_2mm",
    region_axis=1,
    test_fraction=0.3,
    val_fraction=0.15,
    region_margin=4,
    patches_per_volume=32,
    cache_volumes=2,
)
