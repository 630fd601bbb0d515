"""intervals.method=native: the statsmodels baselines' own prediction intervals, against
statsmodels on the same fit (ARIMA) and against the closed-form ETS(A,N,N) variance; models
without native intervals are refused before anything runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from forecast.errors import ConfigError
from forecast.models.classical.arima import ARIMA
from forecast.models.classical.ets import ETS


def _series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(n) + 0.002 * t)[:, None]


def test_native_arima_intervals_equal_statsmodels_conf_int():
    from statsmodels.tsa.arima.model import ARIMA as SmARIMA

    seq_len, horizon = 96, 12
    net = ARIMA(seq_len, horizon, periods=[24], orders=[[1, 0, 1]], seasonal_order=None, workers=1, progress=False)
    train = _series(400)
    net.fit_training(torch.from_numpy(train), freq="h")
    order, params = net.selected[0]
    window = _series(seq_len, seed=1)
    bands = net.native_intervals(torch.from_numpy(window[None]), [80, 95])
    reference = SmARIMA(window[:, 0], order=order, trend="c").filter(params).get_forecast(horizon)
    for level in (80, 95):
        expected = np.asarray(reference.conf_int(alpha=1 - level / 100))
        lo, hi = bands[level]
        np.testing.assert_allclose(lo[0, :, 0].double().numpy(), expected[:, 0], rtol=0, atol=1e-8)
        np.testing.assert_allclose(hi[0, :, 0].double().numpy(), expected[:, 1], rtol=0, atol=1e-8)
    # centred on the model's own point forecast (the same filtered model)
    point = net(torch.from_numpy(window[None]))[0, :, 0].double().numpy()
    np.testing.assert_allclose((lo + hi)[0, :, 0].double().numpy() / 2, point, atol=1e-6)


def test_native_ets_intervals_follow_the_closed_form_variance():
    # ETS(A,N,N): σ_h² = σ²·(1 + (h − 1)·α²), σ² the mean squared one-step error of the window
    seq_len, horizon = 120, 10
    net = ETS(seq_len, horizon, periods=[24], error="add", trend=None, damped=False, seasonal=None, refit="once",
              objective="one_step", workers=1, progress=False)
    net.fit_training(torch.from_numpy(_series(500)), freq="h")
    alpha = float(net.params[0, 0])
    window = _series(seq_len, seed=2)[:, 0]
    bands = net.native_intervals(torch.from_numpy(window[None, :, None]), [90])
    lo, hi = (b[0, :, 0].double().numpy() for b in bands[90])

    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    # the heuristic initial level statsmodels starts from, then the recursion in numpy
    level = ETSModel(window, error="add", initialization_method="heuristic").smooth([alpha]).initial_level
    errors = []
    for y in window:
        errors.append(y - level)
        level = level + alpha * (y - level)
    sigma2 = np.mean(np.square(errors))
    h = np.arange(1, horizon + 1)
    half = norm.ppf(0.95) * np.sqrt(sigma2 * (1 + (h - 1) * alpha**2))
    np.testing.assert_allclose(hi - lo, 2 * half, rtol=1e-6)
    np.testing.assert_allclose((hi + lo) / 2, level, rtol=1e-6)


def test_native_is_refused_for_a_model_without_it(make_config):
    from forecast.pipelines import train

    cfg = make_config("model=dlinear", "intervals.method=native", "logger=none", "trainer=debug")
    with pytest.raises(ConfigError, match="intervals.method=native.*Fix: intervals.method=conformal_error"):
        train.run(cfg)


def test_native_ets_through_the_pipeline(make_config, tmp_path):
    import pandas as pd

    from forecast.pipelines import train

    n = 1200
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=n, freq="h"), "OT": 10 + _series(n, 3)[:, 0]})
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    cfg = make_config("data=csv", f"data.path={path}", "data.seq_len=96", "data.pred_len=12", "model=ets",
                      "model.trend=null", "model.seasonal=null", "model.objective=one_step", "model.workers=1",
                      "model.progress=false", "intervals.method=native", "intervals.levels=[80]", "logger=none",
                      "data.split_sizes=[0.8,0.1,0.1]", "plot_windows=1")
    metrics = train.run(cfg)
    # the ETS(A,N,N) bands of a seasonal series: wide, so they over-cover; sane and ordered
    assert 0.5 < metrics["test/coverage_80"] <= 1.0
    assert metrics["test/width_80"] > 0 and metrics["test/msis_80"] > 0
