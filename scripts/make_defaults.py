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

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {
    # task folder: (config, run dir)
    "forecasting": ("configs/forecasting/patchtst_co2.py", "runs/defaults/forecasting"),
    "recommendation": ("configs/recommendation/sasrec_ml100k.py", "runs/defaults/recommendation"),
    "rl": ("configs/rl/ppo_gtrxl_cartpole.py", "runs/defaults/rl"),
}


def main() -> None:
    for name, (config, run_dir) in DEFAULTS.items():
        subprocess.run(
            [sys.executable, "-m", "polyhead", "train", config, "--cfg-options", f"train.output_dir={run_dir}", "train.log_with=None"],
            cwd=ROOT,
            check=True,
        )
        target = ROOT / "polyhead" / "defaults" / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / run_dir / "best", target)
        print(f"default {name}: {target}")


if __name__ == "__main__":
    main()
