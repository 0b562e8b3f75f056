"""Generate polyhead's embedded speech set with the espeak-ng speech synthesizer.

No real speech corpus small enough to ship offline exists, so the default ASR
model learns from synthetic speech: espeak-ng (Debian package ``espeak-ng``)
speaks digit strings ("three one four") and short command phrases ("turn on the
light") with many voices (English accents x voice variants), speeds and pitches.
Each clip gets a random gain, a little leading/trailing silence and faint white
noise, is resampled to 16 kHz mono and stored as Ogg/Opus (FFmpeg's ``libopus``).

The three splits use DIFFERENT voice variants: the test set measures how the model
transcribes voices it never heard in training.

Output: an audiofolder (``datasets.load_dataset("audiofolder", data_dir=...)``)::

    <out>/train/metadata.csv        file_name,text
    <out>/train/00000.opus ...
    <out>/validation/... <out>/test/...
    <out>/README.md                 how it was made (voices per split, counts)

Usage:
    python scripts/make_speech_dataset.py --out polyhead/assets/speech_commands
Needs ``espeak-ng`` and ``ffmpeg`` on PATH (``apt-get install -y espeak-ng ffmpeg``).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from polyhead.model_dir import write_folder

SAMPLE_RATE = 16_000
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VERBS_OBJECTS = {
    "turn on": ["the light", "the radio", "the fan", "the heating", "the music"],
    "turn off": ["the light", "the radio", "the fan", "the heating", "the music"],
    "open": ["the door", "the window", "the garage"],
    "close": ["the door", "the window", "the garage"],
    "play": ["music", "the news", "a song"],
    "call": ["mom", "dad", "home", "the office"],
}
SHORT_COMMANDS = [
    "yes", "no", "stop", "go", "left", "right", "up", "down", "go left", "go right", "go back",
    "volume up", "volume down", "next track", "pause", "start", "cancel", "repeat that", "what time is it",
]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
# espeak-ng voice variants (espeak-ng-data/voices/!v), split so no variant is shared between splits.
TRAIN_VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2", "klatt3", "Alex", "Andy",
    "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Mike", "Storm", "adam", "anika",
    "aunty", "belinda", "boris", "david", "ed", "edward", "grandpa", "iven", "iven2", "john", "linda",
    "max", "norbert", "paul", "pedro", "rob", "robert", "steph", "steph2", "travis", "victor", "zac",
]
VALIDATION_VARIANTS = ["m7", "f4", "klatt4", "Hugo", "benjamin", "iven3", "steph3", "quincy"]
TEST_VARIANTS = ["m8", "f5", "klatt5", "klatt6", "Andrea", "Marco", "caleb", "gustave", "iven4", "miguel", "antonio", "marcelo"]


def random_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return " ".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 5)))
    if kind < 0.8:
        verb = rng.choice(list(VERBS_OBJECTS))
        return f"{verb} {rng.choice(VERBS_OBJECTS[verb])}"
    return rng.choice(SHORT_COMMANDS)


def synthesize(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng -> (float32 samples, sample rate)."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as handle:
        rate = handle.getframerate()
        frames = handle.readframes(handle.getnframes())
    return np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0, rate


def augment(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Random gain, 0-0.3 s of silence on each side, white noise at 25-45 dB SNR."""
    samples = samples * rng.uniform(0.3, 1.0) / max(float(np.abs(samples).max()), 1e-3)
    pad = [np.zeros(int(rate * rng.uniform(0.0, 0.3)), dtype=np.float32) for _ in range(2)]
    samples = np.concatenate([pad[0], samples, pad[1]])
    power = float(np.mean(samples**2)) + 1e-10
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (rng.uniform(25, 45) / 10)), samples.shape)
    return np.clip(samples + noise, -1.0, 1.0).astype(np.float32)


def encode_opus(samples: np.ndarray, rate: int, path: Path, bitrate: str) -> None:
    pcm = (samples * 32767).astype("<i2").tobytes()
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
         "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "libopus", "-b:a", bitrate, "-application", "voip", str(path)],
        input=pcm, check=True,
    )


def make_split(out: Path, name: str, variants: list[str], count: int, seed: int, bitrate: str) -> list[str]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    folder = out / name
    folder.mkdir(parents=True)
    voices = []
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text"])
        for i in range(count):
            text = random_text(rng)
            voice = f"{rng.choice(ACCENTS)}+{rng.choice(variants)}"
            speed, pitch = rng.randint(120, 220), rng.randint(20, 80)
            samples, rate = synthesize(text, voice, speed, pitch)
            file_name = f"{i:05d}.opus"
            encode_opus(augment(samples, rate, nrng), rate, folder / file_name, bitrate)
            writer.writerow([file_name, text])
            voices.append(voice)
    return voices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("polyhead/assets/speech_commands"))
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--validation", type=int, default=200)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--bitrate", default="12k", help="Opus bitrate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found; install it with `apt-get install -y espeak-ng ffmpeg`.")
    with write_folder(args.out, kind="data", overwrite=True, what="--out folder") as tmp:  # never a folder polyhead did not write
        write(tmp, args)
    print(f"wrote {args.out}")


def write(tmp: Path, args: argparse.Namespace) -> None:
    splits = {"train": (TRAIN_VARIANTS, args.train), "validation": (VALIDATION_VARIANTS, args.validation), "test": (TEST_VARIANTS, args.test)}
    lines = [
        "# speech_commands: synthetic speech from espeak-ng",
        "",
        "Generated by `scripts/make_speech_dataset.py` (espeak-ng digit strings and short commands;",
        "16 kHz mono Ogg/Opus). Voices are `<accent>+<variant>`; the splits share no voice variant,",
        "so the test set is spoken by voices unseen in training.",
        "",
        f"Accents: {', '.join(ACCENTS)}. Speed 120-220 wpm, pitch 20-80, gain 0.3-1, 25-45 dB SNR white noise.",
        "",
    ]
    for seed_offset, (name, (variants, count)) in enumerate(splits.items()):
        make_split(tmp, name, variants, count, args.seed + 1000 * seed_offset, args.bitrate)
        lines.append(f"- {name}: {count} clips, variants {', '.join(variants)}")
    (tmp / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
