"""The GPU and cluster tooling of "Training at scale" (issue 21), checked on a machine without a GPU:
``benchmarks/gpu.py`` refuses clearly and its measuring code runs on the CPU; the SLURM example parses."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}


def test_gpu_benchmark_without_a_gpu_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--output", str(out)], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == gpu.NO_GPU_EXIT == 2, result.stderr[-2000:]
    assert "benchmarks/gpu.py needs a CUDA GPU" in result.stderr and "nothing was measured" in result.stderr
    assert result.stdout == "" and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path of the measuring code; benchmarks/gpu.py itself measures on the GPU")
def test_gpu_benchmark_measuring_code_runs_on_the_cpu():
    """One fp32 step of the forecasting recipe through the same function the GPU run calls, so the script is not dead code."""
    row = gpu.measure_training("forecasting", "fp32", device=torch.device("cpu"), steps=1, warmup=1)
    assert row["samples_per_second"] > 0 and row["peak_memory_mib"] is None and row["batch_size"] >= 1
    bf16 = gpu.measure_training("forecasting", "bf16", device=torch.device("cpu"), steps=1, warmup=0)
    assert math.isfinite(bf16["final_loss"])
    assert "skipped" in gpu.measure_training("forecasting", "bf16+channels_last", device=torch.device("cpu"), steps=1, warmup=0)


def test_slurm_example_is_valid_bash():
    script = ROOT / "examples" / "slurm_train.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "#SBATCH --nodes=2" in text and "accelerate launch" in text and "--machine_rank" in text
    if shutil.which("shellcheck"):
        assert subprocess.run(["shellcheck", str(script)]).returncode == 0


def test_slurm_example_gives_each_node_its_rank(tmp_path):
    """The script under stand-ins for srun / scontrol / accelerate: the `accelerate launch` line one node runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"srun": 'shift\n"$@"', "scontrol": "echo gpu-a; echo gpu-b", "accelerate": 'printf "%s\\n" "$@"'}.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "gpu-[a-b]",
           "SLURM_NNODES": "2", "SLURM_NODEID": "1"}

    def launch() -> list[str]:
        result = subprocess.run(["bash", str(ROOT / "examples" / "slurm_train.sh"), "cfg.py", "train.precision=bf16"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    args = launch()
    assert args[:2] == ["launch", "--multi_gpu"]
    option = lambda name: args[args.index(name) + 1]
    assert (option("--num_machines"), option("--num_processes"), option("--machine_rank")) == ("2", "16", "1")
    assert option("--main_process_ip") == "gpu-a"
    assert args[args.index("-m"):] == ["-m", "polyhead", "train", "cfg.py", "--cfg-options", "train.output_dir=runs/slurm-42", "train.precision=bf16"]
    (tmp_path / "runs" / "slurm-42" / "checkpoints").mkdir(parents=True)  # requeued after preemption
    assert "--resume" in launch()


def test_readme_multi_node_config_is_an_accelerate_config(tmp_path):
    """The README's 2-node x 8-GPU file loads as Accelerate's own ClusterConfig (unknown keys would fail)."""
    import re

    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Training at scale"):text.index("### Your own data")]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    path = tmp_path / "multi_node.yaml"
    path.write_text(block)
    config = ClusterConfig.from_yaml_file(str(path))
    assert (config.distributed_type.value, config.num_machines, config.num_processes, config.machine_rank) == ("MULTI_GPU", 2, 16, 0)
    assert yaml.safe_load(block)["mixed_precision"] == "no"
    assert "accelerate launch --config_file multi_node.yaml -m polyhead train" in section


@pytest.mark.slow
def test_dataloading_benchmark_runs(tmp_path):
    """Its code path on one task, with tiny settings (the figures themselves need an idle machine)."""
    from benchmarks import dataloading

    out = tmp_path / "dataloading.json"
    assert dataloading.main(["--tasks", "forecasting", "--batches", "2", "--repeats", "1", "--output", str(out)]) == 0
    row = json.loads(out.read_text())["tasks"]["forecasting"]
    assert row["batch_size"] >= 1 and row["0_workers"]["samples_per_second"] > 0 and row["2_workers"]["samples_per_second"] > 0
    assert row["ratio"] == pytest.approx(row["2_workers"]["samples_per_second"] / row["0_workers"]["samples_per_second"], rel=1e-2)
