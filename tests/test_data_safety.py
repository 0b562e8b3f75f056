"""Nothing from a model folder runs; nothing polyhead did not write is deleted or overwritten (issue 14).

Each test reproduces one finding of the security review: it failed on the code before the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import polyhead
from polyhead.cards import write_card
from polyhead.cli import main as cli
from polyhead.errors import ModelLoadError, OutputError
from polyhead.model_dir import MARKER_NAME, mark_folder, run_lock, write_folder
from polyhead.pipelines import default_model_dir
from polyhead.tasks.forecasting import ForecastingConfig, PolyheadForForecasting

from .conftest import TINY_FORECASTING

FORECASTER = default_model_dir("time-series-forecasting")


def _tiny_model(seed: int = 0, dim: int = 16) -> PolyheadForForecasting:
    torch.manual_seed(seed)
    config = ForecastingConfig(context_length=32, horizon=8, patch_length=8, patch_stride=4,
                               backbone={"type": "transformer", "dim": dim, "depth": 1, "num_heads": 2, "max_length": 16})
    return PolyheadForForecasting(config).eval()


def _user_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's: a file and a sub-folder; returns what must survive."""
    (path / "chapters").mkdir(parents=True)
    (path / "thesis.txt").write_text("four years of work")
    (path / "chapters" / "one.tex").write_text("\\chapter{One}")
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _unchanged(path: Path, before: dict[str, bytes]) -> None:
    after = {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after == before, f"{path} changed: {sorted(set(after) ^ set(before))}"


# ----------------------------------------------------------------------------- 1: nothing executes


@pytest.fixture
def forecaster_copy(tmp_path) -> Path:
    path = tmp_path / "model"
    shutil.copytree(FORECASTER, path)
    return path


def test_evaluate_never_executes_a_python_file_from_the_model_folder(forecaster_copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = f"_pwn = __import__('pathlib').Path({str(marker)!r}).touch()\n"
    (forecaster_copy / "training_config.py").write_text(payload + "data = dict(source='co2_weekly')\n")
    # the folder's data config is read from training_config.json, as data
    assert cli(["evaluate", str(forecaster_copy)]) == 0
    assert "mae" in capsys.readouterr().out
    assert not marker.exists(), "polyhead evaluate executed training_config.py"

    # an old folder with only the .py: a clear error, still nothing executed
    (forecaster_copy / "training_config.json").unlink()
    assert cli(["evaluate", str(forecaster_copy)]) == 2
    err = capsys.readouterr().err
    assert "has only training_config.py" in err and "never executes Python from a model folder" in err
    with pytest.raises(ModelLoadError, match="never executes Python"):
        polyhead.evaluate_model_dir(forecaster_copy)
    assert not marker.exists()
    # with --data the user says what to evaluate on: the .py is still not run
    assert polyhead.evaluate_model_dir(forecaster_copy, data="co2_weekly")["metrics"]["mae"] > 0
    assert not marker.exists()


def test_a_run_saves_its_config_as_data(tmp_path):
    result = polyhead.train("forecasting", cfg_options={**TINY_FORECASTING, "train.epochs": 1, "train.output_dir": str(tmp_path / "run")})
    saved = json.loads((result.best_dir / "training_config.json").read_text())
    assert saved["model"]["context_length"] == 32 and saved["train"]["epochs"] == 1 and saved["data"]["source"] == "co2_weekly"
    assert not list(result.best_dir.glob("*.py"))
    # the saved config reproduces the run: `polyhead train training_config.json` reads it as data
    again = polyhead.train(result.best_dir / "training_config.json", cfg_options={"train.output_dir": str(tmp_path / "again")})
    assert again.metrics["test"] == pytest.approx(result.metrics["test"], rel=1e-5)


# ----------------------------------------------------------------------------- 2: writers never delete the user's files


def test_collect_refuses_a_folder_polyhead_did_not_write(tmp_path, capsys):
    out = tmp_path / "thesis"
    before = _user_folder(out)
    assert cli(["collect", "random", "--env", "CartPole-v1", "--episodes", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "was not written by polyhead" in err and "thesis.txt" in err
    _unchanged(out, before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_collect_refuses_to_turn_a_file_into_a_folder(tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert cli(["collect", "random", "--env", "CartPole-v1", "--episodes", "2", "--out", str(out)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert out.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_collect_replaces_its_own_dataset_only_when_asked(tmp_path, capsys):
    out = tmp_path / "trajectories"
    args = ["collect", "random", "--env", "CartPole-v1", "--episodes", "2", "--out", str(out)]
    assert cli(args) == 0
    (out / "notes.md").write_text("what I collected")  # the user adds a file to polyhead's folder
    first = sorted(p.name for p in out.iterdir())
    assert cli(args + ["--seed", "7"]) == 2
    assert "pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == first
    assert cli(args + ["--seed", "7", "--overwrite"]) == 0
    assert (out / "notes.md").read_text() == "what I collected"  # replaced polyhead's files, kept the user's
    from datasets import load_from_disk

    assert len(load_from_disk(str(out))) == 2


def test_save_pretrained_refuses_a_folder_that_is_not_a_model(tmp_path):
    before = _user_folder(tmp_path / "docs")
    with pytest.raises(OutputError, match="was not written by polyhead"):
        _tiny_model().save_pretrained(tmp_path / "docs")
    _unchanged(tmp_path / "docs", before)
    file = tmp_path / "weights"
    file.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        _tiny_model().save_pretrained(file)


def test_train_refuses_an_output_dir_with_the_users_files(tmp_path):
    out = tmp_path / "project"
    before = _user_folder(out)
    with pytest.raises(OutputError, match="train.output_dir .* was not written by polyhead"):
        polyhead.train("forecasting", cfg_options={**TINY_FORECASTING, "train.output_dir": str(out)})
    _unchanged(out, before)


def test_the_user_files_in_a_model_folder_survive_a_new_save(tmp_path):
    folder = tmp_path / "m"
    _tiny_model(0).save_pretrained(folder)
    (folder / "notes.txt").write_text("keep me")
    _tiny_model(1).save_pretrained(folder)
    assert (folder / "notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- 3: MovieLens fetch


def test_movielens_fetch_moves_in_only_the_data_files(tmp_path, monkeypatch):
    """The fetch downloads the recbole wheel from PyPI (as `make data` does) into a fresh folder."""
    from polyhead.tasks.recommendation.data import ML100K_FILES, fetch_movielens_100k, movielens_100k_dir

    target = tmp_path / "projectA"
    before = _user_folder(target)
    cached = movielens_100k_dir()
    for name in ML100K_FILES[:2]:  # two of the three files are there already: only the third is fetched
        shutil.copy(cached / name, target / name)
        before[name] = (target / name).read_bytes()
    monkeypatch.setenv("POLYHEAD_ML100K_DIR", str(target))
    assert fetch_movielens_100k() == target
    after = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert {k: after[k] for k in before} == before  # nothing of the user's (or already there) changed
    assert set(after) - set(before) == {ML100K_FILES[2]}
    assert (target / ML100K_FILES[2]).read_bytes() == (cached / ML100K_FILES[2]).read_bytes()


# ----------------------------------------------------------------------------- 10: a save replaces the weights as a whole


def test_a_sharded_save_replaces_the_old_single_weights_file(tmp_path):
    folder = tmp_path / "m"
    old, new = _tiny_model(0, dim=16), _tiny_model(1, dim=16)
    old.save_pretrained(folder)
    new.save_pretrained(folder, max_shard_size="20KB")
    names = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" not in names and "model.safetensors.index.json" in names, names
    loaded = polyhead.AutoModel.from_pretrained(folder)
    for key, value in new.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    # and back: a single file replaces the shards and their index
    old.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == [MARKER_NAME, "config.json", "model.safetensors", "preprocessor_config.json"]  # save_pretrained writes the processor too


# ----------------------------------------------------------------------------- 12: one run per output_dir


def test_a_second_run_into_a_busy_output_dir_names_the_first(tmp_path):
    out = tmp_path / "run"
    mark_folder(out, "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom polyhead.model_dir import run_lock\n"
         f"with run_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=rf"being written by another polyhead run \(pid {holder.pid} on "):
            polyhead.train("forecasting", cfg_options={**TINY_FORECASTING, "train.output_dir": str(out)})
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "best").exists()
    with run_lock(out):  # the OS released the killed holder's lock
        pass


# ----------------------------------------------------------------------------- 13: temporary files


def test_staging_stays_inside_the_target_folder(tmp_path, monkeypatch):
    """At the root of a mount, the parent is another filesystem: every move must stay inside the target."""
    target = tmp_path / "mount-root"
    target.mkdir()
    moves = []
    real_replace = os.replace

    def replace(src, dst):
        moves.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    _tiny_model().save_pretrained(target)
    assert moves and all(target in src.parents and target in Path(dst).parents for src, dst in moves), moves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mount-root"]


def test_a_killed_save_leaves_staging_that_the_next_save_removes(tmp_path):
    folder = tmp_path / "m"
    code = (
        "import os, signal, torch\n"
        "from polyhead.tasks.forecasting import ForecastingConfig, PolyheadForForecasting\n"
        "import transformers\n"
        "real = transformers.PreTrainedModel.save_pretrained\n"
        "def dying(self, d, *a, **k):\n"
        "    real(self, d, *a, **k)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "transformers.PreTrainedModel.save_pretrained = dying\n"
        "cfg = ForecastingConfig(context_length=32, horizon=8, patch_length=8, patch_stride=4,\n"
        "    backbone={'type': 'transformer', 'dim': 16, 'depth': 1, 'num_heads': 2, 'max_length': 16})\n"
        f"PolyheadForForecasting(cfg).save_pretrained({str(folder)!r})\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    leftovers = [p.name for p in folder.iterdir()]
    assert leftovers and all(name.startswith(".polyhead-staging-") for name in leftovers), leftovers
    assert not (folder / "config.json").exists()  # never a half model
    _tiny_model().save_pretrained(folder)  # the folder holds only polyhead's staging: accepted, and cleaned
    assert sorted(p.name for p in folder.iterdir()) == [MARKER_NAME, "config.json", "model.safetensors", "preprocessor_config.json"]  # save_pretrained writes the processor too


def test_a_failed_move_never_pairs_a_new_config_with_old_weights(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    old = _tiny_model(0, dim=16)
    old.save_pretrained(folder)
    old_config = (folder / "config.json").read_text()
    real_replace = os.replace
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # after the first file moved in
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        _tiny_model(1, dim=32).save_pretrained(folder)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (folder / "config.json").exists() or (folder / "config.json").read_text() == old_config
    with pytest.raises(ModelLoadError):  # an incomplete folder is refused, never loaded as a mix
        polyhead.AutoModel.from_pretrained(folder)
    _tiny_model(1, dim=32).save_pretrained(folder)  # the next save repairs it
    assert polyhead.AutoModel.from_pretrained(folder).config.backbone["dim"] == 32


def test_write_folder_leaves_the_target_as_it_was_when_the_block_fails(tmp_path):
    folder = tmp_path / "data"
    with write_folder(folder, kind="dataset") as staging:
        (staging / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with write_folder(folder, kind="dataset", overwrite=True) as staging:
            (staging / "a.txt").write_text("2")
            raise RuntimeError("interrupted")
    assert (folder / "a.txt").read_text() == "1"
    assert sorted(p.name for p in folder.iterdir()) == [MARKER_NAME, "a.txt"]


# ----------------------------------------------------------------------------- 16: permissions follow the umask


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        folder = tmp_path / "m"
        shutil.copytree(FORECASTER, folder)
        write_card(folder)
        _tiny_model().save_pretrained(tmp_path / "fresh")
        files = [folder / "README.md", folder / MARKER_NAME, *(tmp_path / "fresh").iterdir()]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o644, (file, oct(file.stat().st_mode))
        assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o755
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------- read-only outputs


def _unprivileged(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``command`` so that permission bits apply (root ignores them: its capabilities to do so are dropped)."""
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-dac_override,-dac_read_search", *command]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_export_into_a_read_only_folder_is_an_error_not_a_traceback(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(FORECASTER, folder)
    tmp_path.chmod(0o755)
    folder.chmod(0o555)
    result = _unprivileged([sys.executable, "-m", "polyhead", "export", str(folder)], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and f"The model folder {folder} is not writable" in result.stderr
    folder.chmod(0o755)
    assert not (folder / "model.onnx").exists()


def test_segmentation_output_is_checked_before_the_inference(tmp_path):
    seg = polyhead.pipeline("segmentation")
    volume = np.random.default_rng(0).random((24, 24, 24)).astype(np.float32)
    mine = tmp_path / "scan_mask.nii.gz"
    mine.write_bytes(b"the user's own file")
    with pytest.raises(polyhead.errors.InputError, match="exists and was not written by polyhead"):
        seg(volume, affine=np.eye(4), output=mine)
    assert mine.read_bytes() == b"the user's own file"
    with pytest.raises(polyhead.errors.InputError, match="is a folder"):
        seg(volume, affine=np.eye(4), output=tmp_path)
    with pytest.raises(polyhead.errors.InputError, match=r"\.nii or \.nii\.gz"):
        seg(volume, affine=np.eye(4), output=tmp_path / "mask.png")
    ours = tmp_path / "ours.nii.gz"
    first = seg(volume, affine=np.eye(4), output=ours)
    assert Path(first["output"]) == ours
    seg(volume * 2, affine=np.eye(4), output=ours)  # polyhead's own mask (its header says so): replaced
    seg(volume, affine=np.eye(4), output=mine, overwrite=True)  # the user asked
    import nibabel as nib

    assert np.array_equal(np.asarray(nib.load(mine).dataobj), first["mask"])
    old = os.umask(0o022)
    try:
        seg(volume, affine=np.eye(4), output=tmp_path / "perm.nii.gz")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "perm.nii.gz").stat().st_mode) == 0o644


def test_segmentation_output_in_a_read_only_place_fails_before_the_inference(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    tmp_path.chmod(0o755)
    read_only.chmod(0o555)
    code = ("import numpy as np, polyhead\n"
            "seg = polyhead.pipeline('segmentation')\n"
            "seg.model.forward = None  # the check must come before any inference\n"
            f"seg(np.zeros((16, 16, 16), np.float32), affine=np.eye(4), output={str(read_only / 'mask.nii.gz')!r})\n")
    result = _unprivileged([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 1 and "InputError" in result.stderr, result.stderr[-2000:]
    assert f"{read_only} is not a writable folder" in result.stderr


def test_a_run_that_fails_before_writing_leaves_no_folder_and_keeps_the_users(tmp_path):
    """A bad option found before training: the run folder polyhead created goes again; a folder that was there
    stays; a run that failed after writing a checkpoint keeps it (for --resume)."""
    from polyhead.errors import ConfigError

    bad = {**TINY_FORECASTING, "train.num_workers": -1}
    with pytest.raises(ConfigError, match="train.num_workers"):
        polyhead.train("forecasting", cfg_options={**bad, "train.output_dir": str(tmp_path / "new")})
    assert not (tmp_path / "new").exists()

    (tmp_path / "mine").mkdir()
    with pytest.raises(ConfigError, match="train.num_workers"):
        polyhead.train("forecasting", cfg_options={**bad, "train.output_dir": str(tmp_path / "mine")})
    assert (tmp_path / "mine").is_dir()

    class Crash(RuntimeError):
        pass

    def crash(trainer) -> None:
        raise Crash("after the first step")

    options = {**TINY_FORECASTING, "train.checkpoint_every": 1, "train.log_with": None, "train.progress_bar": False}
    with pytest.raises(Crash):
        polyhead.train("forecasting", callbacks=[crash], cfg_options={**options, "train.output_dir": str(tmp_path / "crashed")})
    assert (tmp_path / "crashed" / "checkpoints").is_dir() and (tmp_path / "crashed" / MARKER_NAME).is_file()
