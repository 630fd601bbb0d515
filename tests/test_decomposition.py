"""Moving-average decomposition (shared by DLinear, Autoformer and KARMA)."""

import pytest
import torch

from forecast.layers.decomposition import MATMUL_MAX_LENGTH, SeriesDecomposition, moving_average


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


@pytest.mark.parametrize("length", [50, MATMUL_MAX_LENGTH + 44])  # the averaging product and the sliding sums
@pytest.mark.parametrize("kernel", [2, 7, 25, 60])
def test_moving_average_and_its_gradient_equal_the_padded_window_mean(kernel, length):
    """Both forms equal the definition, the mean of each edge-padded window, also on a series
    with a large level; and so does the gradient."""
    torch.manual_seed(0)
    x = (torch.randn(2, length, 3, dtype=torch.float64) + 1e4).requires_grad_()
    front, back = kernel // 2, (kernel - 1) // 2
    padded = torch.cat([x[:, :1].repeat(1, front, 1), x, x[:, -1:].repeat(1, back, 1)], dim=1)
    direct = torch.stack([padded[:, t : t + kernel].mean(dim=1) for t in range(length)], dim=1)
    got = moving_average(x, kernel)
    torch.testing.assert_close(got, direct, rtol=0, atol=1e-9)
    weights = torch.randn_like(direct)
    torch.testing.assert_close(torch.autograd.grad((got * weights).sum(), x)[0],
                               torch.autograd.grad((direct * weights).sum(), x)[0], rtol=0, atol=1e-12)
    x32 = x.detach().float()
    torch.testing.assert_close(moving_average(x32, kernel), direct.detach().float(), rtol=0, atol=4e-3)  # float32 at level 1e4: 4 ulp (the product sums up to 60 rounded terms)
