# Swin-UNETR-style grey/white matter segmentation of WHOLE-HEAD T1 MRI (skull, scalp, neck): the default's recipe
# (swin_tiny_brain.py, same model) trained on heads synthesised around the embedded MNI152 template, SynthSeg-style
# (polyhead/tasks/segmentation/synthesis.py): around the template's brain, a new head each sample (CSF, skull,
# marrow, scalp, face, eyes, neck, spine, each tissue a random intensity), a random deformation, bias field, blur /
# low resolution, noise and gamma; some samples keep the template's real T1 inside the brain, some have no head.
# Validation: whole synthetic heads from the same generator, other seeds; test: whole-head phantoms built by another
# method (phantom_head), other seeds. `polyhead evaluate MODEL --data FOLDER` evaluates on FOLDER's own volumes.
# Meant to replace the embedded default; not yet: 5,000 steps are ~2.5 h on a quiet 2-core CPU (a GPU: minutes).
_base_ = ["./swin_tiny_brain.py"]

model = dict(keep_largest_component=True)  # the brain is one piece: stray foreground (neck, face) becomes background

data = dict(synthesis=dict(samples=20000, validation_heads=3, test_phantoms=3, random_contrast=0.15), cache_volumes=3)

train = dict(output_dir="runs/seg_whole_head", max_steps=5000, eval_every=1000, warmup_steps=100, early_stopping_patience=None)
