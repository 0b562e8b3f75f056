"""Pull: ``from_pretrained(repo_id)`` and ``pipeline(model=repo_id)`` from the cache offline, and over HTTP
through a real olah mirror, with a clear error for every way a repo can be wrong."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from huggingface_hub import snapshot_download

import polyhead
from polyhead.errors import ModelLoadError

from .conftest import DEFAULT_DIR, seed_repo

FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json")


@pytest.fixture(scope="module")
def history() -> pd.Series:
    co2 = pd.read_csv(Path(polyhead.__file__).parent / "assets" / "co2_weekly.csv", parse_dates=["date"]).set_index("date")["co2"]
    return co2.interpolate().asfreq("W-SAT").iloc[-300:]


@pytest.fixture(scope="module")
def local_forecast(history) -> dict:
    return polyhead.pipeline("time-series-forecasting", model=str(DEFAULT_DIR))(history)


def same_weights(model, reference_dir: Path) -> bool:
    reference = polyhead.AutoModel.from_pretrained(reference_dir).state_dict()
    return all(torch.equal(tensor, reference[name]) for name, tensor in model.state_dict().items())


def seed_cache(cache: Path, repo_id: str, source: Path, commit: str) -> Path:
    """The real Hub cache layout: blobs by etag, a snapshot of symlinks, and refs/main."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "snapshots" / commit).mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name in FILES:
        data = (source / name).read_bytes()
        etag = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (root / "blobs" / etag).write_bytes(data)
        os.symlink(Path("..") / ".." / "blobs" / etag, root / "snapshots" / commit / name)
    return root / "snapshots" / commit


def test_pull_offline_from_the_cache(hf, history, local_forecast):
    commit = "0123456789abcdef0123456789abcdef01234567"
    seed_cache(hf.cache, "org/cached", DEFAULT_DIR, commit)
    hf.point(None, offline=True)

    model = polyhead.AutoModel.from_pretrained("org/cached")
    assert type(model).__name__ == "PolyheadForForecasting" and same_weights(model, DEFAULT_DIR)
    assert same_weights(polyhead.AutoModel.from_pretrained("org/cached", revision=commit), DEFAULT_DIR)
    assert polyhead.pipeline("time-series-forecasting", model="org/cached")(history) == local_forecast
    # transformers' own pipeline, as the card shows it, works from the cache too
    out = transformers.pipeline("time-series-forecasting", model="org/cached")(history)
    assert out["forecast"] == local_forecast["forecast"]

    with pytest.raises(ModelLoadError, match=r"Hub repo org/elsewhere is not in the local Hugging Face cache .*HF_HUB_OFFLINE"):
        polyhead.AutoModel.from_pretrained("org/elsewhere")
    with pytest.raises(ModelLoadError, match=r"org/cached \(revision 'v9'\) is not in the local Hugging Face cache"):
        polyhead.pipeline("forecasting", model="org/cached", revision="v9")


@pytest.fixture(scope="module")
def served(mirrors, exported_dir):
    """Repos in olah's mirrors: the exported forecaster, a BERT model, and a repo without config.json."""
    seed_repo(mirrors, "org/co2", exported_dir)
    bert = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    seed_repo(mirrors, "org/tiny-bert", {"config.json": bert.to_json_string().encode(),
                                         "model.safetensors": (DEFAULT_DIR / "model.safetensors").read_bytes()})
    seed_repo(mirrors, "org/notes", {"README.md": b"# just notes\n"})
    return mirrors


def test_pull_through_olah(olah, served, hf, history, local_forecast, exported_dir):
    hf.point(olah)
    folder = Path(snapshot_download("org/co2"))
    served_files = sorted(p.name for p in exported_dir.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == sorted([*served_files, ".gitattributes"])
    for name in served_files:
        assert (folder / name).read_bytes() == (exported_dir / name).read_bytes(), name

    model = polyhead.AutoModel.from_pretrained("org/co2")
    assert same_weights(model, DEFAULT_DIR)
    assert polyhead.pipeline("time-series-forecasting", model="org/co2")(history) == local_forecast
    onnx = polyhead.pipeline("time-series-forecasting", model="org/co2", backend="onnx")(history)
    np.testing.assert_allclose(onnx["forecast"]["co2"], local_forecast["forecast"]["co2"], atol=1e-3)

    # what was pulled is in the cache: it loads again with the network off
    hf.point(None, offline=True)
    assert same_weights(polyhead.AutoModel.from_pretrained("org/co2"), DEFAULT_DIR)


def test_pull_errors_through_olah(olah, served, hf):
    hf.point(olah)
    with pytest.raises(ModelLoadError, match=r"'org/missing' is not a local model dir, and no Hub repo org/missing was found on http://127\.0\.0\.1"):
        polyhead.AutoModel.from_pretrained("org/missing")
    with pytest.raises(ModelLoadError, match=r"Revision 'v9' does not exist in Hub repo org/co2 \(branches: main; tags: none\)"):
        polyhead.AutoModel.from_pretrained("org/co2", revision="v9")
    with pytest.raises(ModelLoadError, match=r"Revision 'v9' does not exist in Hub repo org/co2"):
        polyhead.pipeline("time-series-forecasting", model="org/co2", revision="v9")
    with pytest.raises(ModelLoadError, match=r"Hub repo org/tiny-bert holds a bert model, not a polyhead model"):
        polyhead.AutoModel.from_pretrained("org/tiny-bert")
    with pytest.raises(ModelLoadError, match=r"Hub repo org/tiny-bert holds a bert model"):
        polyhead.pipeline("time-series-forecasting", model="org/tiny-bert")
    with pytest.raises(ModelLoadError, match=r"Hub repo org/notes has no config.json at revision 'main'"):
        polyhead.AutoModel.from_pretrained("org/notes")
    # the BERT repo's config was read, its weights never fetched
    bert_cache = hf.cache / "models--org--tiny-bert"
    assert [p.name for p in bert_cache.rglob("*") if p.is_file() or p.is_symlink()].count("config.json") == 1
    assert not list(bert_cache.rglob("model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"neither a local model dir nor a valid Hub repo id"):
        polyhead.AutoModel.from_pretrained("org/bad name!")
