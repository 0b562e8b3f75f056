"""Composition by injection: one backbone instance serving several task models (the composition contract)."""

from __future__ import annotations

import pytest
import torch

from polyhead import registry
from polyhead.backbones import TransformerEncoder
from polyhead.errors import ConfigError
from polyhead.tasks.asr import ASRConfig, PolyheadForCTC
from polyhead.tasks.forecasting import ForecastingConfig, PolyheadForForecasting
from polyhead.tasks.recommendation import NextItemConfig, PolyheadForNextItem
from polyhead.tasks.rl import PolyheadForDecisionTransformer


def _shared_backbone() -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(dim=16, depth=2, num_heads=2, dropout=0.0, position="learned", max_length=64)


def _models(backbone: TransformerEncoder):
    forecaster = PolyheadForForecasting(
        ForecastingConfig(context_length=32, horizon=8, patch_length=8, patch_stride=4, head={"type": "forecast"}), backbone=backbone
    )
    recommender = PolyheadForNextItem(NextItemConfig(item_vocab=[str(i) for i in range(30)], max_length=10), backbone=backbone)
    recognizer = PolyheadForCTC(ASRConfig(vocab=["<pad>", "<unk>", "|", "a", "b", "c"], n_mels=16), backbone=backbone)
    agent = PolyheadForDecisionTransformer(registry.get(registry.TASKS, "rl").example_configs()[0], backbone=backbone)
    return forecaster, recommender, recognizer, agent


def _batches(agent):
    torch.manual_seed(1)
    features = torch.randn(2, 40, 16)
    trajectory = registry.get(registry.TASKS, "rl")().export_spec(agent.config).make_inputs({"batch": 2})
    return {
        "decision_transformer": {**trajectory, "labels": trajectory["actions"]},
        "forecasting": {"past_values": torch.randn(2, 32, 1), "future_values": torch.randn(2, 8, 1)},
        "next_item": {"input_ids": torch.randint(0, 30, (2, 10)), "labels": torch.randint(0, 30, (2, 10))},
        "ctc": {"input_features": features, "attention_mask": torch.ones(2, 40, dtype=torch.long),
                "labels": torch.tensor([[3, 4, 2, 5], [4, 4, -100, -100]])},
    }


def test_task_models_share_one_backbone_and_train_it():
    backbone = _shared_backbone()
    forecaster, recommender, recognizer, agent = _models(backbone)
    assert forecaster.backbone is backbone and recommender.backbone is backbone and recognizer.backbone is backbone and agent.backbone is backbone
    shared = dict(backbone.named_parameters())
    batches = _batches(agent)
    seen = {}
    for name, model in (("forecasting", forecaster), ("next_item", recommender), ("ctc", recognizer), ("decision_transformer", agent)):
        backbone.zero_grad()
        model.zero_grad()
        loss = model(**batches[name]).loss
        loss.backward()
        grads = {key: p.grad for key, p in shared.items()}
        assert all(g is not None for g in grads.values()), f"{name}: some shared parameters got no gradient"
        assert sum(float(g.abs().sum()) for g in grads.values()) > 0, name
        seen[name] = grads["blocks.0.attn.qkv.weight"].clone()
        # the task's own parts got gradients too, and only its own
        assert all(p.grad is not None for p in model.adapter.parameters() if p.requires_grad)
    # each task pushes the shared weights its own way
    assert not torch.allclose(seen["forecasting"], seen["next_item"]) and not torch.allclose(seen["next_item"], seen["ctc"])
    # one optimizer step through one task changes what the other tasks compute
    before = recommender(input_ids=batches["next_item"]["input_ids"]).scores.detach()
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(0.01)
    after = recommender(input_ids=batches["next_item"]["input_ids"]).scores.detach()
    assert not torch.allclose(before, after)


def test_an_injected_backbone_defines_config_backbone(tmp_path):
    backbone = _shared_backbone()
    forecaster = PolyheadForForecasting(ForecastingConfig(context_length=32, horizon=8, patch_length=8, patch_stride=4), backbone=backbone)
    assert forecaster.config.backbone == {"type": "transformer", "dim": 16, "depth": 2, "num_heads": 2, "dropout": 0.0,
                                          "position": "learned", "max_length": 64}
    forecaster.save_pretrained(tmp_path / "m")
    loaded = PolyheadForForecasting.from_pretrained(tmp_path / "m")
    x = torch.randn(3, 32, 1)
    torch.testing.assert_close(loaded.eval()(past_values=x).prediction, forecaster.eval()(past_values=x).prediction)


def test_an_adapter_refuses_a_backbone_it_cannot_use_before_building_anything():
    from polyhead.backbones import ConformerEncoder

    with pytest.raises(ConfigError, match="NextItemAdapter attends causally; the 'conformer' backbone cannot"):
        PolyheadForNextItem(NextItemConfig(item_vocab=["a", "b"], max_length=4), backbone=ConformerEncoder(dim=16, depth=1, num_heads=2, ffn_dim=16, kernel_size=3))
    with pytest.raises(ConfigError, match="needs a pyramid backbone; 'transformer' is a sequence backbone"):
        registry.get(registry.TASKS, "detection")().build_model(
            registry.get(registry.TASKS, "detection").example_config().__class__(backbone={"type": "transformer", "dim": 16, "num_heads": 2})
        )
    with pytest.raises(ConfigError, match="must be a polyhead backbone"):
        PolyheadForForecasting(ForecastingConfig(), backbone=torch.nn.Linear(2, 2))
