"""Why ``train.fsdp`` is refused on the CPU: Accelerate's ``Accelerator(cpu=True)`` ignores the FSDP plugin.

PyTorch's FSDP2 (``fully_shard``) does run on CPU processes over gloo, but polyhead trains through Accelerate, and
with two gloo processes Accelerate keeps ``MULTI_CPU`` and wraps the model in ``DistributedDataParallel``. If a new
Accelerate shards on the CPU, this test fails: then lift the check in :func:`polyhead.training.fsdp_plugin` and test
FSDP training here like ``test_ddp.py`` does DDP.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.distributed.test_ddp import ACCELERATE, ENV

PROBE = Path(__file__).with_name("fsdp_probe.py")


@pytest.mark.slow
def test_accelerate_ignores_fsdp_on_cpu_processes():
    result = subprocess.run([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0", str(PROBE)],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = sorted((json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    for rank in ranks:
        assert rank == {**rank, "distributed_type": "DistributedType.MULTI_CPU", "model": "DistributedDataParallel", "parameter": "Parameter"}
