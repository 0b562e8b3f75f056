# The same three tasks on a FROZEN shared backbone, each task with its own low-rank adapters (PEFT LoRA)
# on the backbone's attention projections: only the adapters and the task heads train.
_base_ = ["./sequence_trio.py"]

model = dict(lora=dict(r=8, alpha=16, target_modules=["qkv", "proj"]))

train = dict(output_dir="runs/multitask_lora")
