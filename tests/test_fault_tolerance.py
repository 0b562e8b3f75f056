"""Training survives being killed: SIGKILL + --resume, SIGTERM checkpoints, corrupted checkpoints."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .conftest import cli_options

POLYHEAD = str(Path(sys.executable).parent / "polyhead")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
# long enough to be killed mid-run: ~75 optimizer steps with a checkpoint after each
RUN = {"train.epochs": 3, "train.checkpoint_every": 1, "train.keep_checkpoints": 3, "train.eval_every": 10}


def _command(output_dir: Path, *extra: str) -> list[str]:
    return [POLYHEAD, "train", "forecasting", "--cfg-options", *cli_options(**RUN, **{"train.output_dir": str(output_dir)}), *extra]


def _steps(output_dir: Path) -> list[int]:
    folder = output_dir / "checkpoints"
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*")) if folder.is_dir() else []


def _interrupt(output_dir: Path, sig: int, after_step: int) -> subprocess.CompletedProcess:
    process = subprocess.Popen(_command(output_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if _steps(output_dir) and _steps(output_dir)[-1] >= after_step:
            process.send_signal(sig)
            break
        time.sleep(0.02)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _final_state(output_dir: Path) -> tuple[dict, dict, dict]:
    last = output_dir / "checkpoints" / f"step-{_steps(output_dir)[-1]:08d}"
    weights = load_file(last / "model.safetensors")
    optimizer = torch.load(last / "optimizer.bin", weights_only=True)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    return weights, optimizer, metrics


def _assert_same_run(a: Path, b: Path) -> None:
    wa, oa, ma = _final_state(a)
    wb, ob, mb = _final_state(b)
    assert _steps(a)[-1] == _steps(b)[-1]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0)
    for pid, state in oa["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(ob["state"][pid][name], value, rtol=0, atol=0)
    assert ma["test"] == pytest.approx(mb["test"], rel=1e-6)
    assert ma["best_step"] == mb["best_step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    result = subprocess.run(_command(out), capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume(tmp_path, uninterrupted):
    out = tmp_path / "run"
    kill_after = random.Random().randint(5, 40)
    killed = _interrupt(out, signal.SIGKILL, kill_after)
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert _steps(out)[-1] < _steps(uninterrupted)[-1]
    resumed = subprocess.run(_command(out, "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, uninterrupted):
    out = tmp_path / "run"
    stopped = _interrupt(out, signal.SIGTERM, 8)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    step = _steps(out)[-1]
    assert 8 <= step < _steps(uninterrupted)[-1]
    state = json.loads((out / "checkpoints" / f"step-{step:08d}" / "trainer_state.json").read_text())
    assert state["trainer"]["global_step"] == step
    resumed = subprocess.run(_command(out, "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_corrupted_latest_checkpoint_falls_back_with_a_warning(tmp_path, uninterrupted):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    steps = _steps(out)
    newest = out / "checkpoints" / f"step-{steps[-1]:08d}" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    (out / "checkpoints" / ".tmp-step-99999999").mkdir()  # a save that crashed half-way
    resumed = subprocess.run(_command(out, "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step-{steps[-1]:08d} cannot be used" in resumed.stderr
    _assert_same_run(out, uninterrupted)  # re-trained the last step from the previous checkpoint


def _copy_run(uninterrupted: Path, out: Path) -> tuple[Path, list[int]]:
    import shutil

    shutil.copytree(uninterrupted, out)
    steps = _steps(out)
    return out / "checkpoints" / f"step-{steps[-1]:08d}", steps


@pytest.mark.slow
def test_missing_random_states_fall_back_instead_of_diverging(tmp_path, uninterrupted):
    newest, steps = _copy_run(uninterrupted, tmp_path / "run")
    (newest / "random_states_0.pkl").unlink()
    resumed = subprocess.run(_command(tmp_path / "run", "--resume"), capture_output=True, text=True,
                             env={**ENV, "PYTHONWARNINGS": "ignore"}, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # logged, so it shows with Python warnings turned off
    assert f"step-{steps[-1]:08d} cannot be used (random_states_0.pkl missing" in resumed.stderr
    _assert_same_run(tmp_path / "run", uninterrupted)


@pytest.mark.slow
def test_a_flipped_bit_inside_tensor_data_is_detected(tmp_path, uninterrupted):
    newest, steps = _copy_run(uninterrupted, tmp_path / "run")
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # the last tensor's bytes: the file still parses, the values differ
    weights.write_bytes(bytes(data))
    load_file(weights)  # still a valid safetensors file: only the checksum catches it
    resumed = subprocess.run(_command(tmp_path / "run", "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step-{steps[-1]:08d} cannot be used (model.safetensors does not match the checksum" in resumed.stderr
    _assert_same_run(tmp_path / "run", uninterrupted)


@pytest.mark.slow
def test_a_step_beyond_max_steps_says_nothing_is_left_to_train(tmp_path, uninterrupted):
    newest, steps = _copy_run(uninterrupted, tmp_path / "run")
    state_file = newest / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["trainer"]["global_step"] = 10_000
    state_file.write_text(json.dumps(state))  # trainer_state.json itself carries the checksums, so it is not checked
    resumed = subprocess.run(_command(tmp_path / "run", "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 10000, at or beyond this run's last step" in resumed.stderr and "nothing is left to train" in resumed.stderr


def test_resume_with_only_corrupted_checkpoints_is_an_error(tmp_path):
    from polyhead.model_dir import mark_folder

    out = tmp_path / "run"
    mark_folder(out, "run")  # a run folder polyhead wrote
    broken = out / "checkpoints" / "step-00000003"
    broken.mkdir(parents=True)
    (broken / "trainer_state.json").write_text("{not json")
    result = subprocess.run(_command(out, "--resume"), capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 2
    assert "no checkpoint in" in result.stderr and "could be loaded" in result.stderr
