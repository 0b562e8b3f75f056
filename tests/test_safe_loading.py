"""Loading never unpickles by default; torch.load is only ever called with weights_only=True."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import polyhead
from polyhead.errors import ModelLoadError
from polyhead.tasks.forecasting import PolyheadForForecasting

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("polyhead", "backbones", "heads", "tasks", "pipelines", "benchmarks", "scripts") for p in (ROOT / d).rglob("*.py")]


def test_pickle_checkpoint_needs_an_explicit_flag(tmp_path, tiny_config):
    model = PolyheadForForecasting(tiny_config).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # an old-style pickled checkpoint
    assert (tmp_path / "pytorch_model.bin").is_file() and not (tmp_path / "model.safetensors").exists()
    with pytest.raises(ModelLoadError, match="does not unpickle weights unless you pass allow_pickle=True"):
        polyhead.AutoModel.from_pretrained(tmp_path)
    loaded = polyhead.AutoModel.from_pretrained(tmp_path, allow_pickle=True).eval()
    x = torch.randn(2, 32, 3)
    torch.testing.assert_close(loaded(past_values=x).prediction, model(past_values=x).prediction)


def test_every_torch_load_is_weights_only():
    calls = []
    for path in SOURCES:
        for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.name, match.group(1)))
    for name, args in calls:
        assert "weights_only=True" in args, f"{name}: torch.load({args}) without weights_only=True"
