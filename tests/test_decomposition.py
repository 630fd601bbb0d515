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
