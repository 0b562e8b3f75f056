"""Sample inputs that ship inside polyhead, one per pipeline task: what the README's examples run on, and a
quick way to try a pipeline before you have data of your own.

Example:
    >>> import polyhead
    >>> polyhead.example_file("segmentation").name
    'mni152_2009a.nii.gz'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import UnknownNameError, did_you_mean

__all__ = ["EXAMPLE_FILES", "example_file"]

#: pipeline task -> (file under polyhead/assets, what it is)
EXAMPLE_FILES: dict[str, tuple[str, str]] = {
    "segmentation": ("mni152_2mm/imagesTr/mni152_2009a.nii.gz", "the MNI152 2009a T1 template, skull-stripped, 2 mm (NIfTI)"),
    "automatic-speech-recognition": ("speech_commands/test/00001.opus", "a synthetic espeak-ng clip saying 'play a song' (Opus)"),
    "object-detection": ("detection_paste/test/0001.jpg", "a photo with Fashion-MNIST items and a face pasted on it (JPEG)"),
    "time-series-forecasting": ("co2_weekly.csv", "weekly Mauna Loa CO2 (CSV: date,co2)"),
}


def example_file(task: str) -> Path:
    """The sample input polyhead ships for a pipeline task (or its alias: ``"asr"``, ``"detection"``, ...)."""
    from .pipelines import ALIASES

    name = ALIASES.get(task, task)
    if name not in EXAMPLE_FILES:
        known = sorted(EXAMPLE_FILES) + sorted(alias for alias, target in ALIASES.items() if target in EXAMPLE_FILES)
        raise UnknownNameError(f"No example file for {task!r}.{did_you_mean(task, known)} Tasks with one: {', '.join(known)}.")
    return Path(str(resources.files("polyhead") / "assets" / EXAMPLE_FILES[name][0]))
