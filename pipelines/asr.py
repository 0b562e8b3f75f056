"""``automatic-speech-recognition`` with polyhead's input handling on transformers' own pipeline.

The task name is transformers' built-in one, so :class:`PolyheadASRPipeline` is not
registered over it: ``transformers.pipeline("automatic-speech-recognition",
model=<polyhead model dir>)`` runs transformers' ``AutomaticSpeechRecognitionPipeline``
unchanged (chunking, word timestamps), and ``polyhead.pipeline`` passes this subclass
explicitly. The subclass only widens what it accepts, with clear errors:

* file paths and bytes are decoded with torchcodec (FFmpeg's libraries; no ``ffmpeg``
  binary needed, unlike transformers' path handling);
* numpy arrays / tensors at any integer ``sampling_rate`` from 4 kHz to 384 kHz (resampled
  block by block, so memory beyond the 16 kHz copy stays bounded), stereo as
  ``(channels, samples)`` or ``(samples, channels)``, int16 / int32 PCM, float64 (float
  samples must stay within ``2**31``: beyond it the spectrum overflows);
* clips longer than ``max_single_pass_s`` (30 s) are chunked automatically
  (``chunk_length_s=20``) so memory stays bounded;
* arguments are checked before anything runs: ``chunk_length_s`` (a positive number of
  seconds), ``stride_length_s`` (with ``chunk_length_s``), ``return_timestamps``
  (``"char"`` / ``"word"``, or ``None``), ``batch_size``, ``num_workers``; anything else
  is an :class:`~polyhead.errors.InputError`, as in polyhead's other pipelines;
* an input whose peak stays below -80 dBFS (digital silence) transcribes to ``""`` without
  running the model: its per-utterance normalised features would be meaningless. (Noise or
  other non-speech sound is transcribed as whatever characters the model hears in it.)
* ``decoding="beam"`` (at construction) decodes with a CTC beam search (torchaudio's
  flashlight-text decoder, lexicon-free, no language model) instead of greedy best path;
  word timestamps then come from the beam (``return_timestamps="word"`` only).

Example:
    >>> import polyhead
    >>> asr = polyhead.pipeline("automatic-speech-recognition")     # the embedded default model
    >>> asr("clip.wav")["text"]
    >>> asr(samples, sampling_rate=8000)
    >>> asr(long_clip, chunk_length_s=10, return_timestamps="word")["chunks"]
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from transformers import AutomaticSpeechRecognitionPipeline

from polyhead.errors import ConfigError, InputError
from polyhead.tasks.asr.processing import load_audio, peak_amplitude, resample_audio, to_mono_float

__all__ = ["PolyheadASRPipeline"]

#: longer inputs are chunked when the caller gives no chunk_length_s
MAX_SINGLE_PASS_S = 30.0
AUTO_CHUNK_S = 20.0
#: inputs whose peak stays below this (-80 dBFS: digital silence) transcribe to "" without running the model
SILENCE_PEAK = 1e-4
#: sampling rates accepted for arrays (Hz): below 4 kHz speech is not intelligible, and every sample would turn into
#: thousands at 16 kHz (20000 samples "at 1 Hz" are 5.5 hours of audio)
MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 4_000, 384_000
#: arguments a call (or the construction) takes, besides sampling_rate, batch_size and num_workers
_ARGUMENTS = ("chunk_length_s", "stride_length_s", "return_timestamps")


def _is_number(value: Any) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


class PolyheadASRPipeline(AutomaticSpeechRecognitionPipeline):
    """Transcribe speech with a polyhead CTC model (or any CTC model with a feature extractor).

    Inputs: a path, bytes of an audio file, a numpy array / tensor (with ``sampling_rate=``,
    default the model's rate), a ``{"array" | "raw": ..., "sampling_rate": ...}`` dict (also
    ``"path"``, ignored, and ``"stride"``; other keys are refused), or a list of those. Output: ``{"text": str}``, plus ``"chunks"`` with ``return_timestamps="char"``
    or ``"word"`` (``{"text", "timestamp": (start_s, end_s)}``).
    """

    max_single_pass_s = MAX_SINGLE_PASS_S

    def __init__(self, model: Any, *args: Any, decoding: str = "greedy", beam_size: int = 16, **kwargs: Any) -> None:
        if decoding not in ("greedy", "beam"):
            raise ConfigError(f"decoding must be 'greedy' or 'beam', got {decoding!r}.")
        self.decoding = decoding  # read by _sanitize_parameters, which transformers calls from __init__
        super().__init__(model, *args, **kwargs)
        if decoding == "beam":
            from polyhead.tasks.asr.decoding import CTCBeamSearch

            # transformers' CTC beam-decoder path (logits kept per chunk, stitched, then decode_beams)
            self.decoder = CTCBeamSearch(model.config.vocab, beam_size=beam_size)
            self.type = "ctc_with_lm"

    @staticmethod
    def _check_rate(sampling_rate: Any) -> int:
        if (
            isinstance(sampling_rate, (bool, np.bool_))
            or not isinstance(sampling_rate, (int, np.integer))
            or not MIN_SAMPLING_RATE <= sampling_rate <= MAX_SAMPLING_RATE
        ):
            raise InputError(
                f"sampling_rate must be an integer number of Hz in [{MIN_SAMPLING_RATE}, {MAX_SAMPLING_RATE}], got {sampling_rate!r}."
            )
        return int(sampling_rate)

    def _sanitize_parameters(
        self, chunk_length_s: Any = None, stride_length_s: Any = None, return_timestamps: Any = None, **unknown: Any
    ):
        """Check the arguments (at construction and per call), then hand them to transformers."""
        if unknown:
            raise InputError(
                f"Unknown pipeline argument(s) {sorted(unknown)}; this pipeline takes sampling_rate, "
                f"{', '.join(_ARGUMENTS)}, batch_size, num_workers."
            )
        beam = getattr(self, "decoding", "greedy") == "beam"
        allowed = ("word",) if beam else ("char", "word")
        if return_timestamps is False:
            return_timestamps = None  # no timestamps, as None (transformers refuses False for CTC models)
        if return_timestamps is not None and (not isinstance(return_timestamps, str) or return_timestamps not in allowed):
            if beam and return_timestamps == "char":
                raise InputError("The beam search gives word timestamps only: return_timestamps must be 'word' (or None), got 'char'.")
            raise InputError(f"return_timestamps must be 'char' or 'word' (or None), got {return_timestamps!r}.")
        if chunk_length_s is not None and not (_is_number(chunk_length_s) and chunk_length_s > 0):
            raise InputError(f"chunk_length_s must be a positive number of seconds, got {chunk_length_s!r}.")
        if stride_length_s is not None:
            strides = list(stride_length_s) if isinstance(stride_length_s, (list, tuple)) else [stride_length_s, stride_length_s]
            if len(strides) != 2 or not all(_is_number(v) and v >= 0 for v in strides):
                raise InputError(
                    f"stride_length_s must be a non-negative number of seconds, or a pair (left, right) of them; got {stride_length_s!r}."
                )
            if chunk_length_s is None and getattr(self, "_preprocess_params", {}).get("chunk_length_s") is None:
                raise InputError("stride_length_s needs chunk_length_s: strides are the overlaps between chunks.")
        if chunk_length_s is not None:
            self._check_chunking(chunk_length_s, stride_length_s)
        return super()._sanitize_parameters(
            chunk_length_s=chunk_length_s, stride_length_s=stride_length_s, return_timestamps=return_timestamps
        )

    def _check_chunking(self, chunk_length_s: float, stride_length_s: Any) -> None:
        """The chunk must outlast its two strides by one model frame, as transformers' chunking needs."""
        rate, align = int(self.feature_extractor.sampling_rate), int(self._align_to)
        strides = stride_length_s if stride_length_s is not None else chunk_length_s / 6
        left, right = strides if isinstance(strides, (list, tuple)) else (strides, strides)

        def samples(seconds: float) -> int:
            return int(round(seconds * rate / align) * align)

        if samples(chunk_length_s) - samples(left) - samples(right) < align:
            raise InputError(
                f"chunk_length_s={chunk_length_s!r} is too short: each chunk must outlast its left and right strides "
                f"(stride_length_s={stride_length_s!r}; default chunk_length_s / 6) by at least one model frame "
                f"({1000 * align / rate:g} ms)."
            )

    def _normalise(self, inputs: Any, sampling_rate: int | None) -> dict[str, Any]:
        """One input -> ``{"array": mono float32 at the model's rate, "sampling_rate": the model's rate, ...}``."""
        item = self._decode(inputs, sampling_rate)
        target = int(self.feature_extractor.sampling_rate)
        rate = item["sampling_rate"]
        if rate != target:  # here, block by block, not in transformers (which resamples the whole clip at once)
            item["array"] = resample_audio(item["array"], rate, target)
            item["sampling_rate"] = target
            if item.get("stride") is not None:  # (left, right) in input samples, as transformers reads them
                item["stride"] = tuple(int(round(v * target / rate)) for v in item["stride"])
        return item

    def _decode(self, inputs: Any, sampling_rate: int | None) -> dict[str, Any]:
        target = int(self.feature_extractor.sampling_rate)
        if sampling_rate is not None:
            self._check_rate(sampling_rate)
        if isinstance(inputs, (str, os.PathLike)):
            if str(inputs).startswith(("http://", "https://")):
                raise InputError("URLs are not fetched; download the file and pass its path.")
            return {"array": load_audio(inputs, target), "sampling_rate": target}
        if isinstance(inputs, (bytes, bytearray)):
            if not inputs:
                raise InputError("Got empty bytes instead of an audio file.")
            return {"array": load_audio(bytes(inputs), target), "sampling_rate": target}
        if type(inputs).__name__ == "AudioDecoder":  # torchcodec's decoder, as datasets' Audio columns give it
            samples = inputs.get_all_samples()
            return {"array": to_mono_float(samples.data), "sampling_rate": self._check_rate(int(samples.sample_rate))}
        if isinstance(inputs, dict):
            array = inputs.get("array", inputs.get("raw"))
            rate = inputs.get("sampling_rate")
            if array is None or rate is None:
                raise InputError("An input dict needs an 'array' (or 'raw') and a 'sampling_rate', as datasets' Audio gives.")
            unknown = sorted(map(str, set(inputs) - {"array", "raw", "sampling_rate", "path", "stride"}))
            if unknown:  # transformers would pass them into the output, where a 'text' key breaks the transcript
                raise InputError(
                    f"An input dict has unknown key(s) {unknown}; it holds 'array' (or 'raw') and 'sampling_rate', "
                    "optionally 'path' (ignored) and 'stride' (left, right samples)."
                )
            audio, out = to_mono_float(array), {}
            if inputs.get("stride") is not None:
                stride = inputs["stride"]
                if (
                    not isinstance(stride, (list, tuple)) or len(stride) != 2
                    or not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 0 for v in stride)
                    or stride[0] + stride[1] >= len(audio)
                ):
                    raise InputError(
                        f"'stride' must be (left, right) non-negative sample counts that leave some of the {len(audio)} samples, got {stride!r}."
                    )
                out["stride"] = (int(stride[0]), int(stride[1]))
            return {**out, "array": audio, "sampling_rate": self._check_rate(rate)}
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            return {"array": to_mono_float(inputs), "sampling_rate": target if sampling_rate is None else int(sampling_rate)}
        raise InputError(
            f"Expected audio as a file path, bytes, a numpy array or tensor (with sampling_rate=...), or a dict "
            f"{{'array', 'sampling_rate'}}; got {type(inputs).__name__}."
        )

    def postprocess(self, model_outputs: Any, **kwargs: Any) -> dict[str, Any]:
        """transformers' post-processing, then whitespace collapsed (CTC can emit two word delimiters in a row)
        and timestamps as Python floats (transformers gives numpy floats, which ``json`` refuses)."""
        output = super().postprocess(model_outputs, **kwargs)
        output["text"] = " ".join(output["text"].split())
        for chunk in output.get("chunks", []):
            chunk["timestamp"] = tuple(None if t is None else float(t) for t in chunk["timestamp"])
        return output

    def __call__(self, inputs: Any, sampling_rate: int | None = None, **kwargs: Any) -> Any:
        self._sanitize_parameters(**{k: v for k, v in kwargs.items() if k not in ("batch_size", "num_workers")})  # before any work
        batch = isinstance(inputs, list) and not (inputs and isinstance(inputs[0], (int, float, np.number)))
        items = [self._normalise(x, sampling_rate) for x in (inputs if batch else [inputs])]
        if not items:
            raise InputError("Got an empty list of audio inputs.")
        longest = max(len(item["array"]) / item["sampling_rate"] for item in items)
        chunked = kwargs.get("chunk_length_s", self._preprocess_params.get("chunk_length_s"))
        if chunked is None and longest > self.max_single_pass_s:
            kwargs["chunk_length_s"] = AUTO_CHUNK_S  # bounded memory: attention is quadratic in length
        silent = [peak_amplitude(item["array"]) < SILENCE_PEAK for item in items]
        heard = [item for item, quiet in zip(items, silent) if not quiet]
        transcribed = iter(super().__call__(heard, **kwargs) if heard else [])
        timestamps = kwargs.get("return_timestamps", self._postprocess_params.get("return_timestamps"))
        empty = {"text": "", **({"chunks": []} if timestamps else {})}
        outputs = [dict(empty) if quiet else next(transcribed) for quiet in silent]
        return outputs if batch else outputs[0]
