"""Run under ``accelerate launch --multi_gpu --num_processes 2`` on a machine without GPUs: what Accelerate makes of an
FSDP plugin with ``cpu=True`` (polyhead's CPU Accelerator). Prints one JSON line per rank."""

from __future__ import annotations

import json

import torch
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin

accelerator = Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
model = accelerator.prepare(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 1)))
line = json.dumps({"rank": accelerator.process_index, "distributed_type": str(accelerator.distributed_type),
                   "model": type(model).__name__, "parameter": type(next(model.parameters())).__name__})
for rank in range(accelerator.num_processes):  # one rank at a time: two processes writing at once can share a line
    if rank == accelerator.process_index:
        print(line, flush=True)
    accelerator.wait_for_everyone()
