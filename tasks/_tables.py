"""Loading user tables through ``datasets``: the one loader every task's data module uses."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from polyhead.errors import DataError
from polyhead.validation import look_up_option

__all__ = ["load_table"]

_BUILDERS = {".csv": "csv", ".parquet": "parquet", ".json": "json", ".jsonl": "json"}


def load_table(source: Any, *, named: Mapping[str, Path] | None = None) -> datasets.Dataset:
    """Load a table as a ``datasets.Dataset``.

    Args:
        source: a path to a ``.csv`` / ``.parquet`` / ``.json(l)`` file or a
            ``save_to_disk`` folder, a pandas DataFrame, a ``datasets.Dataset``, or a
            key of ``named``.
        named: tables that ship with polyhead, by name -> file.
    """
    named = dict(named or {})
    if isinstance(source, datasets.Dataset):
        return source
    if isinstance(source, pd.DataFrame):
        return datasets.Dataset.from_pandas(source, preserve_index=False)
    if isinstance(source, str) and source in named:
        source = named[source]
    path = Path(str(source))
    if not path.exists():
        embedded = f" nor an embedded table ({', '.join(named)})" if named else ""
        raise DataError(f"Data source {str(source)!r} is not an existing file or folder{embedded}.")
    if path.is_dir():
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as err:
            raise DataError(f"{path} is a folder but not a dataset saved with save_to_disk: {err}") from None
    builder = look_up_option(path.suffix.lower(), _BUILDERS, "data file type")
    options = {"skiprows": _leading_comment_lines(path)} if builder == "csv" else {}
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as err:  # datasets raises many types for unreadable files
        raise DataError(f"Could not read {path} as {builder}: {err}") from None


def _leading_comment_lines(path: Path) -> int:
    """How many lines at the top of a CSV start with ``#`` (a header note, as NOAA, NASA and R write them)."""
    count = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.lstrip().startswith("#"):
                break
            count += 1
    return count
