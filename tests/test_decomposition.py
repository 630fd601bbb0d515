"""Moving-average decomposition (shared by DLinear, Autoformer and KARMA)."""

import pytest
import torch

from forecast.layers.decomposition import SeriesDecomposition, moving_average


@pytest.mark.parametrize("kernel", [1, 4, 25])
def test_parts_sum_back_to_the_input(kernel):
    x = torch.randn(3, 50, 4, dtype=torch.float64)
    seasonal, trend = SeriesDecomposition(kernel)(x)
    assert seasonal.shape == trend.shape == x.shape
    assert torch.equal(seasonal + trend, x) or torch.allclose(seasonal + trend, x, rtol=0, atol=1e-15)


def test_trend_of_a_constant_is_the_constant_and_matches_a_direct_average():
    x = torch.full((2, 30, 3), 4.25)
    torch.testing.assert_close(moving_average(x, 25), x)
    # interior points: the plain centred average; edges: the series' end values repeated
    y = torch.arange(20.0).reshape(1, 20, 1)
    trend = moving_average(y, 5)
    assert trend[0, 10, 0] == pytest.approx(10.0)
    assert trend[0, 0, 0] == pytest.approx((0 + 0 + 0 + 1 + 2) / 5)
    assert trend[0, -1, 0] == pytest.approx((17 + 18 + 19 + 19 + 19) / 5)


@pytest.mark.parametrize("kernel", [2, 7, 25, 60])
def test_moving_average_equals_the_padded_window_mean(kernel):
    """The sliding-sum form equals the definition: the mean of each edge-padded window,
    also on a series with a large level."""
    x = torch.randn(2, 50, 3, dtype=torch.float64) + 1e4
    front, back = kernel // 2, (kernel - 1) // 2
    padded = torch.cat([x[:, :1].repeat(1, front, 1), x, x[:, -1:].repeat(1, back, 1)], dim=1)
    direct = torch.stack([padded[:, t : t + kernel].mean(dim=1) for t in range(50)], dim=1)
    torch.testing.assert_close(moving_average(x, kernel), direct, rtol=0, atol=1e-9)
    x32 = x.float()
    torch.testing.assert_close(moving_average(x32, kernel), direct.float(), rtol=0, atol=2e-3)  # float32 at level 1e4
