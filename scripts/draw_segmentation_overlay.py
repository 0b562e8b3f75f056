"""Draw the embedded segmentation default's mask over a brain MRI.

    python scripts/draw_segmentation_overlay.py                  # the template -> docs/segmentation_overlay.png
    python scripts/draw_segmentation_overlay.py --phantom 30000  # a whole-head phantom the default never saw

By default the volume is the embedded MNI152 template (skull-stripped: the default's scope). ``--phantom SEED`` draws on
:func:`polyhead.tasks.segmentation.synthesis.phantom_head` (seed 30000 is the first ``benchmarks/segmentation.py``
whole-head seed), stored as int16 like a scanner's NIfTI. The picture is what ``seg(scan, overlay="out.png")``
writes: three orthogonal slices through the labelled brain, grey matter orange, white matter blue.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polyhead
from polyhead.tasks.segmentation.data import EMBEDDED_ROOT, read_msd_folder
from polyhead.tasks.segmentation.synthesis import HeadAnatomy, phantom_head

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", type=int, default=None, metavar="SEED", help="draw on a whole-head phantom of this seed")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "segmentation_overlay.png")
    args = parser.parse_args()
    if args.phantom is None:
        image = read_msd_folder(EMBEDDED_ROOT).cases[0].image  # the embedded template's NIfTI
    else:
        image, _, _ = phantom_head(HeadAnatomy.from_folder(EMBEDDED_ROOT), args.phantom)
    out = polyhead.pipeline("segmentation")(image, overlay=args.out)
    print(f"wrote {out['overlay']}: {', '.join(f'{k} {v:.0f} ml' for k, v in out['volumes_ml'].items())}")


if __name__ == "__main__":
    main()
