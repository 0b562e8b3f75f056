# Small Conformer-CTC (torchaudio Conformer) on the embedded espeak-ng speech set; ~0.9M parameters.
# The vocabulary is built from the training transcripts. Swap the backbone for the shared Transformer
# with configs/asr/transformer_ctc_small.py (a config change only).
_base_ = ["../_base_/default_runtime.py", "../_base_/datasets/speech_commands.py"]

model = dict(
    task="asr",
    n_mels=64,
    backbone=dict(type="conformer", dim=96, depth=4, num_heads=4, ffn_dim=256, kernel_size=15, dropout=0.1),
    head=dict(type="ctc", dropout=0.1),
    spec_augment=True,
)

train = dict(output_dir="runs/asr", epochs=30, batch_size=16, lr=2e-3, warmup_steps=200, eval_every=500, log_with=None)
