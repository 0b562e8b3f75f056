"""Two CPU processes really train together (gloo), and accumulation equals a bigger batch.

``accelerate launch --multi_gpu --num_processes 2`` on a machine without GPUs gives a
gloo process group because polyhead creates its Accelerator with ``cpu=True``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROBE = Path(__file__).with_name("probe.py")
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _run(out: Path, batch_size: int, grad_accum: int, processes: int = 1) -> list[dict]:
    out.mkdir(parents=True)
    launcher = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(processes), "--main_process_port", "0"] if processes > 1 else [sys.executable]
    result = subprocess.run([*launcher, str(PROBE), str(out), str(batch_size), str(grad_accum)], capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def _max_weight_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(np.array(a["weights"][k]) - np.array(b["weights"][k])).max()) for k in a["weights"])


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    (run,) = _run(tmp_path_factory.mktemp("single") / "run", batch_size=32, grad_accum=1)
    return run


@pytest.mark.slow
def test_two_processes_train_together(tmp_path, single):
    ranks = _run(tmp_path / "ddp", batch_size=16, grad_accum=1, processes=2)
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" for r in ranks)
    for step0, step1, reference in zip(ranks[0]["steps"], ranks[1]["steps"], single["steps"]):
        # disjoint halves of the same global batch the 1-process run used
        assert not set(step0["indices"]) & set(step1["indices"])
        assert sorted(step0["indices"] + step1["indices"]) == sorted(reference["indices"])
        # identical weights on both ranks after every step
        assert step0["checksum"] == step1["checksum"]
    assert _max_weight_diff(ranks[0], single) < 1e-3
    # metrics gathered over exactly the validation set (no duplicated padding samples)
    for name in ("mae", "mse", "mase", "smape"):
        assert ranks[0]["final_eval"][name] == pytest.approx(single["final_eval"][name], rel=1e-4)
    assert ranks[0]["final_eval"] == ranks[1]["final_eval"]
    assert ranks[0]["validation_size"] % 2 == 1, "use an odd-sized validation set so padding would show"


@pytest.mark.slow
def test_gradient_accumulation_equals_the_bigger_batch(tmp_path, single):
    (accumulated,) = _run(tmp_path / "accum", batch_size=16, grad_accum=2)
    # the same samples in the same order (per-step records differ only by the loader's one-batch prefetch)
    seen = [i for step in accumulated["steps"] for i in step["indices"]]
    reference = [i for step in single["steps"] for i in step["indices"]]
    common = min(len(seen), len(reference))
    assert common >= 6 * 32 and seen[:common] == reference[:common]
    assert _max_weight_diff(accumulated, single) < 1e-4
