"""Speech recognition: log-mels -> conv subsampling -> Conformer / Transformer -> CTC.

The model is a transformers ``AutoModelForCTC``; its processor (log-mel feature
extractor + ``Wav2Vec2CTCTokenizer``) is saved with it, so transformers' own
``automatic-speech-recognition`` pipeline runs a polyhead model, chunking and word
timestamps included (``config.inputs_to_logits_ratio``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoFeatureExtractor, AutoModel, AutoModelForCTC, Wav2Vec2Processor

from polyhead.configuration import register_auto_config
from polyhead.export import ExportSpec
from polyhead.registry import register_task
from polyhead.streaming import StreamRows

from .._base import Task, TaskData
from .configuration import ASRConfig
from .data import ASRClips, collate_speech, embedded_speech_dir, load_speech_splits, split_speech
from .metrics import ASRMetrics, ids_to_text
from .modeling import ASROutput, CTCAdapter, PolyheadForCTC
from .processing import ASRFeatureExtractor, build_tokenizer, build_vocab, load_audio, normalize_text, to_mono_float

__all__ = [
    "ASRConfig",
    "ASRFeatureExtractor",
    "ASRMetrics",
    "ASROutput",
    "ASRTask",
    "CTCAdapter",
    "PolyheadForCTC",
    "build_processor",
    "build_tokenizer",
    "embedded_speech_dir",
    "ids_to_text",
    "load_audio",
    "to_mono_float",
]

register_auto_config(ASRConfig)
AutoModel.register(ASRConfig, PolyheadForCTC)
AutoModelForCTC.register(ASRConfig, PolyheadForCTC)
AutoFeatureExtractor.register(ASRConfig, ASRFeatureExtractor)


def build_processor(config: ASRConfig) -> Wav2Vec2Processor:
    """Feature extractor + character tokenizer of ``config`` (saved next to the model)."""
    return Wav2Vec2Processor(feature_extractor=ASRFeatureExtractor.from_config(config), tokenizer=build_tokenizer(config.vocab))


@register_task("asr")
class ASRTask(Task):
    """Transcribe speech to characters with a CTC model."""

    name = "asr"
    pipeline_task = "automatic-speech-recognition"
    domain = "audio"
    models = (PolyheadForCTC,)
    processor_class = Wav2Vec2Processor
    default_config = "asr/conformer_ctc_small.py"
    best_metric = "wer"
    greater_is_better = False
    data_options = ("source", "audio_column", "text_column", "val_fraction", "test_fraction", "unknown_characters", "max_seconds", "seed")

    def __init__(self) -> None:
        self._splits: tuple[Any, dict] | None = None

    def _load(self, data_section: Mapping[str, Any]) -> dict:
        key = (repr(data_section.get("source", "speech_commands")), data_section.get("audio_column", "audio"), data_section.get("text_column", "text"))
        if self._splits is None or self._splits[0] != key:
            splits = load_speech_splits(
                data_section.get("source", "speech_commands"),
                audio_column=data_section.get("audio_column", "audio"),
                text_column=data_section.get("text_column", "text"),
            )
            self._splits = (key, dict(zip(("train", "validation", "test"), split_speech(
                splits,
                val_fraction=data_section.get("val_fraction", 0.1),
                test_fraction=data_section.get("test_fraction", 0.1),
                seed=int(data_section.get("seed", 0)),
            ))))
        return self._splits[1]

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> ASRConfig:
        """The vocabulary, unless the model section fixes one, is every character of the training transcripts."""
        self.check_data_section(data_section)
        section = dict(model_section)
        if not section.get("vocab"):
            train = self._load(data_section)["train"]
            lowercase = section.get("lowercase", True)
            texts = [normalize_text(t or "", lowercase=lowercase) for t in train[data_section.get("text_column", "text")]]
            section["vocab"] = build_vocab(texts)
        return ASRConfig.from_model_section(section)

    def build_processor(self, config: ASRConfig) -> Wav2Vec2Processor:
        return build_processor(config)

    def build_data(self, data_section: Mapping[str, Any], config: ASRConfig) -> TaskData:
        self.check_data_section(data_section)
        splits = self._load(data_section)
        extractor = ASRFeatureExtractor.from_config(config)
        policy = data_section.get("unknown_characters", "error")
        max_seconds = data_section.get("max_seconds", 30.0)
        clips = {
            name: ASRClips(
                split, name=name, feature_extractor=extractor, vocab=config.vocab,
                audio_column=data_section.get("audio_column", "audio"), text_column=data_section.get("text_column", "text"),
                lowercase=config.lowercase,
                # evaluation text is scored as it is: characters the model cannot write count as errors
                unknown_characters=policy if name == "train" else "unk",
                max_seconds=max_seconds if name == "train" else None,
            )
            for name, split in splits.items()
        }
        source = data_section.get("source", "speech_commands")
        description = {
            "source": str(source),
            "vocab_size": config.vocab_size,
            "splits": {name: {"clips": len(split)} for name, split in splits.items()},
        }
        # data.streaming: the training rows with their audio undecoded, each clip decoded (log-mels, labels) as it streams
        stream = StreamRows(clips["train"].split, clips["train"].process)
        return TaskData(**clips, collate_fn=collate_speech, description=description, train_stream=stream)

    def build_metrics(self, config: ASRConfig) -> ASRMetrics:
        return ASRMetrics(vocab=config.vocab)

    def export_spec(self, config: ASRConfig) -> ExportSpec:
        """Dynamic batch and time; the log-mel feature extractor stays outside the graph."""

        def make_inputs(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
            batch, frames = sizes["batch"], sizes.get("time", 48)
            mask = torch.ones(batch, frames, dtype=torch.long)
            if batch > 1:
                mask[-1, frames - frames // 3 :] = 0  # the last clip is shorter
            return {"input_features": torch.randn(batch, frames, config.n_mels) * mask[..., None], "attention_mask": mask}

        return ExportSpec(
            input_names=["input_features", "attention_mask"],
            output_names=["logits", "output_lengths"],
            output_class=ASROutput,
            make_inputs=make_inputs,
            dynamic_axes={"input_features": {0: "batch", 1: "time"}, "attention_mask": {0: "batch", 1: "time"}},
            example_sizes={"batch": 2, "time": 64},
            parity_sizes=[{"batch": 1, "time": 64}, {"batch": 3, "time": 37}, {"batch": 8, "time": 101}, {"batch": 2, "time": 250}],
            min_sizes={"batch": 1, "time": 8},
        )

    @classmethod
    def example_configs(cls) -> list[ASRConfig]:
        return [ASRConfig(
            vocab=["<pad>", "<unk>", "|", "a", "b", "c"], n_mels=16,
            backbone={"type": "conformer", "dim": 16, "depth": 1, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3},
            head={"type": "ctc"},
        )]
