# Whole-head training around the embedded MNI ICBM152 2009a template (2 mm; grey / white matter labels).
# The template is skull-stripped, so training images are synthesised (SynthSeg-style, see
# polyhead/tasks/segmentation/synthesis.py): around the template's brain, a new head each sample
# (CSF, skull, marrow, scalp, face, eyes, neck, spine, each tissue a random intensity), a random
# deformation, bias field, blur / low resolution, noise and gamma; some samples keep the template's
# real T1 inside the brain, some have no head (skull-stripped input).
# validation: whole synthetic heads from the same generator, other seeds (model selection);
# test: whole-head phantoms built by another method (phantom_head), other seeds.
# `polyhead evaluate MODEL --data FOLDER` sets data.source and evaluates on FOLDER's own volumes instead
# (split into slabs or by volumes as below), without synthesis.
data = dict(
    root="mni152_2mm",
    synthesis=dict(samples=20000, validation_heads=3, test_phantoms=3, random_contrast=0.15),
    region_axis=1,
    test_fraction=0.3,
    val_fraction=0.15,
    region_margin=4,
    patches_per_volume=32,
    cache_volumes=3,
    seed=0,
)
