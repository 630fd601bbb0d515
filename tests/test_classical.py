"""Classical baselines: each forecast equals its closed form or statsmodels' own computation,
on the same test windows and through the same pipeline (metrics, MLflow) as the deep models."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.arima.model import ARIMA as SmARIMA
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.forecasting.stl import STLForecast
from statsmodels.tsa.forecasting.theta import ThetaModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from statsmodels.tsa.seasonal import MSTL as SmMSTL, STL as SmSTL, seasonal_decompose

from forecast.errors import ConfigError
from forecast.models import classical as cl
from forecast.models.classical import kernels
from forecast.models.classical.parallel import map_series
from forecast.models.classical.periods import default_periods

# Worker processes of the pool test import this module to find `flaky`: the pipeline, MLflow
# and the shared fixtures (Lightning, Hydra) are imported inside the tests that need them.
REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"

CLASSICAL = ["naive", "seasonalnaive", "drift", "classicaldecomposition", "holtwinters", "ets", "stl", "mstl", "theta", "arima"]
DIAGNOSTICS = {"test/series", "test/fallbacks", "test/warnings", "test/convergence_warnings", "test/fit_seconds", "test/forecast_seconds"}
QUIET = {"workers": 1, "progress": False}


def seasonal_series(n: int, channels: int = 2, period: int = 24, noise: float = 0.1, slope: float = 0.002,
                    level: float = 0.0, seed: int = 0) -> np.ndarray:
    """``[n, channels]``: level + slope·t + a daily shape (two harmonics, phase per channel) + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    c = np.arange(channels)[None, :]
    shape = np.sin(2 * np.pi * t / period + c) + 0.4 * np.cos(4 * np.pi * t / period + 2 * c)
    return level + slope * (c + 1) * t + (c + 1) * shape + noise * rng.standard_normal((n, channels))


def windows(series: np.ndarray, seq_len: int, pred_len: int, starts) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B, L, C]``, ``y [B, H, C]`` (float64) of the windows starting at ``starts``."""
    x = np.stack([series[s : s + seq_len] for s in starts])
    y = np.stack([series[s + seq_len : s + seq_len + pred_len] for s in starts])
    return torch.from_numpy(x), torch.from_numpy(y)


class Scaler:
    """The identity scaler: the series are already in the data's units."""

    def __init__(self, channels: int):
        self.mean, self.std = np.zeros(channels), np.ones(channels)


def ets_params(model: ETSModel, alpha, beta=None, gamma=None, phi=None) -> list[float]:
    """Holt-Winters parameters in ETSModel's order and form (its slope gain is ``α·β``)."""
    values = {"smoothing_level": alpha, "smoothing_trend": None if beta is None else alpha * beta,
              "smoothing_seasonal": gamma, "damping_trend": phi}
    return [values[name] for name in model.param_names]


# ------------------------------------------------------------------ the network contract


def test_every_classical_model_is_a_discovered_parameter_free_network_with_a_config():
    from forecast.config import network_classes

    found = network_classes()  # config.py discovers modules of forecast.models, the subpackage among them
    assert set(CLASSICAL) <= set(found)
    for name in CLASSICAL:
        cls = found[name]
        assert cls.__module__.startswith("forecast.models.classical.") and (CONF / "model" / f"{name}.yaml").exists()
        assert getattr(cl, cls.__name__) is cls  # the package path of served models pickled before the split
        assert cls.uses_time_features is False and cls.channel_independent is True
        assert not list(cls(seq_len=336, pred_len=24, periods=[24]).parameters())
    assert not {"classical", "estimated", "smoothing"} & set(found)  # the shared bases (classical/base.py) are not networks


def test_test_targets_are_the_same_windows_whatever_the_look_back():
    """Classical models may use their own look-back: the test targets must not move with it."""
    from forecast.data.datamodule import ForecastDataModule

    path = (SHARED_DATA if SHARED_DATA.exists() else REPO / "data") / "ETT-small" / "ETTh1.csv"
    targets = []
    for seq_len in (96, 336, 720):
        dm = ForecastDataModule("etth1", str(path), freq="h", seq_len=seq_len, pred_len=96, split_by="months", split_sizes=(12, 4, 4))
        dm.setup()
        test = dm.datasets["test"]
        assert len(test) == 2785  # every test window at H=96
        targets.append(test.__getitems__(list(range(len(test))))["y"])
        assert dm.window_dates("test", 0)[1][0] == dm.table.dates[11520] == pd.Timestamp("2017-10-24")  # the test border
    assert torch.equal(targets[0], targets[1]) and torch.equal(targets[0], targets[2])


# ------------------------------------------------------------------ closed forms


def test_seasonal_naive_reproduces_a_periodic_series_exactly():
    cycle = np.random.default_rng(1).standard_normal((24, 3))
    series = np.tile(cycle, (25, 1))
    x, y = windows(series, 96, 60, range(0, 400, 7))  # every phase of the cycle
    assert torch.equal(cl.SeasonalNaive(96, 60, periods=[24])(x), y)
    assert torch.equal(cl.SeasonalNaive(48, 60, periods=[24])(x[:, -48:]), y)  # the look-back does not matter


def test_drift_reproduces_a_straight_line_and_naive_a_constant():
    t = np.arange(400.0)
    line = np.stack([0.5 + 0.03 * t, -2.0 - 0.7 * t], axis=1)
    x, y = windows(line, 48, 30, range(0, 300, 11))
    assert torch.allclose(cl.Drift(48, 30)(x), y, rtol=0, atol=1e-9)
    flat = np.full((200, 2), 3.25)
    x, y = windows(flat, 24, 12, range(0, 100, 9))
    assert torch.equal(cl.Naive(24, 12)(x), y)


@pytest.mark.parametrize("period", [24, 7])
@pytest.mark.parametrize("multiplicative", [False, True])
def test_vectorised_decomposition_equals_statsmodels_seasonal_decompose(period, multiplicative):
    series = seasonal_series(300, channels=3, period=period, level=10.0)
    trend, seasonal, resid = kernels.seasonal_decompose(torch.from_numpy(series.T.copy()), period, multiplicative)
    for c in range(3):
        expected = seasonal_decompose(series[:, c], model="multiplicative" if multiplicative else "additive", period=period)
        np.testing.assert_allclose(trend[c].numpy(), expected.trend, rtol=0, atol=1e-10)  # NaN at the same ends
        np.testing.assert_allclose(seasonal[c].numpy(), expected.seasonal, rtol=0, atol=1e-10)
        np.testing.assert_allclose(resid[c].numpy(), expected.resid, rtol=0, atol=1e-10)


def test_additive_decomposition_forecast_error_is_below_twice_the_noise_variance():
    noise = 0.2
    series = seasonal_series(2000, channels=2, noise=noise, level=3.0)
    x, y = windows(series, 336, 48, range(0, 1600, 37))
    model = cl.ClassicalDecomposition(336, 48, periods=[24], **QUIET)
    error = ((model(x) - y) ** 2).mean().item()
    assert error < 2 * noise**2
    # the same forecast from statsmodels: seasonal_decompose, a least-squares line through the
    # trend, the seasonal pattern continued
    window = x[5, :, 1].numpy()
    parts = seasonal_decompose(window, model="additive", period=24)
    defined = np.flatnonzero(np.isfinite(parts.trend))
    slope, intercept = np.polyfit(defined, parts.trend[defined], 1)
    future = np.arange(336, 384)
    expected = intercept + slope * future + parts.seasonal[future % 24]  # the pattern starts at position 0
    np.testing.assert_allclose(model(x[5:6])[0, :, 1].numpy(), expected, rtol=0, atol=1e-9)


def test_decomposition_with_a_fixed_holt_trend_equals_statsmodels():
    series = seasonal_series(600, channels=1, noise=0.1, level=2.0)
    x, _ = windows(series, 168, 36, [0, 100, 250])
    model = cl.ClassicalDecomposition(168, 36, periods=[24], trend="holt", smoothing_level=0.4, smoothing_trend=0.1, **QUIET)
    out = model(x)
    for b in range(3):
        window = x[b, :, 0].numpy()
        parts = seasonal_decompose(window, model="additive", period=24)
        trend = parts.trend[12:-12]
        ahead = 12  # the moving average stops half a period before the window's end
        holt = ExponentialSmoothing(trend, trend="add", initialization_method="heuristic").fit(
            smoothing_level=0.4, smoothing_trend=0.1, optimized=False)
        expected = holt.forecast(ahead + 36)[ahead:] + parts.seasonal[np.arange(168, 204) % 24]
        np.testing.assert_allclose(out[b, :, 0].numpy(), expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("trend,damped,seasonal", [
    (None, False, None), ("add", False, None), ("add", True, None), (None, False, "add"), ("add", True, "add"), ("add", True, "mul"),
])
def test_fixed_parameter_exponential_smoothing_equals_statsmodels(trend, damped, seasonal):
    """Given parameters: the vectorised recursion is statsmodels' filter from the heuristic start."""
    series = seasonal_series(500, channels=2, noise=0.2, level=10.0)  # positive: a multiplicative season is defined
    x, _ = windows(series, 120, 40, [0, 77, 300])
    given = {"smoothing_level": 0.3, "smoothing_trend": 0.1, "smoothing_seasonal": 0.2, "damping_trend": 0.9}
    model = cl.HoltWinters(120, 40, periods=[24], trend=trend, damped=damped, seasonal=seasonal, **given, **QUIET)
    out = model(x)
    beta = 0.1 if trend else None
    for b in range(3):
        for c in range(2):
            window = x[b, :, c].numpy()
            if seasonal != "mul":  # ETSModel's multiplicative season is another recursion (see the ETS test)
                ets = ETSModel(window, error="add", trend=trend, damped_trend=damped, seasonal=seasonal,
                               seasonal_periods=24 if seasonal else None, initialization_method="heuristic")
                params = ets_params(ets, 0.3, beta, 0.2 if seasonal else None, 0.9 if damped else None)
                np.testing.assert_allclose(out[b, :, c].numpy(), ets.smooth(params).forecast(40), rtol=0, atol=1e-6)
            hw = ExponentialSmoothing(window, trend=trend, damped_trend=damped, seasonal=seasonal,
                                      seasonal_periods=24 if seasonal else None, initialization_method="heuristic")
            kept = {k: v for k, v in given.items() if (k != "smoothing_trend" or trend) and (k != "smoothing_seasonal" or seasonal)
                    and (k != "damping_trend" or damped)}
            expected = hw.fit(optimized=False, **kept).forecast(40)
            # statsmodels 0.15's ExponentialSmoothing.forecast takes, at horizons that are multiples
            # of the period, the seasonal state before its last update (statsmodels issue #9538)
            steps = np.arange(1, 41)
            same = steps % 24 != 0 if seasonal else steps > 0
            np.testing.assert_allclose(out[b, same, c].numpy(), expected[same], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ refit: once


def test_holt_winters_refit_once_filters_each_window_with_the_training_parameters():
    series = seasonal_series(1100, channels=2, noise=0.15)
    train, test = series[:800], series[800:]
    model = cl.HoltWinters(168, 48, periods=[24], refit="once", **QUIET)
    model.fit_training(torch.from_numpy(train), freq="h", scaler=Scaler(2))
    x, _ = windows(test, 168, 48, [0, 45, 80])
    out = model(x)
    for c in range(2):
        fitted = ExponentialSmoothing(train[:, c], trend="add", damped_trend=True, seasonal="add", seasonal_periods=24,
                                      initialization_method="heuristic").fit()
        p = fitted.params
        alpha, beta, gamma, phi = p["smoothing_level"], p["smoothing_trend"], p["smoothing_seasonal"], p["damping_trend"]
        np.testing.assert_allclose(model.params[c].numpy(), [alpha, beta, gamma, phi], rtol=0, atol=1e-8)
        for b in range(3):
            ets = ETSModel(x[b, :, c].numpy(), error="add", trend="add", damped_trend=True, seasonal="add", seasonal_periods=24,
                           initialization_method="heuristic")
            expected = ets.smooth(ets_params(ets, alpha, beta, gamma, phi)).forecast(48)
            np.testing.assert_allclose(out[b, :, c].numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("error,seasonal", [("add", "add"), ("mul", "mul")])
def test_ets_refit_once_equals_statsmodels_smoothing_with_the_training_estimates(error, seasonal):
    series = seasonal_series(900, channels=2, noise=0.15, seed=3, level=10.0)
    train, test = series[:700], series[700:]
    model = cl.ETS(120, 24, periods=[24], error=error, seasonal=seasonal, refit="once", **QUIET)
    model.fit_training(torch.from_numpy(train), freq="h", scaler=Scaler(2))
    x, _ = windows(test, 120, 24, [0, 50])
    out = model(x)
    kwargs = dict(error=error, trend="add", damped_trend=True, seasonal=seasonal, seasonal_periods=24, initialization_method="heuristic")
    for c in range(2):
        params = ETSModel(train[:, c], **kwargs).fit(disp=False).params
        for b in range(2):
            expected = ETSModel(x[b, :, c].numpy(), **kwargs).smooth(params).forecast(24)
            np.testing.assert_allclose(out[b, :, c].numpy(), expected, rtol=0, atol=1e-6)


def test_stl_refit_once_and_window_equal_statsmodels():
    series = seasonal_series(700, channels=1, noise=0.15, seed=4)
    train, test = series[:500, 0], series[500:]
    x, _ = windows(test, 120, 24, [0, 40])
    ets = dict(error="add", trend="add", damped_trend=True, initialization_method="heuristic")
    once = cl.STL(120, 24, periods=[24], refit="once", **QUIET)
    once.fit_training(torch.from_numpy(series[:500]), freq="h", scaler=Scaler(1))
    parts = SmSTL(train, period=24, seasonal=7).fit()
    params = ETSModel(parts.trend + parts.resid, **ets).fit(disp=False).params
    window_model = cl.STL(120, 24, periods=[24], refit="window", **QUIET)
    out_once, out_window = once(x), window_model(x)
    for b in range(2):
        window = x[b, :, 0].numpy()
        d = SmSTL(window, period=24, seasonal=7).fit()
        expected = ETSModel(d.trend + d.resid, **ets).smooth(params).forecast(24) + d.seasonal[-24:]
        np.testing.assert_allclose(out_once[b, :, 0].numpy(), expected, rtol=0, atol=1e-6)
        direct = STLForecast(window, ETSModel, model_kwargs=ets, period=24, seasonal=7).fit(fit_kwargs={"disp": False})
        np.testing.assert_allclose(out_window[b, :, 0].numpy(), direct.forecast(24), rtol=0, atol=1e-8)


def test_mstl_forecast_adds_the_last_cycle_of_every_season():
    series = seasonal_series(400, channels=1, noise=0.1, seed=5) + np.sin(2 * np.pi * np.arange(400) / 48)[:, None]
    x, _ = windows(series, 144, 30, [0])
    out = cl.MSTL(144, 30, periods=[24, 48], **QUIET)(x)
    window = x[0, :, 0].numpy()
    parts = SmMSTL(window, periods=[24, 48]).fit()
    model = ETSModel(parts.trend + parts.resid, error="add", trend="add", damped_trend=True, initialization_method="heuristic")
    steps = np.arange(30)
    expected = model.fit(disp=False).forecast(30) + parts.seasonal[144 - 24 + steps % 24, 0] + parts.seasonal[144 - 48 + steps % 48, 1]
    np.testing.assert_allclose(out[0, :, 0].numpy(), expected, rtol=0, atol=1e-8)


def test_theta_equals_statsmodels_theta_model():
    series = seasonal_series(300, channels=1, noise=0.2, seed=6)
    x, _ = windows(series, 168, 24, [0, 60])
    out = cl.Theta(168, 24, periods=[24], **QUIET)(x)
    for b in range(2):
        expected = ThetaModel(x[b, :, 0].numpy(), period=24).fit().forecast(24, theta=2.0)
        np.testing.assert_allclose(out[b, :, 0].numpy(), expected, rtol=0, atol=1e-8)


def test_arima_refit_once_selects_by_aic_filters_windows_and_counts_statsmodels_warnings():
    series = seasonal_series(560, channels=2, noise=0.3, seed=7)
    train, test = series[:400], series[400:]
    orders = [(1, 0, 0), (2, 0, 1), (0, 1, 1)]
    model = cl.ARIMA(96, 24, periods=[24], orders=[list(o) for o in orders], refit="once", **QUIET)
    model.fit_training(torch.from_numpy(train), freq="h", scaler=Scaler(2))
    x, _ = windows(test, 96, 24, [0, 30])
    out = model(x)
    caught_total = caught_convergence = 0

    def counted(call):
        nonlocal caught_total, caught_convergence
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = call()
        caught_total += len(caught)
        caught_convergence += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        return result

    for c in range(2):
        fits = {o: counted(lambda o=o: SmARIMA(train[:, c], order=o, trend="c" if o[1] == 0 else "n").fit()) for o in orders}
        best = min(orders, key=lambda o: fits[o].aic)
        assert model.selected[c][0] == best
        for b in range(2):
            window_model = SmARIMA(x[b, :, c].numpy(), order=best, trend="c" if best[1] == 0 else "n")
            expected = counted(lambda: window_model.smooth(fits[best].params).forecast(24))
            np.testing.assert_allclose(out[b, :, c].numpy(), expected, rtol=0, atol=1e-6)
    diagnostics = model.diagnostics()
    assert caught_total > 0  # this series does make statsmodels warn
    assert (diagnostics["warnings"], diagnostics["convergence_warnings"]) == (caught_total, caught_convergence)
    assert (diagnostics["series"], diagnostics["fallbacks"]) == (4, 0)


# ------------------------------------------------------------------ fallbacks, counts, pool


def flaky(y: np.ndarray, fail_below: float) -> np.ndarray:
    """Fails on a negative first value; warns twice (once of convergence) when the second is positive."""
    if y[0] < fail_below:
        raise ValueError("negative start")
    if y[1] > 0:
        warnings.warn("did not converge", ConvergenceWarning)
        warnings.warn("something else", RuntimeWarning)
    return 2 * y[:2]


@pytest.mark.parametrize("workers", [1, 2])
def test_fits_over_the_pool_count_warnings_and_failures_without_printing_them(workers):
    series = np.random.default_rng(8).standard_normal((60, 4))
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        out, counts = map_series(flaky, series, [{"fail_below": 0.0}] * 60, 2, workers=workers)
    failed = series[:, 0] < 0
    warned = ~failed & (series[:, 1] > 0)
    assert not escaped
    assert counts.series == 60 and counts.failed == failed.sum() and np.isnan(out[failed]).all()
    np.testing.assert_array_equal(out[~failed], 2 * series[~failed, :2])
    assert (counts.warnings, counts.convergence_warnings) == (2 * warned.sum(), warned.sum())
    assert counts.messages == {"ValueError: negative start": failed.sum()}


def test_a_window_that_cannot_be_fitted_falls_back_to_seasonal_naive_and_is_counted():
    series = seasonal_series(400, channels=2, noise=0.1, level=5.0)
    series[300:310, 1] = -1.0  # not positive: no multiplicative decomposition of the windows that hold it
    model = cl.ClassicalDecomposition(96, 24, periods=[24], model="multiplicative", **QUIET)
    model.fit_training(torch.from_numpy(series[:250]), freq="h", scaler=Scaler(2))
    starts = list(range(150, 280, 5))
    x, _ = windows(series, 96, 24, starts)
    out = model(x)
    bad = np.array([(series[s : s + 96, 1] <= 0).any() for s in starts])
    assert bad.any() and not bad.all()
    expected_naive = kernels.seasonal_naive(x[bad, :, 1], 24, 24)
    assert torch.equal(out[bad, :, 1], expected_naive)
    assert model.diagnostics()["fallbacks"] == bad.sum()
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------ errors and periods


@pytest.mark.parametrize("make,message", [
    (lambda: cl.SeasonalNaive(12, 24, periods=[24]), r"data.seq_len>=24"),
    (lambda: cl.ClassicalDecomposition(40, 12, periods=[24]), r"data.seq_len>=48"),
    (lambda: cl.MSTL(336, 12, periods=[24, 168]), r"data.seq_len>=337"),
    (lambda: cl.Theta(96, 12, refit="once"), r"Fix: model.refit=window"),
    (lambda: cl.HoltWinters(96, 12, refit="sometimes"), r"model.refit='sometimes' is not one of \['window', 'once'\]"),
    (lambda: cl.HoltWinters(96, 12, smoothing_level=1.5), r"model.smoothing_level=1.5 must lie in \[0, 1\]"),
    (lambda: cl.ETS(96, 12, trend="mul"), r"model.trend='mul' is not one of \[None, 'add'\]"),
    (lambda: cl.STL(96, 12, seasonal_smoother=8), r"odd integer"),
    (lambda: cl.ARIMA(96, 12, orders=[[1, 0]]), r"\(p, d, q\) triples"),
])
def test_bad_settings_fail_with_the_fix(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_multiplicative_models_refuse_non_positive_training_data_unless_shifted():
    series = seasonal_series(400, channels=2, noise=0.1, level=0.0)  # standardised-like: half negative
    model = cl.HoltWinters(96, 24, periods=[24], seasonal="mul", **QUIET)
    with pytest.raises(ConfigError, match=r"needs positive data, but channel\(s\) \[0, 1\].*model.positive_shift=true"):
        model.fit_training(torch.from_numpy(series[:300]), freq="h", scaler=Scaler(2))
    shifted = cl.HoltWinters(96, 24, periods=[24], seasonal="mul", positive_shift=True, **QUIET)
    shifted.fit_training(torch.from_numpy(series[:300]), freq="h", scaler=Scaler(2))
    np.testing.assert_allclose(shifted.shift, 1.0 - series[:300].min(axis=0))  # the training minimum lands on one std
    x, _ = windows(series, 96, 24, [200])
    assert torch.isfinite(shifted(x)).all() and shifted.diagnostics()["fallbacks"] == 0


def test_periods_follow_the_frequency_and_the_look_back():
    assert [default_periods(f) for f in ("h", "15min", "D", "W-TUE", "MS", "YE")] == [[24, 168], [96, 672], [7], [52], [12], []]
    train = torch.from_numpy(seasonal_series(800, channels=1))
    for seq_len, expected in ((720, [24, 168]), (337, [24, 168]), (336, [24])):
        model = cl.MSTL(seq_len, 24, **QUIET)
        model.fit_training(train, freq="h")
        assert model.periods == expected  # statsmodels' MSTL keeps a period only below half the series
    with pytest.raises(ConfigError, match=r"frequency 'YE' has no seasonal period. Fix: set model.periods"):
        cl.SeasonalNaive(96, 24).fit_training(train, freq="YE")
    with pytest.raises(ConfigError, match="no seasonal period"):
        cl.SeasonalNaive(96, 24)(torch.zeros(1, 96, 1))


def test_training_decomposition_sums_back_to_the_series_in_the_data_units():
    series = seasonal_series(600, channels=3, noise=0.1)
    scaler = Scaler(3)
    scaler.mean, scaler.std = np.array([1.0, -2.0, 5.0]), np.array([2.0, 0.5, 3.0])
    for model in (cl.SeasonalNaive(96, 24), cl.STL(96, 24, **QUIET), cl.MSTL(400, 24, periods=[24, 168], **QUIET)):
        model.fit_training(torch.from_numpy(series), freq="h", scaler=scaler)
        parts = model.training_decomposition([0, 2])
        units = series[:, [0, 2]] * scaler.std[[0, 2]] + scaler.mean[[0, 2]]
        np.testing.assert_allclose(parts["observed"], units, rtol=0, atol=1e-9)
        total = sum(v for k, v in parts.items() if k != "observed")
        defined = np.isfinite(total).all(axis=1)
        assert defined.sum() >= 600 - 24
        np.testing.assert_allclose(total[defined], units[defined], rtol=0, atol=1e-8)


# ------------------------------------------------------------------ the pipeline and the entry point


def test_seasonal_naive_through_the_pipeline_scores_the_closed_form(make_config, write_csv):
    from forecast.pipelines.train import run
    from tests.helpers import sinusoid_frame

    frame = sinusoid_frame(n=600, channels=2, noise=0.5)
    path = write_csv(frame)
    cfg = make_config("data=csv", f"data.path={path}", "model=seasonalnaive", "data.seq_len=48", "data.pred_len=12",
                      "logger=none", "trainer.enable_progress_bar=false")
    metrics = run(cfg)
    values = frame[["ch0", "OT"]].to_numpy()
    scaled = (values - values[:420].mean(0)) / values[:420].std(0)
    starts = range(480 - 48, 600 - 48 - 12 + 1)  # test border 480 (70/10/20 of 600)
    errors = np.stack([scaled[s + 48 : s + 60] - scaled[s + 24 : s + 36] for s in starts])  # period 24 from the inferred 'h'
    assert metrics["test/mse"] == pytest.approx(np.mean(errors**2), rel=1e-5)
    assert metrics["test/series"] == 2 * len(starts) and metrics["test/fallbacks"] == 0


def test_fallbacks_are_counted_in_the_run_metrics(make_config, write_csv):
    from forecast.pipelines.train import run
    from tests.helpers import sinusoid_frame

    frame = sinusoid_frame(n=600, channels=2, noise=0.3)  # around 10: positive
    frame.loc[560:, "OT"] -= 30.0  # the end of the test period drops below zero
    path = write_csv(frame)
    cfg = make_config("data=csv", f"data.path={path}", "model=classicaldecomposition", "model.model=multiplicative",
                      "data.seq_len=48", "data.pred_len=12", "model.workers=1", "model.progress=false", "logger=none",
                      "trainer.enable_progress_bar=false")
    metrics = run(cfg)
    values = frame[["ch0", "OT"]].to_numpy()
    starts = range(480 - 48, 600 - 48 - 12 + 1)
    # a window falls back when its look-back holds a value that is not positive (in the data's units)
    expected = sum(bool((values[s : s + 48, c] <= 0).any()) for s in starts for c in range(2))
    assert expected > 0 and metrics["test/fallbacks"] == expected
    assert metrics["test/series"] == 2 * len(starts) and metrics["test/warnings"] == 0  # vectorised: no statsmodels call


def test_a_bad_model_setting_fails_before_anything_is_logged(make_config):
    from forecast.pipelines.train import build_module

    cfg = make_config("model=seasonalnaive", "data.seq_len=12", "model.periods=[24]")
    with pytest.raises(ConfigError, match="data.seq_len>=24"):  # the network's own error, not Hydra's wrapper
        build_module(cfg, None)


def test_every_classical_model_runs_through_train_py_with_the_metric_keys_of_dlinear(tmp_path):
    """One Hydra sweep over every model (and DLinear) on a tiny file: two test windows each."""
    from mlflow import MlflowClient

    from tests.helpers import sinusoid_frame

    sinusoid_frame(n=500, channels=2, noise=0.3).to_csv(tmp_path / "tiny.csv", index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", f"model=dlinear,{','.join(CLASSICAL)}", "data=csv", "data.path=tiny.csv",
         "data.seq_len=72", "data.pred_len=12", "data.eval_batch_size=2", "trainer=debug", "trainer.limit_test_batches=1",
         "num_threads=1", "trainer.enable_progress_bar=false", "plot_windows=1", "hydra.sweep.dir=sweep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = {r.data.tags["model"]: r for r in client.search_runs([client.get_experiment_by_name("tiny-debug").experiment_id])
            if r.data.tags.get("kind") != "sweep"}  # the sweep's parent run
    assert set(runs) == {"dlinear", *CLASSICAL}
    deep = {k for k in runs["dlinear"].data.metrics if k.startswith("test/")}
    assert {"test/mse", "test/mae", "test/mae_orig", "test/mase_orig"} <= deep
    for name in CLASSICAL:
        r = runs[name]
        assert r.info.status == "FINISHED"
        assert {k for k in r.data.metrics if k.startswith("test/")} == deep | DIAGNOSTICS, name
        assert not [k for k in r.data.metrics if k.startswith(("train/", "val/"))], name  # only tested
        assert r.data.metrics["test/series"] == 2 * 2 and r.data.metrics["test/fallbacks"] == 0, name
        assert (r.data.tags["refit"] != "none") == (name not in ("naive", "seasonalnaive", "drift")), name
        plots = {a.path for a in client.list_artifacts(r.info.run_id, "plots")}
        assert plots == {"plots/forecast.png", "plots/decomposition.png"}, name


# ------------------------------------------------------------------ registered models keep loading


@pytest.mark.parametrize("name", ["seasonalnaive", "holtwinters"])
def test_a_model_pickled_by_an_earlier_release_loads_and_forecasts_identically(name):
    """A served classical model is the pickled network object (``forecast.serving.write_artifacts``);
    these were pickled before ``forecast/models/classical`` was split into one file per model
    (``tests/fixtures/classical/make.py``), so they name the classes by the package path."""
    from forecast.serving import load_network

    fixtures = REPO / "tests" / "fixtures" / "classical"
    network = load_network(str(fixtures / f"{name}.pt"), cfg=None)
    saved = np.load(fixtures / "forecasts.npz")
    with torch.no_grad():
        out = network(torch.from_numpy(saved["x"])).numpy()
    np.testing.assert_array_equal(out, saved[name])
    assert (network.workers, network.progress) == (1, False)


# ------------------------------------------------------------------ horizon objective, seasonal ARIMA


def test_horizon_objective_beats_the_one_step_fit_on_the_error_it_minimises_and_on_later_windows():
    """A slowly drifting level under a strong season and heavy noise: the one-step fit lets the
    level chase the noise (large α); parameters chosen for the 48-step error of training windows
    forecast those windows, and windows after the training split, better."""
    rng = np.random.default_rng(5)
    t = np.arange(3000)
    series = (3 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.02, t.size)) + rng.normal(0, 1.0, t.size))[:, None]
    train, later = series[:2000], series[2000:]
    one_step = cl.HoltWinters(96, 48, periods=[24], refit="once", objective="one_step", **QUIET)
    horizon = cl.HoltWinters(96, 48, periods=[24], refit="once", objective="horizon", **QUIET)
    for model in (one_step, horizon):
        model.fit_training(torch.from_numpy(train), freq="h", scaler=Scaler(1))
    assert horizon.params[0, 0] < one_step.params[0, 0]  # a calmer level
    x_train, y_train = cl.horizon.training_windows(torch.from_numpy(train.T.copy()), 96, 48, 256)
    x_later, y_later = windows(later, 96, 48, range(0, 850, 10))

    def error(model, x, y):
        return float(((model(x) - y) ** 2).mean())

    fit_x, fit_y = x_train[0][:, :, None], y_train[0][:, :, None]
    assert error(horizon, fit_x, fit_y) < error(one_step, fit_x, fit_y)
    assert error(horizon, x_later, y_later) < error(one_step, x_later, y_later)


def test_horizon_objective_keeps_given_parameters_and_needs_refit_once():
    series = seasonal_series(800, channels=2, noise=0.3)
    model = cl.HoltWinters(96, 24, periods=[24], refit="once", objective="horizon", smoothing_seasonal=0.05, **QUIET)
    model.fit_training(torch.from_numpy(series), freq="h", scaler=Scaler(2))
    assert torch.all(model.params[:, 2] == 0.05) and torch.all((model.params[:, 3] >= 0.8) & (model.params[:, 3] <= 0.995))
    with pytest.raises(ConfigError, match="objective=horizon .* Fix: model.refit=once"):
        cl.HoltWinters(96, 24, refit="window", objective="horizon", **QUIET)
    with pytest.raises(ConfigError, match="objective"):
        cl.ETS(96, 24, objective="two_step", **QUIET)


def test_seasonal_arima_refit_once_filters_windows_as_statsmodels():
    series = seasonal_series(700, channels=1, noise=0.3, seed=11)
    train, test = series[:500], series[500:]
    model = cl.ARIMA(96, 24, periods=[24], orders=[[1, 0, 0]], seasonal_order=[0, 1, 1], refit="once", **QUIET)
    model.fit_training(torch.from_numpy(train), freq="h", scaler=Scaler(1))
    x, _ = windows(test, 96, 24, [0, 50])
    out = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = SmARIMA(train[:, 0], order=(1, 0, 0), seasonal_order=(0, 1, 1, 24), trend="n").fit()
        for b in range(2):
            expected = SmARIMA(x[b, :, 0].numpy(), order=(1, 0, 0), seasonal_order=(0, 1, 1, 24), trend="n") \
                .smooth(fitted.params).forecast(24)
            np.testing.assert_allclose(out[b, :, 0].numpy(), expected, rtol=0, atol=1e-6)
    assert model.diagnostics()["fallbacks"] == 0
