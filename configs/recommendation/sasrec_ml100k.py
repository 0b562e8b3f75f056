# SASRec-style next-item recommender on MovieLens-100k: the last 50 movies a user rated
# -> a score for each of the 1,682 movies. Leave-one-out by time per user, ranked against
# all items with the user's history masked; most-popular and BPR-MF baselines in the same run.
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/ml100k.py"]

model = dict(
    task="recommendation",
    objective="next_item",  # PolyheadForNextItem: the adapter attends causally (per call), every position predicts the next item
    max_length=50,
    backbone=dict(type="transformer", dim=64, depth=2, num_heads=2, mlp_ratio=2.0, dropout=0.2, position="learned", max_length=50),
    head=dict(type="next_item", loss="full"),
)

train = dict(
    output_dir="runs/rec", epochs=60, batch_size=128, lr=2e-3, weight_decay=0.0, warmup_steps=20,
    best_metric="ndcg@10", greater_is_better=True, early_stopping_patience=6,
)
