# CTR on MovieLens-100k: does a user rate a movie 4 or 5? One token per field (user, movie,
# gender, occupation, genre as ids; age as a scaled vector), the shared Transformer without a
# causal mask or positions, and the CTR head with Hiformer's heterogeneous (per-field) attention.
# Rows split at random 80/10/10 (seed 0); logistic regression baseline on the same split.
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/ml100k.py"]

model = dict(
    task="recommendation",
    objective="ctr",  # PolyheadForCTR: the adapter reads the field tokens bidirectionally
    fields=[
        dict(name="user_id", kind="categorical"),
        dict(name="item_id", kind="categorical"),
        dict(name="gender", kind="categorical"),
        dict(name="occupation", kind="categorical"),
        dict(name="genre", kind="categorical"),
        dict(name="age", kind="numeric"),
    ],
    rating_threshold=4.0,
    backbone=dict(type="transformer", dim=32, depth=1, num_heads=2, mlp_ratio=2.0, dropout=0.1, position="none"),
    head=dict(type="ctr", interaction="hiformer", num_heads=2, pooling="flatten", hidden_dims=[64], dropout=0.1),
)

train = dict(
    output_dir="runs/ctr", epochs=8, batch_size=512, lr=2e-3, weight_decay=0.01, warmup_steps=20,
    best_metric="auc", greater_is_better=True, early_stopping_patience=3,
)
