"""DLinear: what is specific to it (its parameter count, per-channel weights, the reference form);
shapes, gradients and learning are in the model suite (tests/test_models.py)."""

import pytest
import torch

from forecast.errors import ConfigError
from forecast.models.dlinear import DLinear


@pytest.mark.parametrize("individual", [False, True])
@pytest.mark.parametrize("L,H,C", [(96, 24, 7), (336, 720, 1), (13, 5, 3)])
def test_parameter_count(individual, L, H, C):
    model = DLinear(seq_len=L, pred_len=H, enc_in=C, individual=individual)
    assert model(torch.randn(4, L, C)).shape == (4, H, C)
    n_maps = C if individual else 1
    assert sum(p.numel() for p in model.parameters()) == 2 * n_maps * (L * H + H)


def test_individual_channels_do_not_share_weights():
    torch.manual_seed(0)
    shared, individual = DLinear(24, 6, 2), DLinear(24, 6, 2, individual=True)
    x = torch.randn(1, 24, 1).repeat(1, 1, 2)  # the same series on both channels
    out_shared, out_individual = shared(x), individual(x)
    torch.testing.assert_close(out_shared[..., 0], out_shared[..., 1])
    assert not torch.allclose(out_individual[..., 0], out_individual[..., 1])


def test_matches_the_reference_formulation():
    """Same output as two nn.Linear layers over [B, C, L] (the reference code's form)."""
    model = DLinear(32, 8, 3)
    x = torch.randn(5, 32, 3)
    seasonal, trend = model.decomposition(x)
    lin = lambda part, w, b: torch.nn.functional.linear(part.permute(0, 2, 1), w[0].T, b[0]).permute(0, 2, 1)  # noqa: E731
    expected = lin(seasonal, model.seasonal_weight, model.seasonal_bias) + lin(trend, model.trend_weight, model.trend_bias)
    torch.testing.assert_close(model(x), expected)


def test_a_bad_kernel_size_fails_with_the_fix():
    with pytest.raises(ConfigError, match=r"model.kernel_size=0 must be at least 1. Fix:"):
        DLinear(24, 6, 2, kernel_size=0)
