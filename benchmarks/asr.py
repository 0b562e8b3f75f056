"""Speech recognition benchmark: wrapper overhead, real-time factor, and backbone WER on unseen voices.

What is measured, in one process:

* ``step_time``: one training step (zero_grad, forward with SpecAugment, CTC loss, backward,
  clip, AdamW step) of ``PolyheadForCTC`` built by ``configs/asr/conformer_ctc_small.py``
  vs a bare reference of the same size: the same two stride-2 convolutions, torchaudio's
  ``Conformer`` called through its own ``forward(x, lengths)``, a ``Linear`` to the vocabulary
  and ``F.ctc_loss``, with the same torchaudio SpecAugment masks. Both get the same weights
  (loaded from one another), the same fixed batch of real training clips, and alternate in
  blocks of steps (order rotating every round) so machine noise reaches both alike.
  Target: polyhead / bare <= 1.1.
* ``real_time_factor``: seconds of audio transcribed per second of compute by
  ``polyhead.pipeline("automatic-speech-recognition")`` (feature extraction, network, greedy
  decoding; audio already decoded at 16 kHz) on the embedded test clips, with the PyTorch
  model and with the exported ONNX file in ONNX Runtime, one clip per call, same thread count.
  Target: >= 50x real time for the default model.
* ``wer_unseen_voices``: WER / CER on the embedded test split (voice variants never heard
  in training) of the default Conformer model and of the same recipe on the shared
  Transformer backbone (``configs/asr/transformer_ctc_small.py``), trained with the same
  budget by ``polyhead train`` (trained here if ``--transformer-dir`` does not exist).

Writes ``benchmarks/results/asr.json`` and prints a summary.
Run: ``python -m benchmarks.asr`` from the repository root.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models import Conformer
from torchaudio.transforms import FrequencyMasking, TimeMasking

import polyhead
from polyhead.pipelines import default_model_dir
from polyhead.tasks.asr import ASRConfig, PolyheadForCTC, embedded_speech_dir, load_audio
from polyhead.tasks.asr.data import ASRClips, collate_speech, load_speech_splits
from polyhead.tasks.asr.processing import ASRFeatureExtractor

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "asr.json"
TRANSFORMER_RECIPE = "configs/asr/transformer_ctc_small.py"
TARGET_STEP_TIME_RATIO = 1.1
TARGET_RTF = 50.0


class BareConformerCTC(nn.Module):
    """The reference: conv subsampling + torchaudio ``Conformer`` (its own forward) + linear CTC."""

    def __init__(self, config: ASRConfig) -> None:
        super().__init__()
        bb = config.backbone
        dim = int(bb["dim"])
        self.freq_masks = nn.ModuleList(FrequencyMasking(config.freq_mask_param, iid_masks=True) for _ in range(config.num_freq_masks))
        self.time_masks = nn.ModuleList(TimeMasking(config.time_mask_param, iid_masks=True) for _ in range(config.num_time_masks))
        self.conv1 = nn.Conv1d(config.n_mels, dim, 3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.projection = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(config.stem_dropout)
        self.conformer = Conformer(
            input_dim=dim, num_heads=int(bb["num_heads"]), ffn_dim=int(bb["ffn_dim"]), num_layers=int(bb["depth"]),
            depthwise_conv_kernel_size=int(bb["kernel_size"]), dropout=float(bb.get("dropout", 0.1)),
        )
        self.head_dropout = nn.Dropout(float(config.head.get("dropout", 0.1)))
        self.ctc = nn.Linear(dim, config.vocab_size)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lengths = attention_mask.sum(-1)
        spec = input_features.transpose(1, 2).unsqueeze(1)
        for mask in (*self.freq_masks, *self.time_masks):
            spec = mask(spec)
        x = F.gelu(self.conv1(spec.squeeze(1)))
        x = F.gelu(self.conv2(x))
        x = self.dropout(self.projection(x.transpose(1, 2)))
        out_lengths = ((lengths + 1) // 2 + 1) // 2
        x, out_lengths = self.conformer(x, out_lengths)
        logits = self.ctc(self.head_dropout(x))
        valid = labels >= 0
        log_probs = F.log_softmax(logits, -1).transpose(0, 1)
        losses = F.ctc_loss(log_probs, labels[valid], out_lengths, valid.sum(1), blank=0, reduction="none", zero_infinity=True)
        return (losses / valid.sum(1).clamp_min(1)).mean()


def _copy_weights(polyhead_model: PolyheadForCTC, bare: BareConformerCTC) -> None:
    mapping = {
        "adapter.stem.conv1": "conv1", "adapter.stem.conv2": "conv2", "adapter.stem.projection": "projection",
        "backbone.conformer": "conformer", "adapter.head.projection": "ctc",
    }
    state = {}
    for key, value in polyhead_model.state_dict().items():
        for src, dst in mapping.items():
            if key.startswith(src + "."):
                state[dst + key[len(src):]] = value
    missing, unexpected = bare.load_state_dict(state, strict=True), None
    del missing, unexpected


def step_time(config: ASRConfig, batch: dict[str, torch.Tensor], *, rounds: int, block: int) -> dict[str, Any]:
    torch.manual_seed(0)
    ours = PolyheadForCTC(config).train()
    bare = BareConformerCTC(config).train()
    _copy_weights(ours, bare)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_bare = sum(p.numel() for p in bare.parameters())

    def make_step(model: nn.Module, loss_of):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            optimizer.zero_grad()
            loss = loss_of()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

        return step

    steps = {
        "polyhead": make_step(ours, lambda: ours(**batch).loss),
        "bare": make_step(bare, lambda: bare(**batch)),
    }
    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    blocks: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for r in range(rounds):
        for name in order[r % 2 :] + order[: r % 2]:
            start = time.perf_counter()
            for _ in range(block):
                steps[name]()
            blocks[name].append((time.perf_counter() - start) / block * 1000)
    mean = {name: statistics.mean(v) for name, v in blocks.items()}
    median = {name: statistics.median(v) for name, v in blocks.items()}
    ratio = mean["polyhead"] / mean["bare"]
    return {
        "parameters": {"polyhead": n_ours, "bare": n_bare},
        "batch": {"clips": int(batch["input_features"].shape[0]), "frames": int(batch["input_features"].shape[1])},
        "rounds": rounds, "steps_per_block": block,
        "mean_ms": mean, "median_ms": median,
        "ratio_polyhead_over_bare": round(ratio, 4),
        "ratio_median": round(median["polyhead"] / median["bare"], 4),
        "target": TARGET_STEP_TIME_RATIO, "meets_target": ratio <= TARGET_STEP_TIME_RATIO,
    }


def real_time_factor(model_dir: Path, clips: list, *, repeats: int) -> dict[str, Any]:
    audio_seconds = sum(len(c) for c in clips) / 16000
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        shutil.copytree(model_dir, local)
        report = polyhead.export_onnx(local)
        result: dict[str, Any] = {"clips": len(clips), "audio_seconds": round(audio_seconds, 2), "onnx_parity_passed": report["passed"]}
        texts = {}
        for backend in ("torch", "onnx"):
            asr = polyhead.pipeline("automatic-speech-recognition", model=local, backend=backend)
            asr(clips[:5])  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                outputs = [asr(clip) for clip in clips]
                times.append(time.perf_counter() - start)
            best = min(times)
            texts[backend] = [o["text"] for o in outputs]
            result[backend] = {"compute_seconds": round(best, 3), "real_time_factor": round(audio_seconds / best, 1),
                               "meets_target": audio_seconds / best >= TARGET_RTF}
        result["same_transcripts"] = texts["torch"] == texts["onnx"]
        result["onnx_speedup"] = round(result["onnx"]["real_time_factor"] / result["torch"]["real_time_factor"], 3)
        result["target"] = TARGET_RTF
    return result


def wer_unseen_voices(conformer_dir: Path, transformer_dir: Path, extra: dict[str, Path]) -> dict[str, Any]:
    if not (transformer_dir / "config.json").is_file():
        output_dir = transformer_dir.parent
        print(f"training the transformer-backbone model into {output_dir} (same recipe and budget)")
        polyhead.train(TRANSFORMER_RECIPE, cfg_options={"train.output_dir": str(output_dir), "train.log_with": None, "train.progress_bar": False})
    result = {}
    for name, model_dir in (("conformer", conformer_dir), ("transformer", transformer_dir), *extra.items()):
        evaluated = polyhead.evaluate_model_dir(model_dir, data="speech_commands", split="test")
        trained = json.loads((model_dir / "metrics.json").read_text()) if (model_dir / "metrics.json").is_file() else {}
        result[name] = {
            "model_dir": str(model_dir),
            "backbone": json.loads((model_dir / "config.json").read_text())["backbone"],
            "test": {k: round(v, 4) for k, v in evaluated["metrics"].items()},
            "num_parameters": trained.get("num_parameters"),
            "train_steps": trained.get("global_step", extra_steps(model_dir)),
            "train_seconds": trained.get("train_seconds"),
        }
    return result


def extra_steps(model_dir: Path) -> int | None:
    state = model_dir / "trainer_state.json"
    return json.loads(state.read_text())["trainer"]["global_step"] if state.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--rtf-clips", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--transformer-dir", type=Path, default=Path("runs/asr_transformer/best"))
    parser.add_argument("--also", action="append", default=[], metavar="NAME=DIR",
                        help="more model dirs to evaluate on the unseen voices (e.g. a checkpoint at the transformer's step count)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    load_start = os.getloadavg()

    model_dir = default_model_dir("automatic-speech-recognition")
    config = ASRConfig.from_pretrained(model_dir)
    splits = load_speech_splits("speech_commands")
    train = splits["train"].select(range(16))
    clips = ASRClips(train, name="train", feature_extractor=ASRFeatureExtractor.from_config(config), vocab=config.vocab,
                     audio_column="audio", text_column="text", lowercase=True, unknown_characters="unk")
    batch = collate_speech([clips[i] for i in range(len(clips))])
    steps = step_time(config, batch, rounds=args.rounds, block=args.block)

    test_dir = embedded_speech_dir() / "test"
    with open(test_dir / "metadata.csv") as handle:
        rows = list(csv.DictReader(handle))[: args.rtf_clips]
    audio = [load_audio(test_dir / row["file_name"], 16000) for row in rows]
    rtf = real_time_factor(model_dir, audio, repeats=args.repeats)

    wer = wer_unseen_voices(model_dir, args.transformer_dir, {k: Path(v) for k, v in (a.split("=", 1) for a in args.also)})

    result = {
        "benchmark": "asr",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"polyhead": polyhead.__version__, "torch": torch.__version__},
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg()}},
        "step_time": steps,
        "real_time_factor": rtf,
        "wer_unseen_voices": wer,
        "seconds": round(time.time() - started, 1),
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(f"step time polyhead/bare: {steps['ratio_polyhead_over_bare']:.3f} (target <= {TARGET_STEP_TIME_RATIO}), "
          f"{steps['mean_ms']['polyhead']:.1f} vs {steps['mean_ms']['bare']:.1f} ms, {steps['parameters']}")
    print(f"real-time factor: torch {rtf['torch']['real_time_factor']}x, onnx {rtf['onnx']['real_time_factor']}x (target >= {TARGET_RTF}x), "
          f"same transcripts: {rtf['same_transcripts']}")
    for name, row in wer.items():
        print(f"unseen voices, {name}: WER {row['test'].get('wer')}, CER {row['test'].get('cer')}")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
