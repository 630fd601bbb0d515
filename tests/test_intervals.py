"""forecast.intervals: the finite-sample quantile on hand-worked cases, the interval metrics
against hand-computed values, per-step calibration, coverage on exchangeable data (a
closed-form forecaster, and seasonal naive and DLinear through the train pipeline), ACI under
drift, and bad levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast import intervals
from forecast.errors import ConfigError, DataError
from forecast.intervals import Calibration


# ------------------------------------------------------------------ the finite-sample quantile
def test_rank_is_exact_for_percent_levels():
    # (9 + 1)·0.9 = 9 exactly; a float ceil of 9.000000000000002 would give 10
    assert intervals.rank(9, 0.9) == 9
    assert intervals.rank(99, 0.9) == 90
    assert intervals.rank(9, 0.95) == 10          # ⌈9.5⌉
    assert intervals.rank(100, 0.8) == 81         # ⌈80.8⌉


def test_conformal_error_hand_worked():
    # scores 1..9 at one step and channel: the k-th smallest with k = ⌈10(1-α)⌉
    scores = np.arange(1, 10, dtype=float)[::-1].reshape(9, 1, 1)  # unsorted on purpose
    cal = Calibration("conformal_error", scores, [80, 90])
    for level, expected in ((80, 8.0), (90, 9.0), (50, 5.0)):
        down, up = cal.offsets(level)
        assert down[0, 0] == up[0, 0] == expected
    down, up = cal.offsets(95)  # k = 10 > n = 9: too few scores, an infinite band
    assert np.isinf(up[0, 0])
    lo, hi = cal.bands(np.array([[[100.0]]]), [80])[80]
    assert (lo[0, 0, 0], hi[0, 0, 0]) == (92.0, 108.0)


def test_conformal_quantile_hand_worked():
    # signed errors y - ŷ = 0..8 (the model under-forecasts): the band sits above the forecast
    scores = np.arange(9, dtype=float).reshape(9, 1, 1)
    cal = intervals.calibrate(np.zeros((9, 1, 1)), scores, "conformal_quantile", [80])
    # level 80: α/2 = 0.1 on each side, k = ⌈10·0.9⌉ = 9: up = 9th smallest of e = 8,
    # down = 9th smallest of -e = 0
    down, up = cal.offsets(80)
    assert (down[0, 0], up[0, 0]) == (0.0, 8.0)
    # level 60: k = ⌈10·0.8⌉ = 8: up = 7, down = 8th smallest of (0, -1, …, -8) = -1 (the band
    # lies wholly above the forecast)
    down, up = cal.offsets(60)
    assert (down[0, 0], up[0, 0]) == (-1.0, 7.0)


def test_quantiles_match_the_bands():
    rng = np.random.default_rng(0)
    cal = Calibration("conformal_error", np.abs(rng.standard_normal((200, 3, 2))), [80])
    pred = rng.standard_normal((5, 3, 2))
    lo, hi = cal.bands(pred, [80])[80]
    np.testing.assert_allclose(cal.quantile(pred, 0.9), hi)
    np.testing.assert_allclose(cal.quantile(pred, 0.1), lo)
    np.testing.assert_array_equal(cal.quantile(pred, 0.5), pred)


def test_per_step_calibration_widens_with_the_step():
    # the noise of step h has standard deviation 1 + h: the calibrated width must grow with h
    rng = np.random.default_rng(1)
    h = 8
    actual = rng.standard_normal((1000, h, 2)) * (1 + np.arange(h))[None, :, None]
    cal = intervals.calibrate(np.zeros_like(actual), actual, "conformal_error", [90])
    lo, hi = cal.bands(np.zeros((1, h, 2)), [90])[90]
    width = (hi - lo)[0]
    assert (np.diff(width, axis=0) > 0).all()
    # and about 2·1.645·σ_h: the quantile of each step from its own scores
    np.testing.assert_allclose(width[:, 0], 2 * 1.645 * (1 + np.arange(h)), rtol=0.12)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    cal = Calibration("conformal_quantile", rng.standard_normal((50, 4, 3)), [80, 95], "val")
    back = Calibration.load(cal.save(tmp_path / intervals.FILE))
    assert (back.method, back.levels, back.source, back.n) == ("conformal_quantile", [80, 95], "val", 50)
    pred = rng.standard_normal((2, 4, 3))
    for level in (80, 95, 50):
        for a, b in zip(cal.bands(pred, [level])[level], back.bands(pred, [level])[level]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ metrics
def test_metrics_against_hand_computed_values():
    actual = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    lo = np.array([0.0, 2.5, 2.0, 4.5]).reshape(1, 4, 1)
    hi = np.array([2.0, 3.0, 4.0, 5.0]).reshape(1, 4, 1)
    # inside, 0.5 below, inside, 0.5 below; level 80: 2/α = 10
    m = intervals.interval_metrics(actual, {80: (lo, hi)}, scale=[2.0],
                                   quantiles={0.5: np.ones((1, 4, 1)), 0.9: np.full((1, 4, 1), 2.0)})
    assert m["coverage_80"] == 0.5
    assert m["width_80"] == pytest.approx(1.25)                       # (2 + 0.5 + 2 + 0.5) / 4
    assert m["winkler_80"] == pytest.approx(3.75)                     # (2 + 5.5 + 2 + 5.5) / 4
    assert m["msis_80"] == pytest.approx(1.875)                       # 3.75 / 2
    # τ=0.5, q=1: pinball 0, .5, 1, 1.5 → 2·3/10 = 0.6; τ=0.9, q=2: .1, 0, .9, 1.8 → 2·2.8/10 = 0.56
    assert m["wql"] == pytest.approx(0.58)


def test_msis_averages_channels_each_by_its_own_scale():
    actual = np.zeros((1, 1, 2))
    lo, hi = np.full((1, 1, 2), -1.0), np.full((1, 1, 2), 1.0)       # width 2, both covered
    assert intervals.msis(actual, lo, hi, 95, [1.0, 4.0]) == pytest.approx((2 / 1 + 2 / 4) / 2)


# ------------------------------------------------------------------ levels
@pytest.mark.parametrize("bad", [0, 100, 150, -5, 80.5, "high", None, True, float("nan")])
def test_bad_levels_are_clear_errors(bad):
    with pytest.raises(ConfigError, match="Fix"):
        intervals.check_levels([80, bad])


def test_levels_are_sorted_unique_integers():
    assert intervals.check_levels([95, "80", 80.0, 95]) == [80, 95]
    assert intervals.check_settings({"method": None, "levels": [80]}) == {}
    with pytest.raises(ConfigError, match="intervals.method"):
        intervals.check_settings({"method": "bootstrap", "levels": [80]})
    with pytest.raises(ConfigError, match="intervals.calibration"):
        intervals.check_settings({"method": "conformal_error", "levels": [80], "calibration": "test"})


# ------------------------------------------------------------------ coverage on exchangeable data
def test_closed_form_forecaster_covers_nominal_on_2000_fresh_windows():
    # a known signal plus i.i.d. noise, forecast by the signal itself: the errors are exchangeable
    rng = np.random.default_rng(3)
    h, c = 12, 2
    calib = rng.standard_normal((1000, h, c))
    fresh = rng.standard_normal((2000, h, c))
    for method in intervals.METHODS:
        cal = intervals.calibrate(np.zeros_like(calib), calib, method, [90])
        m = intervals.evaluate(cal, np.zeros_like(fresh), fresh, scale=np.ones(c), levels=[90])
        assert abs(m["coverage_90"] - 0.90) <= 0.02, (method, m["coverage_90"])


def _exchangeable_csv(tmp_path, rows: int = 4500) -> str:
    # a 24-periodic signal plus i.i.d. noise; splits 30/25/45 %: 1,102 validation windows,
    # 2,002 test windows of 24 steps
    import pandas as pd

    rng = np.random.default_rng(4)
    t = np.arange(rows)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=rows, freq="h"),
                          "OT": 10 + 2 * np.sin(2 * np.pi * t / 24) + rng.standard_normal(rows)})
    path = tmp_path / "iid.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("model", ["seasonalnaive", "dlinear"])
def test_pipeline_intervals_cover_nominal_on_fresh_windows(make_config, tmp_path, model):
    from forecast.pipelines import train

    path = _exchangeable_csv(tmp_path)
    cfg = make_config("data=csv", f"data.path={path}", "data.features=S", "data.seq_len=48", "data.pred_len=24",
                      "data.split_sizes=[0.3,0.25,0.45]", f"model={model}", "trainer.max_epochs=1", "logger=none",
                      "intervals.levels=[90]", "plot_windows=1", "trainer.enable_progress_bar=false",
                      "trainer.enable_model_summary=false")
    metrics = train.run(cfg)
    assert metrics["test/windows"] >= 2000 and metrics["test/calibration_windows"] >= 1000
    assert abs(metrics["test/coverage_90"] - 0.90) <= 0.02, metrics["test/coverage_90"]
    # the band is about 2·1.645·σ of the forecast error: σ = 1 for DLinear near the signal,
    # √2 for seasonal naive (a difference of two noises)
    assert 0 < metrics["test/width_90"] < 2 * 1.645 * 1.6


# ------------------------------------------------------------------ adaptive conformal inference
def test_aci_recovers_coverage_when_the_noise_doubles():
    rng = np.random.default_rng(5)
    calibration = np.abs(rng.standard_normal(2000))                         # noise σ = 1
    stream = np.abs(np.concatenate([rng.standard_normal(2000), 2 * rng.standard_normal(2000)]))
    alphas = intervals.adaptive_alphas(stream, calibration, alpha=0.1, gamma=0.01)
    ordered = np.sort(calibration)
    adaptive = np.array([s <= intervals.adaptive_bound(ordered, a) for s, a in zip(stream, alphas)])
    static = stream <= intervals.adaptive_bound(ordered, 0.1)
    second = slice(2000, None)
    assert abs(adaptive[second].mean() - 0.90) <= 0.03, adaptive[second].mean()
    assert static[second].mean() < 0.87, static[second].mean()


def test_adapt_alphas_widens_after_misses_and_narrows_after_easy_windows():
    rng = np.random.default_rng(6)
    h = 24
    cal = intervals.calibrate(np.zeros((2000, h, 1)), rng.standard_normal((2000, h, 1)), "conformal_error", [90])
    loud = 2 * rng.standard_normal((20, h, 1))
    quiet = 0.3 * rng.standard_normal((20, h, 1))
    wider = intervals.adapt_alphas(cal, np.zeros_like(loud), loud, [90], gamma=0.05)[90]
    narrower = intervals.adapt_alphas(cal, np.zeros_like(quiet), quiet, [90], gamma=0.05)[90]
    assert wider < 0.1 < narrower
    nominal = cal.bands(np.zeros((h, 1)), [90])[90][1]
    adapted = cal.bands(np.zeros((h, 1)), [90], {90: wider})[90][1]
    assert (adapted >= nominal).all() and (adapted > nominal).any()
    with pytest.raises(ConfigError, match="aci.gamma"):
        intervals.adapt_alphas(cal, np.zeros_like(loud), loud, [90], gamma=0)


# ------------------------------------------------------------------ the backtest
def test_backtest_bands_use_only_rows_before_each_refits_cutoff(tmp_path, monkeypatch):
    """Each refit calibrates on its own validation windows: changing every row from the first
    cutoff on leaves the first refit's bands as they were and changes the second's (whose
    validation windows lie after that row), so the check can fail."""
    from forecast import api
    from tests.helpers import sinusoid_frame

    monkeypatch.chdir(tmp_path)
    frame = sinusoid_frame(n=800, channels=2, period=24, noise=0.3)
    path = tmp_path / "syn.csv"
    frame.to_csv(path, index=False)
    common = ["data=csv", "data.seq_len=48", "data.pred_len=12", "model=seasonalnaive", "logger=none", "num_threads=1",
              "trainer.enable_progress_bar=false"]
    settings = {"windows": 4, "refit": 2, "step": 24, "start": 600}
    clean = api.backtest(*common, f"data.path={path}", **settings)
    changed = frame.copy()
    changed.loc[600:, ["ch0", "OT"]] += np.random.default_rng(7).normal(0, 3, (200, 2))
    other = tmp_path / "changed.csv"
    changed.to_csv(other, index=False)
    dirty = api.backtest(*common, f"data.path={other}", **settings)

    names = ["seasonalnaive-lo-80", "seasonalnaive-hi-80", "seasonalnaive-lo-95", "seasonalnaive-hi-95"]
    assert set(names) <= set(clean.columns)
    assert (clean["seasonalnaive-lo-95"] <= clean["seasonalnaive-lo-80"]).all()
    assert (clean["seasonalnaive-hi-80"] <= clean["seasonalnaive-hi-95"]).all()
    cutoffs = sorted(clean["cutoff"].unique())
    first = clean["cutoff"].isin(cutoffs[:2])
    width = {k: (t["seasonalnaive-hi-80"] - t["seasonalnaive"]).to_numpy() for k, t in (("clean", clean), ("dirty", dirty))}
    np.testing.assert_allclose(width["clean"][first.to_numpy()], width["dirty"][first.to_numpy()], rtol=1e-12)
    assert not np.allclose(width["clean"][~first.to_numpy()], width["dirty"][~first.to_numpy()])
    steps = clean.attrs["metrics"].query("level == 'step'")
    assert len(steps) == 12 and steps["coverage_80"].between(0, 1).all() and (steps["width_95"] > steps["width_80"]).all()


# ------------------------------------------------------------------ calibration on backtest cutoffs
def _backtest_calibrated(make_config, path, model="seasonalnaive", *extra):
    from forecast.pipelines import train

    cfg = make_config("data=csv", f"data.path={path}", "data.features=S", "data.seq_len=48", "data.pred_len=24",
                      "data.split_sizes=[0.3,0.25,0.45]", f"model={model}", "trainer.max_epochs=1", "logger=none",
                      "intervals.levels=[90]", "intervals.calibration=backtest", "intervals.windows=500",
                      "plot_windows=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", *extra)
    return train.run(cfg)


def test_backtest_calibration_covers_nominal_and_reads_only_rows_before_the_test_split(make_config, tmp_path):
    import pandas as pd

    path = _exchangeable_csv(tmp_path)
    metrics = _backtest_calibrated(make_config, path)
    assert metrics["test/calibration_windows"] == 500 and metrics["test/windows"] >= 2000
    assert abs(metrics["test/coverage_90"] - 0.90) <= 0.03, metrics["test/coverage_90"]
    frame = pd.read_csv(path)
    border = 4500 - int(round(4500 * 0.45))  # the test split's first forecast row (splits 30/25/45 %)
    later = frame.copy()
    noise = np.random.default_rng(8).normal(0, 5, len(later) - border - 48)
    later.loc[border + 48:, "OT"] += noise   # rows only test windows forecast: the calibration must not change
    later.to_csv(tmp_path / "later.csv", index=False)
    same = _backtest_calibrated(make_config, tmp_path / "later.csv")
    assert same["test/calibration_mae_orig"] == metrics["test/calibration_mae_orig"]
    assert same["test/coverage_90"] < 0.6   # the test forecasts did see the change
    earlier = frame.copy()
    earlier.loc[border - 100 : border - 1, "OT"] += 5.0  # inside the calibration windows: it must change
    earlier.to_csv(tmp_path / "earlier.csv", index=False)
    moved = _backtest_calibrated(make_config, tmp_path / "earlier.csv")
    assert moved["test/calibration_mae_orig"] > metrics["test/calibration_mae_orig"] + 0.1


def test_backtest_calibration_retrains_a_deep_model_and_refuses_what_it_cannot_do(make_config, tmp_path):
    from forecast import api

    path = _exchangeable_csv(tmp_path)
    metrics = _backtest_calibrated(make_config, path, "dlinear", "intervals.windows=100", "intervals.step=5")
    assert metrics["test/calibration_windows"] == 100 and 0.8 <= metrics["test/coverage_90"] <= 0.97
    with pytest.raises(DataError, match="intervals.calibration=backtest: .*intervals.windows"):
        _backtest_calibrated(make_config, path, "seasonalnaive", "intervals.windows=3000")
    with pytest.raises(ConfigError, match="train=false.*Fix: intervals.calibration=val"):
        _backtest_calibrated(make_config, path, "dlinear", "train=false", "ckpt_path=none.ckpt")
    with pytest.raises(ConfigError, match="intervals.calibration=backtest in a backtest"):
        api.backtest("data=csv", f"data.path={path}", "model=seasonalnaive", "logger=none",
                     "intervals.calibration=backtest", windows=2)
    with pytest.raises(ConfigError, match="intervals.windows=0 must be a positive integer"):
        intervals.check_settings({"method": "conformal_error", "levels": [90], "calibration": "backtest", "windows": 0})


# ------------------------------------------------------------------ adapted levels stored with a model
def test_adapted_alphas_are_stored_served_and_continued(make_config, tmp_path):
    """A calibration's stored alphas widen its default bands, survive save/load and an MLflow
    copy of the model (what a retrain registers), and the next adaptation starts from them."""
    import mlflow

    from forecast import serving, tracking
    from forecast.pipelines import train

    rng = np.random.default_rng(9)
    cal = intervals.calibrate(np.zeros((500, 6, 1)), rng.standard_normal((500, 6, 1)), "conformal_error", [80])
    wider = cal.with_alphas({80: 0.05})
    nominal_hi = cal.bands(np.zeros((6, 1)))[80][1]
    assert (wider.bands(np.zeros((6, 1)))[80][1] > nominal_hi).all()
    assert np.allclose(wider.bands(np.zeros((6, 1)), alphas={})[80][1], nominal_hi)   # explicit alphas win
    loaded = Calibration.load(wider.save(tmp_path / "c.npz"))
    assert loaded.alphas == {80: 0.05} and loaded.metadata()["aci_alphas"] == {"80": 0.05}
    quiet = np.zeros((1, 6, 1))  # a window with no miss: α rises from where it was, not from nominal
    assert intervals.adapt_alphas(wider, quiet, quiet, [80], gamma=0.1)[80] == pytest.approx(0.05 + 0.1 * 0.2)

    path = _exchangeable_csv(tmp_path, rows=1200)
    cfg = make_config("data=csv", f"data.path={path}", "data.features=S", "data.seq_len=48", "data.pred_len=24",
                      "model=seasonalnaive", "intervals.levels=[80]", "plot_windows=1",
                      "trainer.enable_progress_bar=false")
    train.run(cfg)
    client = tracking.client(make_config.tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.model = 'seasonalnaive'")
    original = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    stored = original.unwrap_python_model().calibration
    adapted = stored.with_alphas({80: 0.02})
    uri = serving.log_adapted(client, run.info.run_id, adapted)
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["model_uri"] == uri != tags["model_uri_unadapted"] == run.data.tags["model_uri"]
    copy = mlflow.pyfunc.load_model(uri)
    assert copy.metadata.metadata["intervals"]["aci_alphas"] == {"80": 0.02}
    history = pd.read_csv(path).tail(48)
    before, after = original.predict(history), copy.predict(history)
    assert np.allclose(before["OT"], after["OT"])                               # the same network and scaler
    assert ((after["OT-hi-80"] - after["OT"]) > (before["OT-hi-80"] - before["OT"])).all()  # α 0.02 < 0.2: wider
