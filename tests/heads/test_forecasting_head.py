"""The forecasting head: shapes, the pinball loss, and construction checks."""

from __future__ import annotations

import pytest
import torch

from polyhead.errors import ConfigError, UnknownNameError
from polyhead.heads import ForecastHead, pinball_loss

INFO = [{"num_chs": 8, "reduction": 1}]


def test_shapes_and_point_forecast():
    head = ForecastHead(feature_info=INFO, num_tokens=5, horizon=7, quantiles=[0.1, 0.5, 0.9])
    out = head((torch.randn(4, 5, 8),))
    assert out.shape == (4, 7, 3)
    torch.testing.assert_close(head.point(out), out[..., 1])


def test_point_head_uses_point_loss():
    head = ForecastHead(feature_info=INFO, num_tokens=5, horizon=7, point_loss="mae")
    out = head((torch.randn(4, 5, 8),))
    assert out.shape == (4, 7, 1)
    target = torch.randn(4, 7)
    torch.testing.assert_close(head.loss(out, target)["loss"], (out[..., 0] - target).abs().mean())


def test_pinball_loss_matches_definition():
    q = torch.tensor([0.1, 0.5, 0.9])
    pred = torch.tensor([[1.0, 2.0, 3.0]])
    target = torch.tensor([2.5])
    # errors e = y - yhat: 1.5, 0.5, -0.5 -> q*e or (q-1)*e: 0.15, 0.25, 0.05
    torch.testing.assert_close(pinball_loss(pred, target, q), torch.tensor((0.15 + 0.25 + 0.05) / 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantiles": [0.1, 0.9]}, "include 0.5"),
        ({"quantiles": [0.9, 0.5, 0.1]}, "increasing"),
        ({"quantiles": [0.0, 0.5]}, r"in \(0, 1\)"),
        ({"horizon": 0}, "horizon must be a positive integer"),
        ({"num_tokens": -1}, "num_tokens must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ForecastHead(feature_info=INFO, **{"num_tokens": 5, "horizon": 7, **kwargs})


def test_bad_feature_info_and_loss_name():
    with pytest.raises(ConfigError, match="needs the backbone's feature_info"):
        ForecastHead(feature_info=[], num_tokens=5, horizon=7)
    with pytest.raises(ConfigError, match="reads one sequence feature map"):
        ForecastHead(feature_info=INFO * 2, num_tokens=5, horizon=7)
    with pytest.raises(UnknownNameError, match="Unknown point loss 'rmse'"):
        ForecastHead(feature_info=INFO, num_tokens=5, horizon=7, point_loss="rmse")
