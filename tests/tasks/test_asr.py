"""Speech recognition task: config, feature extractor, model, save/load, data, metrics, training."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import polyhead
from polyhead.errors import ConfigError, DataError, InputError, UnknownNameError
from polyhead.tasks.asr import (
    ASRConfig,
    ASRFeatureExtractor,
    ASRMetrics,
    ASRTask,
    PolyheadForCTC,
    build_processor,
    embedded_speech_dir,
)
from polyhead.tasks.asr.data import encode_texts, load_speech_splits
from polyhead.tasks.asr.processing import build_vocab, load_audio, to_mono_float

VOCAB = ["<pad>", "<unk>", "|", "a", "b", "c"]

#: a tiny, fast recipe (overrides of configs/asr/conformer_ctc_small.py)
TINY_ASR = {
    "model.n_mels": 16,
    "model.backbone": {"type": "conformer", "dim": 16, "depth": 1, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3},
    "train.max_steps": 4,
    "train.eval_every": 2,
    "train.batch_size": 4,
    "train.warmup_steps": 0,
    "train.log_with": None,
    "train.progress_bar": False,
}


def _tiny_config(**kwargs) -> ASRConfig:
    backbone = {"type": "conformer", "dim": 16, "depth": 1, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3}
    return ASRConfig(**{"vocab": VOCAB, "n_mels": 16, "backbone": backbone, **kwargs})


def _copy_split(source: Path, target: Path, count: int, *, rows: list[tuple[str, str]] | None = None) -> None:
    target.mkdir(parents=True)
    with open(source / "metadata.csv") as handle:
        original = list(csv.DictReader(handle))[:count]
    with open(target / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text"])
        for row in original:
            shutil.copy(source / row["file_name"], target / row["file_name"])
            writer.writerow([row["file_name"], row["text"]])
        for name, text in rows or []:
            writer.writerow([name, text])


@pytest.fixture(scope="module")
def audiofolder(tmp_path_factory) -> Path:
    """24 training and 6 validation / test clips of the embedded set, as an audiofolder."""
    root = tmp_path_factory.mktemp("speech")
    embedded = embedded_speech_dir()
    for split, count in (("train", 24), ("validation", 6), ("test", 6)):
        _copy_split(embedded / split, root / split, count)
    return root


# -- config ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab": ["a", "b"]}, "must start with the special tokens"),
        ({"vocab": VOCAB + ["a"]}, "distinct single characters"),
        ({"vocab": VOCAB + [" "]}, "must not contain a space"),
        ({"win_length": 800}, "must not exceed n_fft"),
        ({"n_mels": 0}, "n_mels must be a positive integer"),
        ({"num_time_masks": -1}, "non-negative integer"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ASRConfig(**kwargs)


def test_config_pipeline_contract():
    config = _tiny_config()
    assert config.model_type == "polyhead-asr" and config.vocab_size == 6
    assert config.inputs_to_logits_ratio == 640  # 10 ms hop x 4 subsampling, in samples
    assert isinstance(transformers.AutoConfig.for_model("polyhead-asr"), ASRConfig)


def test_model_rejects_wrong_parts():
    with pytest.raises(ConfigError, match="vocab is empty"):
        PolyheadForCTC(ASRConfig())
    with pytest.raises(ConfigError, match="CTCAdapter needs a CTCHead head, got 'forecast'"):
        PolyheadForCTC(_tiny_config(head={"type": "forecast"}))
    with pytest.raises(UnknownNameError, match="Unknown backbone 'conformr'"):
        PolyheadForCTC(_tiny_config(backbone={"type": "conformr"}))


# -- features ---------------------------------------------------------------------------
def test_feature_extractor_shapes_mask_and_normalisation():
    fe = ASRFeatureExtractor(feature_size=16)
    rng = np.random.default_rng(0)
    out = fe([rng.normal(size=16000).astype(np.float32), rng.normal(size=8000).astype(np.float32)], return_tensors="pt")
    assert out["input_features"].shape == (2, 101, 16) and out["attention_mask"].dtype == torch.int64
    assert out["attention_mask"].sum(-1).tolist() == [101, 51]
    assert out["input_features"][1, 51:].abs().max() == 0
    real = out["input_features"][0]
    torch.testing.assert_close(real.mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    # gain does not matter (per-utterance normalisation)
    clip = rng.normal(size=4000).astype(np.float32)
    np.testing.assert_allclose(fe(clip)["input_features"], fe(clip * 0.1)["input_features"], atol=1e-3)


def test_pcm_and_channel_handling():
    rng = np.random.default_rng(0)
    clip = rng.uniform(-0.5, 0.5, 3200).astype(np.float32)
    pcm = (clip * 32767).astype(np.int16)
    np.testing.assert_allclose(to_mono_float(pcm), clip, atol=1e-4)
    assert to_mono_float(clip.astype(np.float64)).dtype == np.float32
    stereo = np.stack([clip, clip])
    np.testing.assert_allclose(to_mono_float(stereo), clip)
    np.testing.assert_allclose(to_mono_float(stereo.T), clip)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(0, np.float32), "empty audio clip"),
        (np.array([0.0, np.nan], np.float32), "NaN or infinite"),
        (np.zeros((3, 16, 100), np.float32), "must be 1-D"),
        (np.zeros((16, 100), np.float32), "at most 8 channels"),
        (np.array(["a", "b"]), "must be float or int8/int16/int32"),
        ("not audio", "Expected audio as a numpy array"),
    ],
)
def test_bad_audio(audio, message):
    with pytest.raises(InputError, match=message):
        to_mono_float(audio)


def test_feature_extractor_refuses_other_rates():
    with pytest.raises(InputError, match="takes 16000 Hz audio, got 8000 Hz"):
        ASRFeatureExtractor()(np.zeros(800, np.float32), sampling_rate=8000)


def test_load_audio_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "nope.wav", 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(InputError, match="Could not decode"):
        load_audio(junk, 16000)


# -- model ----------------------------------------------------------------------------
def test_forward_shapes_lengths_and_loss_only_with_labels():
    torch.manual_seed(0)
    model = PolyheadForCTC(_tiny_config()).eval()
    features = torch.randn(2, 37, 16)
    mask = torch.ones(2, 37, dtype=torch.long)
    mask[1, 21:] = 0
    out = model(input_features=features, attention_mask=mask)
    assert out.loss is None and out.logits.shape == (2, 10, 6)
    assert out.output_lengths.tolist() == [10, 6]  # ceil(37 / 4), ceil(21 / 4)
    out = model(input_features=features, attention_mask=mask, labels=torch.tensor([[3, 4, 5], [3, -100, -100]]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    with pytest.raises(InputError, match=r"input_features must have shape \(batch, frames, 16\)"):
        model(input_features=torch.randn(2, 37))
    with pytest.raises(InputError, match="attention_mask must have shape"):
        model(input_features=features, attention_mask=mask[:, :5])
    with pytest.raises(InputError, match="floating-point"):
        model(input_features=features.long())


def test_spec_augment_only_in_training():
    torch.manual_seed(0)
    model = PolyheadForCTC(_tiny_config(stem_dropout=0.0, head={"type": "ctc", "dropout": 0.0},
                                        backbone={"type": "conformer", "dim": 16, "depth": 1, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3, "dropout": 0.0}))
    features = torch.randn(1, 60, 16)
    model.eval()
    torch.testing.assert_close(model(input_features=features).logits, model(input_features=features).logits)
    assert not torch.equal(model.adapter.spec_augment(features), features)


def test_switching_backbone_is_a_config_change():
    model = PolyheadForCTC(_tiny_config(backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "rotary"}))
    assert type(model.backbone).__name__ == "TransformerEncoder"
    assert model(input_features=torch.randn(2, 50, 16)).logits.shape == (2, 13, 6)


def test_save_load_roundtrip_with_processor(tmp_path):
    torch.manual_seed(0)
    config = _tiny_config()
    model = PolyheadForCTC(config).eval()
    model.save_pretrained(tmp_path)
    build_processor(config).save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCTC.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, PolyheadForCTC)
    features = torch.randn(1, 40, 16)
    torch.testing.assert_close(loaded(input_features=features).logits, model(input_features=features).logits)
    processor = transformers.AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(processor.feature_extractor, ASRFeatureExtractor)
    assert processor.tokenizer.decode([3, 3, 0, 3, 2, 4, 5]) == "aa bc"  # CTC collapse, | -> space
    assert processor.tokenizer("ab ca").input_ids == [3, 4, 2, 5, 3]


# -- data -----------------------------------------------------------------------------
def test_embedded_set_has_disjoint_voices_per_split():
    root = embedded_speech_dir()
    readme = (root / "README.md").read_text()
    variants = {line.split(":")[0][2:]: set(line.split("variants ")[1].split(", ")) for line in readme.splitlines() if line.startswith("- ")}
    assert set(variants) == {"train", "validation", "test"}
    assert not variants["train"] & variants["test"] and not variants["train"] & variants["validation"]
    splits = load_speech_splits("speech_commands")
    assert {k: len(v) > 0 for k, v in splits.items()} == {"train": True, "validation": True, "test": True}


def test_vocab_and_unknown_character_policies():
    assert build_vocab(["ab a", "c"]) == ["<pad>", "<unk>", "|", "a", "b", "c"]
    assert encode_texts(["ab c"], VOCAB, policy="error", split="train") == [[3, 4, 2, 5]]
    with pytest.raises(DataError, match=r"outside the model's vocabulary: \['z'\] \(first in row 1: 'zz'\)"):
        encode_texts(["ab", "zz"], VOCAB, policy="error", split="train")
    assert encode_texts(["az b"], VOCAB, policy="drop", split="train") == [[3, 2, 4]]
    assert encode_texts(["az b"], VOCAB, policy="unk", split="train") == [[3, 1, 2, 4]]


def test_training_text_outside_a_fixed_vocab_is_an_error(audiofolder, tmp_path):
    with pytest.raises(DataError, match="outside the model's vocabulary"):
        polyhead.train("asr", cfg_options={**TINY_ASR, "data.source": str(audiofolder), "train.output_dir": str(tmp_path),
                                           "model.vocab": ["<pad>", "<unk>", "|", "a", "e", "o"]})


def test_bad_sources(tmp_path, audiofolder):
    with pytest.raises(DataError, match="is not a folder"):
        load_speech_splits(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no metadata.csv"):
        load_speech_splits(str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"no column\(s\) \['sentence'\]"):
        load_speech_splits(str(audiofolder), text_column="sentence")
    with pytest.raises(ConfigError, match=r"data.sourse is not a asr data option.*Did you mean 'source'"):
        polyhead.train("asr", cfg_options={**TINY_ASR, "data.sourse": str(audiofolder)})


def test_corrupted_clip_names_the_file(tmp_path):
    root = tmp_path / "broken"
    _copy_split(embedded_speech_dir() / "train", root / "train", 6)
    (root / "train" / "00002.opus").write_bytes(b"\x00" * 300)
    task = ASRTask()
    data = {"source": str(root), "val_fraction": 0.2, "test_fraction": 0.2}
    config = task.build_config({"n_mels": 16, "backbone": TINY_ASR["model.backbone"]}, data)
    splits = task.build_data(data, config)  # audio is decoded on first use
    with pytest.raises(DataError, match=r"00002\.opus.*Could not decode"):
        [len(split) for split in (splits.train, splits.validation, splits.test)]


# -- metrics --------------------------------------------------------------------------
def test_metrics_wer_cer():
    metrics = ASRMetrics(vocab=VOCAB)
    # "ab c" predicted as frames a a <pad> b | c, and "ab" predicted as "a"
    predictions = torch.tensor([[3, 3, 0, 4, 2, 5], [3, 0, 0, 0, 0, 0]])
    labels = torch.tensor([[3, 4, 2, 5], [3, 4, -100, -100]])
    metrics.update({"predictions": predictions, "output_lengths": torch.tensor([6, 6]), "labels": labels})
    result = metrics.compute()
    assert result["wer"] == pytest.approx(1 / 3) and result["cer"] == pytest.approx(1 / 6)


# -- training -------------------------------------------------------------------------
def test_train_evaluate_and_saved_processor(audiofolder, tmp_path):
    result = polyhead.train("asr", cfg_options={**TINY_ASR, "data.source": str(audiofolder), "train.output_dir": str(tmp_path)})
    best = result.best_dir
    for name in ("config.json", "model.safetensors", "vocab.json", "tokenizer_config.json", "README.md", "metrics.json"):
        assert (best / name).is_file(), name
    metrics = result.metrics
    assert {"wer", "cer", "loss"} <= set(metrics["test"]) and metrics["data"]["splits"]["train"]["clips"] == 24
    config = transformers.AutoConfig.from_pretrained(best)
    assert config.vocab[:3] == ["<pad>", "<unk>", "|"] and "e" in config.vocab
    evaluated = polyhead.evaluate_model_dir(best, data=str(audiofolder))
    assert {"wer", "cer"} <= set(evaluated["metrics"])
    assert "WER" in (best / "README.md").read_text() or "wer" in (best / "README.md").read_text()
