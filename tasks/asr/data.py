"""Speech data: ``datasets`` audio + text -> log-mel features and CTC labels.

Sources: an audiofolder (a folder of audio files with ``metadata.csv`` holding
``file_name,text``, optionally in ``train/``, ``validation/``, ``test/`` sub-folders),
a ``save_to_disk`` folder or ``datasets`` object with an audio and a text column, or
the embedded ``"speech_commands"`` set (espeak-ng speech, see
``scripts/make_speech_dataset.py``). Audio is decoded with torchcodec (FFmpeg's
shared libraries) at the model's rate; features are computed once, up front.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset

from polyhead.errors import DataError, InputError
from polyhead.validation import look_up_option

from .processing import ASRFeatureExtractor, load_audio, normalize_text

__all__ = ["EMBEDDED_SPEECH", "ASRClips", "collate_speech", "embedded_speech_dir", "load_speech_splits", "split_speech", "encode_texts"]

#: speech sets that ship inside polyhead: name -> folder under polyhead/assets
EMBEDDED_SPEECH = {"speech_commands": "speech_commands"}
UNKNOWN_CHARACTER_POLICIES = ("error", "drop", "unk")


def embedded_speech_dir(name: str = "speech_commands") -> Path:
    if name not in EMBEDDED_SPEECH:
        raise DataError(f"Unknown embedded speech set {name!r}; available: {', '.join(EMBEDDED_SPEECH)}.")
    return Path(str(resources.files("polyhead") / "assets" / EMBEDDED_SPEECH[name]))


def load_speech_splits(source: Any, *, audio_column: str = "audio", text_column: str = "text") -> dict[str, datasets.Dataset]:
    """Load ``source`` as ``{split: Dataset}`` with the audio column left undecoded (paths/bytes)."""
    if isinstance(source, datasets.DatasetDict):
        splits = dict(source)
    elif isinstance(source, datasets.Dataset):
        splits = {"train": source}
    else:
        if isinstance(source, str) and source in EMBEDDED_SPEECH:
            source = embedded_speech_dir(source)
        path = Path(str(source))
        if not path.is_dir():
            raise DataError(
                f"Speech data source {str(source)!r} is not a folder (an audiofolder with metadata.csv, or a "
                f"save_to_disk dataset) nor an embedded set ({', '.join(EMBEDDED_SPEECH)})."
            )
        if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        else:
            if not any(path.rglob("metadata.csv")):
                raise DataError(f"{path} has no metadata.csv: an audiofolder needs one with columns file_name,text.")
            try:
                splits = dict(datasets.load_dataset("audiofolder", data_dir=str(path)))
            except Exception as err:  # datasets raises many types for malformed folders
                raise DataError(f"Could not read {path} as an audiofolder: {type(err).__name__}: {err}") from None
    for name, split in splits.items():
        missing = [c for c in (audio_column, text_column) if c not in split.column_names]
        if missing:
            raise DataError(f"Split {name!r} has no column(s) {missing}; it has {split.column_names}. "
                            "Set data.audio_column / data.text_column.")
        if not isinstance(split.features[audio_column], datasets.Audio):
            raise DataError(f"Column {audio_column!r} of split {name!r} is not an Audio column ({split.features[audio_column]}).")
        splits[name] = split.cast_column(audio_column, datasets.Audio(decode=False))
    return splits


def split_speech(
    splits: Mapping[str, datasets.Dataset], *, val_fraction: float, test_fraction: float, seed: int = 0
) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset]:
    """``(train, validation, test)``: the source's own splits, else random fractions of ``train``."""
    if "train" not in splits:
        raise DataError(f"The speech data needs a 'train' split; it has {sorted(splits)}.")
    train = splits["train"]
    validation, test = splits.get("validation"), splits.get("test")
    for name, fraction, present in (("val_fraction", val_fraction, validation), ("test_fraction", test_fraction, test)):
        if present is None and not 0.0 < float(fraction) < 1.0:
            raise DataError(f"data.{name} must be in (0, 1), got {fraction!r}.")
    if test is None:
        parts = train.train_test_split(test_size=float(test_fraction), seed=seed)
        train, test = parts["train"], parts["test"]
    if validation is None:
        parts = train.train_test_split(test_size=float(val_fraction), seed=seed + 1)
        train, validation = parts["train"], parts["test"]
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        if len(split) == 0:
            raise DataError(f"The {name} split of the speech data is empty.")
    return train, validation, test


def encode_texts(texts: Sequence[str], vocab: Sequence[str], *, policy: str, split: str) -> list[list[int]]:
    """Character ids of normalised ``texts`` (spaces -> ``|``).

    Characters outside ``vocab``: ``policy="error"`` raises :class:`DataError` naming them,
    ``"drop"`` removes them, ``"unk"`` maps them to ``<unk>``.
    """
    look_up_option(policy, {p: p for p in UNKNOWN_CHARACTER_POLICIES}, "data.unknown_characters")
    index = {token: i for i, token in enumerate(vocab)}
    unknown = sorted({c for text in texts for c in text if c != " " and c not in index})
    if unknown and policy == "error":
        rows = [i for i, text in enumerate(texts) if any(c in unknown for c in text)]
        raise DataError(
            f"The {split} transcripts contain {len(unknown)} character(s) outside the model's vocabulary: "
            f"{unknown[:20]} (first in row {rows[0]}: {texts[rows[0]]!r}). Set data.unknown_characters='drop' or 'unk', "
            "or clean the text."
        )
    ids = []
    for text in texts:
        row = []
        for c in text:
            if c == " ":
                row.append(index["|"])
            elif c in index:
                row.append(index[c])
            elif policy == "unk":
                row.append(index["<unk>"])
        ids.append(row)
    return ids


class ASRClips(Dataset):
    """Decoded clips as log-mel features plus CTC labels.

    Item ``i``: ``{"input_features": (T, n_mels), "labels": (L,)}``; :attr:`texts` holds the
    normalised transcripts. Audio is decoded on first use (``len`` or an item), so evaluating
    one split never decodes the others.
    """

    def __init__(
        self,
        split: datasets.Dataset,
        *,
        name: str,
        feature_extractor: ASRFeatureExtractor,
        vocab: Sequence[str],
        audio_column: str,
        text_column: str,
        lowercase: bool,
        unknown_characters: str,
        max_seconds: float | None = None,
    ) -> None:
        look_up_option(unknown_characters, {p: p for p in UNKNOWN_CHARACTER_POLICIES}, "data.unknown_characters")
        self.split, self.name, self.feature_extractor, self.vocab = split, name, feature_extractor, list(vocab)
        self.audio_column, self.text_column, self.lowercase = audio_column, text_column, lowercase
        self.unknown_characters, self.max_seconds = unknown_characters, max_seconds
        self._loaded = False
        self.features: list[np.ndarray] = []
        self.texts: list[str] = []
        self.labels: list[list[int]] = []
        self.skipped_too_long = 0
        self.seconds = 0.0

    def _decode(self, row: Mapping[str, Any], where: str) -> tuple[np.ndarray | None, str]:
        """``(samples at the model's rate, where the row is)``; samples ``None``: longer than ``max_seconds``."""
        rate = self.feature_extractor.sampling_rate
        audio = row[self.audio_column] or {}
        where = audio.get("path") or where
        try:
            samples = load_audio(audio["bytes"] if audio.get("bytes") else audio.get("path") or "", rate)
        except InputError as err:
            raise DataError(f"{self.name} split, {where}: {err}") from None
        if self.max_seconds is not None and len(samples) > self.max_seconds * rate:
            return None, where
        return samples, where

    def process(self, row: Mapping[str, Any], where: Any = None) -> dict[str, torch.Tensor] | None:
        """One source row (audio undecoded) -> its sample, decoded now (``data.streaming``: in the stream's
        workers); ``None`` for a clip longer than ``max_seconds`` (dropped, as the map-style split skips it)."""
        samples, where = self._decode(row, f"row {where}" if where is not None else "a streamed row")
        if samples is None:
            return None
        text = normalize_text(row[self.text_column] or "", lowercase=self.lowercase)
        try:
            (labels,) = encode_texts([text], self.vocab, policy=self.unknown_characters, split=self.name)
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
        return {"input_features": torch.from_numpy(self.feature_extractor.log_mel(samples)), "labels": torch.tensor(labels, dtype=torch.long)}

    def _load(self) -> None:
        if self._loaded:
            return
        rate = self.feature_extractor.sampling_rate
        for i, row in enumerate(self.split):
            samples, _ = self._decode(row, f"row {i}")
            if samples is None:
                self.skipped_too_long += 1
                continue
            self.seconds += len(samples) / rate
            self.features.append(self.feature_extractor.log_mel(samples))
            self.texts.append(normalize_text(row[self.text_column] or "", lowercase=self.lowercase))
        if not self.features:
            raise DataError(f"The {self.name} split has no usable clips (all longer than data.max_seconds={self.max_seconds}?).")
        if self.skipped_too_long:
            warnings.warn(f"{self.skipped_too_long} {self.name} clip(s) longer than {self.max_seconds} s were skipped.", stacklevel=2)
        self.labels = encode_texts(self.texts, self.vocab, policy=self.unknown_characters, split=self.name)
        self._loaded = True

    def __len__(self) -> int:
        self._load()
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self._load()
        return {"input_features": torch.from_numpy(self.features[i]), "labels": torch.tensor(self.labels[i], dtype=torch.long)}


def collate_speech(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad features with 0 (mask 0) and labels with ``-100``."""
    frames = max(item["input_features"].shape[0] for item in items)
    n_mels = items[0]["input_features"].shape[1]
    labels_len = max(1, max(item["labels"].shape[0] for item in items))
    features = torch.zeros(len(items), frames, n_mels)
    mask = torch.zeros(len(items), frames, dtype=torch.long)
    labels = torch.full((len(items), labels_len), -100, dtype=torch.long)
    for i, item in enumerate(items):
        t, n = item["input_features"].shape[0], item["labels"].shape[0]
        features[i, :t] = item["input_features"]
        mask[i, :t] = 1
        labels[i, :n] = item["labels"]
    return {"input_features": features, "attention_mask": mask, "labels": labels}
