"""Re-create the embedded default models under polyhead/defaults/ with `polyhead train`.

    make defaults

Each default is trained by polyhead's own CLI from its packaged recipe; the best
model dir (weights, config, processor, metrics, training config) is copied in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from polyhead.model_dir import write_folder

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {
    # task folder: (config, run dir)
    "forecasting": ("configs/forecasting/patchtst_co2.py", "runs/defaults/forecasting"),
    "recommendation": ("configs/recommendation/sasrec_ml100k.py", "runs/defaults/recommendation"),
    "rl": ("configs/rl/ppo_gtrxl_cartpole.py", "runs/defaults/rl"),
    "rl_lunarlander": ("configs/rl/decision_transformer_lunarlander.py", "runs/defaults/rl_lunarlander"),
    "asr": ("configs/asr/conformer_ctc_small.py", "runs/defaults/asr"),
    "detection": ("configs/detection/convnext_tiny_fcos.py", "runs/defaults/detection"),
    "segmentation": ("configs/segmentation/swin_tiny_brain.py", "runs/defaults/segmentation"),
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
    for name, (config, run_dir) in DEFAULTS.items():
        for command in PREPARE.get(name, []):
            subprocess.run([sys.executable, "-m", "polyhead", *command], cwd=ROOT, check=True)
        subprocess.run(
            [sys.executable, "-m", "polyhead", "train", config, "--cfg-options", f"train.output_dir={run_dir}", "train.log_with=None"],
            cwd=ROOT,
            check=True,
        )
        target = ROOT / "polyhead" / "defaults" / name
        best = ROOT / run_dir / "best"
        with write_folder(target, kind="model", what="default model folder") as staging:  # replaces only polyhead's files
            for item in best.iterdir():
                if not item.name.startswith("."):
                    shutil.copy2(item, staging / item.name)
        print(f"default {name}: {target}")


if __name__ == "__main__":
    main()
