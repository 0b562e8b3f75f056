"""Audio in, model inputs out: decoding, log-mel features, and the character tokenizer.

* :func:`load_audio` decodes a file (or its bytes) with torchcodec (FFmpeg's libraries,
  no ``ffmpeg`` binary), down-mixes to mono and resamples.
* :func:`to_mono_float` turns what users hold (int16 / float64 arrays, stereo
  ``(channels, samples)`` or ``(samples, channels)``) into mono float32 in ``[-1, 1]``.
* :func:`resample_audio` resamples long audio block by block, so the memory it needs
  beyond its output is a few blocks, whatever the clip's length.
* :class:`ASRFeatureExtractor` (a transformers ``SequenceFeatureExtractor``) computes
  log-mel features with torchaudio, normalised per utterance and mel band. It runs
  outside the network (and outside the ONNX graph), as transformers' own ASR
  pipeline expects of a feature extractor.
* :func:`build_tokenizer` makes the ``Wav2Vec2CTCTokenizer`` of a config's vocabulary.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from transformers import BatchFeature, SequenceFeatureExtractor, Wav2Vec2CTCTokenizer

from polyhead.errors import InputError
from polyhead.processing import SavesSettingsOnly

from .configuration import SPECIAL_TOKENS

__all__ = [
    "ASRFeatureExtractor", "MAX_AMPLITUDE", "build_tokenizer", "build_vocab", "load_audio", "normalize_text", "resample_audio", "to_mono_float",
]

_LOG_FLOOR = 1e-6
_INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}
#: largest float sample accepted: float audio is nominally in [-1, 1]; integer PCM stored as floats (up to int32's
#: full scale) is accepted too (log-mel features normalised per utterance do not depend on the scale). Beyond it the
#: power spectrum overflows float32 and the clip would silently transcribe to "".
MAX_AMPLITUDE = 2.0**31
#: torchaudio's sinc resampling (lowpass_filter_width, rolloff): each output sample reads `width` input samples each side
_SINC_WIDTH, _SINC_ROLLOFF = 6, 0.99
#: torchaudio's kernel holds new x (orig + 2 width) floats (rates divided by their gcd): above this, scipy's polyphase filter
_MAX_SINC_KERNEL = 2**22


def load_audio(source: str | os.PathLike | bytes, sampling_rate: int) -> np.ndarray:
    """Decode an audio file (path or bytes) to mono float32 at ``sampling_rate``.

    Raises:
        InputError: the file does not exist, or is not audio FFmpeg can decode.
    """
    from torchcodec.decoders import AudioDecoder

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"Audio file {str(path)!r} does not exist.")
        what, source = f"file {str(path)!r}", str(path)
    else:
        what = f"{len(source)} bytes of audio"
    try:
        samples = AudioDecoder(source, sample_rate=sampling_rate).get_all_samples()
    except Exception as err:  # torchcodec raises RuntimeError/ValueError from FFmpeg
        raise InputError(f"Could not decode {what} as audio (corrupted, or not an audio format FFmpeg reads): {str(err)[:300]}") from None
    data = samples.data.numpy()
    if data.size == 0:
        raise InputError(f"The audio {what} holds no samples.")
    return data.mean(axis=0).astype(np.float32)


def to_mono_float(audio: Any) -> np.ndarray:
    """One clip as mono float32 in ``[-1, 1]``.

    Accepts 1-D arrays, and 2-D ``(channels, samples)`` or ``(samples, channels)``
    arrays with up to 8 channels (averaged); integer PCM (int8/16/32) is scaled to
    ``[-1, 1]``, floats are cast to float32 (a float32 clip is returned as is, not copied).

    Raises:
        InputError: another dtype or shape, no samples, NaN / infinite samples, or float
            samples beyond :data:`MAX_AMPLITUDE` (``2**31``).
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if isinstance(audio, (list, tuple)):
        try:
            audio = np.asarray(audio, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("Audio given as a list must hold numbers (samples), not a ragged or non-numeric list.") from None
    if not isinstance(audio, np.ndarray):
        raise InputError(f"Expected audio as a numpy array, torch tensor, file path or bytes, got {type(audio).__name__}.")
    if audio.dtype in _INT_SCALES:
        scale = _INT_SCALES[audio.dtype]
        audio = audio.astype(np.float32)
        audio /= scale  # in place: one copy of the clip, not two
    elif audio.dtype.kind != "f":
        raise InputError(f"Audio samples must be float or int8/int16/int32 PCM, got dtype {audio.dtype}.")
    if audio.ndim == 2:
        channel_axis = 0 if audio.shape[0] <= audio.shape[1] else 1
        if audio.shape[channel_axis] > 8:
            raise InputError(
                f"A 2-D clip must be (channels, samples) or (samples, channels) with at most 8 channels, got shape {audio.shape}."
            )
        audio = audio.mean(axis=channel_axis, dtype=np.float64 if audio.dtype == np.float64 else np.float32)
    if audio.ndim != 1:
        raise InputError(f"A clip must be 1-D (samples,) or 2-D (channels, samples), got shape {audio.shape}.")
    if audio.size == 0:
        raise InputError("Got an empty audio clip (0 samples).")
    low, high = float(audio.min()), float(audio.max())  # NaN propagates; no temporary the size of the clip
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError("The audio contains NaN or infinite samples.")
    peak = max(-low, high)
    if peak > MAX_AMPLITUDE:
        raise InputError(
            f"The audio samples reach {peak:.3g}; float audio is expected in [-1, 1] (integer PCM stored as floats, "
            "up to 2**31, is accepted too). Divide by the recording's full-scale value first."
        )
    return audio.astype(np.float32, copy=False)


def peak_amplitude(audio: np.ndarray) -> float:
    """``max(|audio|)`` without a temporary array the size of the clip."""
    return max(-float(audio.min()), float(audio.max()))


def resample_audio(audio: np.ndarray, orig_freq: int, new_freq: int, *, block_samples: int = 2**20) -> np.ndarray:
    """Resample mono float32 audio from ``orig_freq`` to ``new_freq`` Hz, block by block.

    Uses torchaudio's windowed-sinc filter (what transformers' ASR pipeline uses) or, for
    rate pairs whose exact sinc kernel would be huge (coprime rates such as 16001 -> 16000),
    scipy's polyphase filter. Each block of ``block_samples`` input samples is resampled with
    the filter's reach of neighbours on each side, so the result matches resampling the whole
    clip at once (to float rounding), while the memory needed beyond the output is a few
    blocks, whatever the clip's length. Returns ``audio`` itself when the rates are equal.
    """
    if orig_freq == new_freq:
        return audio
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    width = math.ceil(_SINC_WIDTH * orig / (min(orig, new) * _SINC_ROLLOFF))
    if new * (orig + 2 * width) <= _MAX_SINC_KERNEL:
        reach = width + orig

        def run(piece: np.ndarray) -> np.ndarray:
            return torchaudio.functional.resample(torch.from_numpy(piece), orig, new).numpy()
    else:
        from scipy.signal import firwin, resample_poly

        half = 10 * max(orig, new)  # scipy's own default filter, designed once for all blocks
        taps = firwin(2 * half + 1, 1.0 / max(orig, new), window=("kaiser", 5.0))
        reach = -(-half // new) + orig + 1

        def run(piece: np.ndarray) -> np.ndarray:
            return resample_poly(piece, new, orig, window=taps)

    context = -(-reach // orig) * orig  # block starts stay multiples of orig: output phases line up
    step = max(orig, block_samples // orig * orig)
    length = len(audio)
    total = -(-length * new // orig)  # ceil(length * new / orig), as both resamplers give
    out = np.empty(total, dtype=np.float32)
    for start in range(0, length, step):
        low, high = max(0, start - context), min(length, start + step + context)
        piece = run(np.array(audio[low:high], dtype=np.float32))  # a block-sized copy torch may own
        first, stop = start // orig * new, min(total, (start + step) // orig * new)
        skip = (start - low) // orig * new
        out[first:stop] = piece[skip : skip + stop - first]
    return out


def normalize_text(text: str, *, lowercase: bool = True) -> str:
    """Collapse whitespace (and lower-case): the form transcripts are tokenized and scored in."""
    text = " ".join(str(text).split())
    return text.lower() if lowercase else text


def build_vocab(texts: Sequence[str]) -> list[str]:
    """The special tokens, then every character of ``texts`` (sorted; spaces become ``|``)."""
    chars = sorted({c for text in texts for c in text if not c.isspace()} - set(SPECIAL_TOKENS))
    return list(SPECIAL_TOKENS) + chars


def build_tokenizer(vocab: Sequence[str]) -> Wav2Vec2CTCTokenizer:
    """A ``Wav2Vec2CTCTokenizer`` over ``vocab`` (blank = ``<pad>``, word delimiter ``|``)."""
    if len(vocab) <= len(SPECIAL_TOKENS):
        raise InputError("The vocabulary is empty; it is built from the training transcripts.")
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
        return Wav2Vec2CTCTokenizer(
            str(vocab_file), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|",
            bos_token=None, eos_token=None, do_lower_case=False,
        )


class ASRFeatureExtractor(SavesSettingsOnly, SequenceFeatureExtractor):
    """Raw audio -> ``input_features: (B, T, n_mels)`` log-mels and ``attention_mask: (B, T)``.

    ``T = samples // hop_length + 1`` (centred STFT). Features are ``log(mel + 1e-6)``
    normalised to zero mean and unit variance per utterance and mel band over the
    clip's own frames; padded frames are 0. The mask is int64 (1 = real frame).

    Args:
        sampling_rate: the rate audio must arrive at (the pipelines resample).
        n_mels / n_fft / win_length / hop_length: the torchaudio ``MelSpectrogram``.
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 64,
        sampling_rate: int = 16_000,
        padding_value: float = 0.0,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
        return_attention_mask: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value,
                         return_attention_mask=return_attention_mask, **kwargs)
        self.n_fft = int(n_fft)
        self.win_length = int(win_length)
        self.hop_length = int(hop_length)
        self._mel: torchaudio.transforms.MelSpectrogram | None = None

    @classmethod
    def from_config(cls, config: Any) -> "ASRFeatureExtractor":
        """Build from an :class:`ASRConfig`, so the two always agree."""
        return cls(feature_size=config.n_mels, sampling_rate=config.sampling_rate, n_fft=config.n_fft,
                   win_length=config.win_length, hop_length=config.hop_length)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """One mono float32 clip -> normalised log-mels ``(T, n_mels)``."""
        if self._mel is None:
            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.sampling_rate, n_fft=self.n_fft, win_length=self.win_length,
                hop_length=self.hop_length, n_mels=self.feature_size, center=True,
            )
        frames = self.num_frames(len(audio))
        shortest = self.n_fft // 2 + 1  # the centred STFT reflects n_fft // 2 samples at each end
        if len(audio) < shortest:  # very short clips: zero-pad, keep samples // hop + 1 frames
            audio = np.pad(audio, (0, shortest - len(audio)))
        audio = np.ascontiguousarray(audio)
        if not audio.flags.writeable:  # a read-only caller's array (not copied by to_mono_float): torch wants its own
            audio = audio.copy()
        with torch.no_grad():
            mel = self._mel(torch.from_numpy(audio))[:, :frames]  # (n_mels, T)
        features = torch.log(mel + _LOG_FLOOR).T
        features = (features - features.mean(dim=0)) / (features.std(dim=0, unbiased=False) + 1e-5)
        return features.numpy().astype(np.float32)

    def __call__(
        self,
        raw_speech: Any,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = True,
        padding: bool | str = True,
        **kwargs: Any,
    ) -> BatchFeature:
        """``raw_speech``: one clip (1-D array) or a list of clips, already at :attr:`sampling_rate`.

        A 2-D array is a batch ``(B, samples)``; use the pipeline (or :func:`to_mono_float`)
        for multi-channel audio. Integer PCM is scaled to ``[-1, 1]``.
        """
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise InputError(
                f"This feature extractor takes {self.sampling_rate} Hz audio, got {sampling_rate} Hz; resample first "
                "(the pipelines do: pass {'array': ..., 'sampling_rate': ...})."
            )
        if isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim == 2:
            clips = list(raw_speech)
        elif isinstance(raw_speech, (list, tuple)) and raw_speech and not np.isscalar(raw_speech[0]):
            clips = list(raw_speech)
        else:
            clips = [raw_speech]
        if not clips:
            raise InputError("Got an empty batch of audio clips.")
        features = [self.log_mel(to_mono_float(clip)) for clip in clips]
        longest = max(f.shape[0] for f in features)
        batch = np.full((len(features), longest, self.feature_size), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(features), longest), dtype=np.int64)
        for i, f in enumerate(features):
            batch[i, : f.shape[0]] = f
            mask[i, : f.shape[0]] = 1
        data = {"input_features": batch}
        if return_attention_mask is not False:
            data["attention_mask"] = mask
        return BatchFeature(data, tensor_type=return_tensors)
