"""``automatic-speech-recognition`` with polyhead's input handling on transformers' own pipeline.

The task name is transformers' built-in one, so :class:`PolyheadASRPipeline` is not
registered over it: ``transformers.pipeline("automatic-speech-recognition",
model=<polyhead model dir>)`` runs transformers' ``AutomaticSpeechRecognitionPipeline``
unchanged (chunking, word timestamps), and ``polyhead.pipeline`` passes this subclass
explicitly. The subclass only widens what it accepts, with clear errors:

* file paths and bytes are decoded with torchcodec (FFmpeg's libraries; no ``ffmpeg``
  binary needed, unlike transformers' path handling);
* numpy arrays / tensors at any ``sampling_rate`` (resampled), stereo as
  ``(channels, samples)`` or ``(samples, channels)``, int16 / int32 PCM, float64;
* clips longer than ``max_single_pass_s`` (30 s) are chunked automatically
  (``chunk_length_s=20``) so memory stays bounded;
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

import os
from typing import Any

import numpy as np
import torch
from transformers import AutomaticSpeechRecognitionPipeline

from polyhead.errors import ConfigError, InputError
from polyhead.tasks.asr.processing import load_audio, to_mono_float

__all__ = ["PolyheadASRPipeline"]

#: longer inputs are chunked when the caller gives no chunk_length_s
MAX_SINGLE_PASS_S = 30.0
AUTO_CHUNK_S = 20.0
#: inputs whose peak stays below this (-80 dBFS: digital silence) transcribe to "" without running the model
SILENCE_PEAK = 1e-4


class PolyheadASRPipeline(AutomaticSpeechRecognitionPipeline):
    """Transcribe speech with a polyhead CTC model (or any CTC model with a feature extractor).

    Inputs: a path, bytes of an audio file, a numpy array / tensor (with ``sampling_rate=``,
    default the model's rate), a ``{"array" | "raw": ..., "sampling_rate": ...}`` dict, or a
    list of those. Output: ``{"text": str}``, plus ``"chunks"`` with ``return_timestamps="char"``
    or ``"word"`` (``{"text", "timestamp": (start_s, end_s)}``).
    """

    max_single_pass_s = MAX_SINGLE_PASS_S

    def __init__(self, model: Any, *args: Any, decoding: str = "greedy", beam_size: int = 16, **kwargs: Any) -> None:
        if decoding not in ("greedy", "beam"):
            raise ConfigError(f"decoding must be 'greedy' or 'beam', got {decoding!r}.")
        super().__init__(model, *args, **kwargs)
        self.decoding = decoding
        if decoding == "beam":
            from polyhead.tasks.asr.decoding import CTCBeamSearch

            # transformers' CTC beam-decoder path (logits kept per chunk, stitched, then decode_beams)
            self.decoder = CTCBeamSearch(model.config.vocab, beam_size=beam_size)
            self.type = "ctc_with_lm"

    @staticmethod
    def _check_rate(sampling_rate: Any) -> int:
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
            raise InputError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}.")
        return int(sampling_rate)

    def _normalise(self, inputs: Any, sampling_rate: int | None) -> dict[str, Any]:
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
            return {"array": to_mono_float(samples.data), "sampling_rate": int(samples.sample_rate)}
        if isinstance(inputs, dict):
            array = inputs.get("array", inputs.get("raw"))
            rate = inputs.get("sampling_rate")
            if array is None or rate is None:
                raise InputError("An input dict needs an 'array' (or 'raw') and a 'sampling_rate', as datasets' Audio gives.")
            out = {k: v for k, v in inputs.items() if k not in ("array", "raw", "path")}
            return {**out, "array": to_mono_float(array), "sampling_rate": self._check_rate(rate)}
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            return {"array": to_mono_float(inputs), "sampling_rate": int(sampling_rate or target)}
        raise InputError(
            f"Expected audio as a file path, bytes, a numpy array or tensor (with sampling_rate=...), or a dict "
            f"{{'array', 'sampling_rate'}}; got {type(inputs).__name__}."
        )

    def postprocess(self, model_outputs: Any, **kwargs: Any) -> dict[str, Any]:
        """transformers' post-processing, then whitespace collapsed (CTC can emit two word delimiters in a row)."""
        output = super().postprocess(model_outputs, **kwargs)
        output["text"] = " ".join(output["text"].split())
        return output

    def __call__(self, inputs: Any, sampling_rate: int | None = None, **kwargs: Any) -> Any:
        batch = isinstance(inputs, list) and not (inputs and isinstance(inputs[0], (int, float, np.number)))
        items = [self._normalise(x, sampling_rate) for x in (inputs if batch else [inputs])]
        if not items:
            raise InputError("Got an empty list of audio inputs.")
        longest = max(len(item["array"]) / item["sampling_rate"] for item in items)
        if kwargs.get("chunk_length_s") is None and longest > self.max_single_pass_s:
            kwargs["chunk_length_s"] = AUTO_CHUNK_S  # bounded memory: attention is quadratic in length
        silent = [float(np.abs(item["array"]).max()) < SILENCE_PEAK for item in items]
        heard = [item for item, quiet in zip(items, silent) if not quiet]
        transcribed = iter(super().__call__(heard, **kwargs) if heard else [])
        empty = {"text": "", **({"chunks": []} if kwargs.get("return_timestamps") else {})}
        outputs = [dict(empty) if quiet else next(transcribed) for quiet in silent]
        return outputs if batch else outputs[0]
