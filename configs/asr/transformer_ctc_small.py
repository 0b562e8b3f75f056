# The same recipe on the shared Transformer encoder (rotary positions, so any length): only the backbone changes.
_base_ = ["./conformer_ctc_small.py"]

model = dict(backbone=dict(_delete_=True, type="transformer", dim=96, depth=6, num_heads=4, mlp_ratio=4.0, dropout=0.1, position="rotary"))

train = dict(output_dir="runs/asr_transformer")
