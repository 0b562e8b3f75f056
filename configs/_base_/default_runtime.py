# Training defaults shared by every recipe (polyhead.training.TrainingArguments).
train = dict(
    epochs=10,
    batch_size=32,
    lr=1e-3,
    weight_decay=0.01,
    scheduler="cosine",
    warmup_steps=0,
    grad_accum=1,
    precision="no",
    max_grad_norm=1.0,
    early_stopping_patience=None,
    seed=0,
    log_with="tensorboard",
)
