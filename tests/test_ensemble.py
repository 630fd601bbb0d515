"""Ensembles: the weights by hand, top_k, no leakage, conformal coverage, the served
:class:`forecast.ensemble.EnsembleModel` against its members' own served forecasts, the backtest
CLI's ensemble rows and the refused settings.

Members are cheap classical models (seasonal naive, drift) fitted on a small synthetic hourly
series and logged to a temporary SQLite MLflow store; the math is tested on hand-made arrays.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecast import api, ensemble, intervals
from forecast.errors import ConfigError
from forecast.pipelines import backtest as bt
from forecast.pipelines.predict import load_model
from tests.helpers import sinusoid_frame

N, H = 600, 12


# ------------------------------------------------------------------ weights by hand
def test_inverse_error_weights_by_hand():
    actual = np.zeros((5, 3, 2))
    # member errors: constant 1, 2 and 0.5 on channel 0; on channel 1 (scale 2) twice as large, so
    # z-scored every member's MSE is its channel-0 one: 1, 4, 0.25
    preds = np.stack([np.broadcast_to([e, 2 * e], (5, 3, 2)) for e in (1.0, 2.0, 0.5)])
    w = ensemble.fit_weights("inverse_error", preds, actual, scale=[1.0, 2.0])
    expected = np.array([1 / 1, 1 / 4, 1 / 0.25]) / (1 + 0.25 + 4)
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    np.testing.assert_allclose(ensemble.selection_mse(preds, actual, [1.0, 2.0]), [1, 4, 0.25], rtol=1e-12)
    # unscaled, channel 1 counts four times as much: MSEs (1+4)/2, (4+16)/2, (0.25+1)/2
    w = ensemble.fit_weights("inverse_error", preds, actual)
    np.testing.assert_allclose(w, np.array([1 / 2.5, 1 / 10, 1 / 0.625]) / (1 / 2.5 + 1 / 10 + 1 / 0.625), rtol=1e-12)


def test_stacking_recovers_the_mixing_weights_and_stays_on_the_simplex():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 200, 4, 1))
    y = 0.3 * a + 0.7 * b                                      # c is useless
    w = ensemble.fit_weights("stacking", np.stack([a, b, c]), y)
    np.testing.assert_allclose(w, [0.3, 0.7, 0.0], atol=1e-6)
    # unconstrained least squares would give b a negative weight (y = 1.5a − 0.5b): on the simplex,
    # b gets 0 and a all the weight, which minimises the error over w ≥ 0, Σw = 1
    w = ensemble.fit_weights("stacking", np.stack([a, b]), 1.5 * a - 0.5 * b)
    np.testing.assert_allclose(w, [1.0, 0.0], atol=1e-6)
    assert (w >= 0).all() and w.sum() == pytest.approx(1, abs=1e-12)


def test_top_k_picks_the_members_with_the_lowest_validation_error():
    actual = np.zeros((4, 2, 1))
    errors = [3.0, 0.5, 2.0, 1.0]                              # the best two: members 1 and 3
    preds = np.stack([np.full((4, 2, 1), e) for e in errors])
    for method in ("mean", "median", "inverse_error"):
        w = ensemble.fit_weights(method, preds, actual, top_k=2)
        assert set(np.flatnonzero(w)) == {1, 3}, method
    np.testing.assert_allclose(ensemble.fit_weights("mean", preds, actual, top_k=2), [0, 0.5, 0, 0.5])
    # the median of the chosen two, not of all four (which would be 1.5)
    w = ensemble.fit_weights("median", preds, actual, top_k=2)
    assert ensemble.combine(preds, w, "median")[0, 0, 0] == pytest.approx(0.75)
    np.testing.assert_allclose(ensemble.combine(preds, ensemble.fit_weights("median", preds, actual), "median"), 1.5)


# ------------------------------------------------------------------ the backtest's ensemble
def member(label: str, pred, val_pred, val_actual, std=None) -> bt.ModelResult:
    w, _, c = np.shape(pred)
    std = np.ones((w, c)) if std is None else std
    return bt.ModelResult(label, np.asarray(pred, float), std, np.ones((w, c)), None, 1, 0, 0.0,
                          validation=[(np.asarray(v, float), np.asarray(a, float)) for v, a in zip(val_pred, val_actual)])


def plan_of(groups: list[list[int]]) -> SimpleNamespace:
    return SimpleNamespace(groups=groups, dates=pd.date_range("2024-01-01", periods=1000, freq="h"))


def test_weights_never_see_the_windows_they_are_scored_on():
    """Member ``a`` is good on each refit's validation windows and bad on the scored windows, ``b``
    the opposite: weights fitted on the scored windows would favour ``b``; the ensemble's favour
    ``a``, as its validation errors say, and each refit group has its own (from its own
    validation windows)."""
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(4, H, 1))                         # 4 cutoffs, refit every 2
    val_truth = [rng.normal(size=(30, H, 1)) for _ in range(2)]
    a_val = [val_truth[0] + 0.1, val_truth[1] + 0.5]           # validation errors 0.1 then 0.5
    b_val = [val_truth[0] + 1.0, val_truth[1] + 1.0]
    a = member("a", truth + 3.0, a_val, val_truth)             # scored windows: a far off, b nearly right
    b = member("b", truth + 0.01, b_val, val_truth)
    result = bt.ensemble_result(plan_of([[100, 112], [124, 136]]), [a, b], {"method": "inverse_error", "top_k": None}, {})
    for g, err_a in enumerate((0.1, 0.5)):
        expected = np.array([1 / err_a**2, 1.0]) / (1 / err_a**2 + 1.0)
        np.testing.assert_allclose(list(result.weights[g]["weights"].values()), expected, atol=1e-6)
        span = slice(2 * g, 2 * g + 2)
        np.testing.assert_allclose(result.pred[span], expected[0] * a.pred[span] + expected[1] * b.pred[span], atol=1e-9)
    # what leakage would have given: weights from the scored windows' errors (3.0 and 0.01) favour b
    leaked = ensemble.fit_weights("inverse_error", np.stack([a.pred, b.pred]), truth)
    assert leaked[1] > 0.99 and result.weights[0]["weights"]["a"] > 0.99
    # top_k=1 keeps a (validation), although b is the better one on the scored windows
    only = bt.ensemble_result(plan_of([[100, 112], [124, 136]]), [a, b], {"method": "mean", "top_k": 1}, {})
    np.testing.assert_allclose(only.pred, a.pred)


def test_ensemble_intervals_cover_nominal_on_exchangeable_data():
    """I.i.d. noise around a known signal: the members forecast the signal with errors of their
    own; the ensemble's 90 % band, conformal on its own validation errors (400 windows), covers
    90 % ± 3 points of 800 fresh windows (and the 80 % band 80 % ± 3)."""
    rng = np.random.default_rng(2)
    nv, nt, h = 400, 800, 4
    signal_v, signal_t = np.sin(np.arange(nv * h)).reshape(nv, h, 1), np.cos(np.arange(nt * h)).reshape(nt, h, 1)
    actual_v, actual_t = signal_v + rng.normal(size=signal_v.shape), signal_t + rng.normal(size=signal_t.shape)
    members = []
    for i, (bias, spread) in enumerate(((0.3, 0.5), (-0.2, 0.8), (0.0, 1.2))):
        members.append(member(f"m{i}", signal_t + bias + spread * rng.normal(size=signal_t.shape),
                              [signal_v + bias + spread * rng.normal(size=signal_v.shape)], [actual_v]))
    interval = {"method": "conformal_error", "levels": [80, 90], "calibration": "val"}
    plan = plan_of([list(range(nt))])
    for method in ("mean", "inverse_error", "median"):
        result = bt.ensemble_result(plan, members, {"method": method, "top_k": None}, interval)
        for level in (80, 90):
            lo, hi = result.bands[level]
            covered = float(((actual_t >= lo) & (actual_t <= hi)).mean())
            assert abs(covered - level / 100) <= 0.03, (method, level, covered)
        # the ensemble's own errors, not a member's: its band is narrower than the worst member's
        worst = intervals.calibrate(members[2].validation[0][0], actual_v, "conformal_error", [90])
        assert np.mean(result.bands[90][1] - result.bands[90][0]) < np.mean(2 * worst.offsets(90)[1])


# ------------------------------------------------------------------ the served ensemble
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two members logged to a SQLite store: seasonal naive (look-back 48) and drift (24)."""
    tmp = tmp_path_factory.mktemp("ensemble")
    frame = sinusoid_frame(n=N, channels=2, period=24, noise=0.3)
    path = tmp / "syn.csv"
    frame.to_csv(path, index=False)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    common = ["data=csv", f"data.path={path}", f"data.pred_len={H}", "num_threads=1", f"logger.tracking_uri={uri}",
              "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        for model, seq in (("seasonalnaive", 48), ("drift", 24)):
            api.train(f"model={model}", f"data.seq_len={seq}", f"hydra.run.dir={tmp / model}", *common)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("syn").experiment_id], "tags.model_uri != ''")
    uris = {r.data.tags["model"]: r.data.tags["model_uri"] for r in runs}
    return SimpleNamespace(uri=uri, frame=frame, tmp=tmp, members=[uris["seasonalnaive"], uris["drift"]])


def logged(store, method, weights=None, calibration=None) -> str:
    import mlflow

    mlflow.set_tracking_uri(store.uri)
    mlflow.set_experiment("ensembles")
    with mlflow.start_run():
        return ensemble.log_ensemble(store.members, method, weights, calibration).model_uri


def test_served_ensemble_is_the_mean_median_and_weighted_mean_of_its_members(store):
    history = store.frame.iloc[:500].copy()
    history["date"] = history["date"].dt.strftime("%Y-%m-%d %H:%M:%S")
    served = [load_model(u, store.uri)[0].predict(history) for u in store.members]
    outputs = ["ch0", "OT"]
    points = np.stack([s[outputs].to_numpy() for s in served])
    assert not np.allclose(points[0], points[1])               # the members differ: the test can tell
    cases = {"mean": (None, points.mean(axis=0)), "median": (None, np.median(points, axis=0)),
             "inverse_error": ([0.3, 0.7], 0.3 * points[0] + 0.7 * points[1])}
    rng = np.random.default_rng(3)
    calibration = intervals.calibrate(rng.normal(size=(50, H, 2)), rng.normal(size=(50, H, 2)), "conformal_error", [80])
    for method, (weights, expected) in cases.items():
        pyfunc, impl = load_model(logged(store, method, weights, calibration if method == "mean" else None), store.uri)
        assert isinstance(impl, ensemble.EnsembleModel)
        out = pyfunc.predict(history)
        np.testing.assert_allclose(out[outputs].to_numpy(), expected, atol=1e-6, rtol=0)
        assert (out["date"] == served[0]["date"]).all()
        if method == "mean":  # a member's columns, then the ensemble's own bands
            assert list(out.columns) == ["date", *outputs, "ch0-lo-80", "ch0-hi-80", "OT-lo-80", "OT-hi-80"]
            down, up = calibration.offsets(80)
            np.testing.assert_allclose(out["OT-hi-80"], expected[:, 1] + up[:, 1], atol=1e-5)
        else:
            assert list(out.columns) == ["date", *outputs]
    # the same input contract as a member's, by the same path: the same message for a bad request
    bad = history.assign(extra=1.0)
    messages = []
    for model_uri in (store.members[0], logged(store, "mean")):
        with pytest.raises(Exception) as caught:
            load_model(model_uri, store.uri)[0].predict(bad)
        messages.append(str(caught.value))
    assert "extra" in messages[0] and messages[0] == messages[1]


def test_log_ensemble_refuses_bad_weights(store):
    with pytest.raises(ConfigError, match="needs the weights"):
        logged(store, "stacking")
    with pytest.raises(ConfigError, match="summing to 1"):
        logged(store, "inverse_error", [0.5, 0.6])
    with pytest.raises(ConfigError, match="not one of"):
        logged(store, "vote")


# ------------------------------------------------------------------ the backtest
def series_args(store, *more) -> list[str]:
    path = store.tmp / "syn.csv"
    models = [] if any(m.startswith("models=") for m in more) else ["models=[seasonalnaive,drift]"]
    return [*models, "data=csv", f"data.path={path}", "data.seq_len=48", f"data.pred_len={H}",
            "num_threads=1", "backtest.windows=3", "trainer.enable_progress_bar=false", *more]


def test_backtest_adds_the_ensemble_as_one_more_model(store, tmp_path, monkeypatch):
    """``python backtest.py models=[seasonalnaive,drift] ensemble.method=mean`` (through the API:
    the same program, without a second interpreter's start-up)."""
    monkeypatch.chdir(tmp_path)
    out, db = tmp_path / "run", f"sqlite:///{tmp_path / 'bt.db'}"
    api.backtest(*series_args(store, "ensemble.method=mean", f"logger.tracking_uri={db}", f"hydra.run.dir={out}"))
    table = pd.read_parquet(out / "backtest.parquet")
    for column in ("ensemble_mean", "ensemble_mean-lo-80", "ensemble_mean-hi-95"):
        assert column in table.columns
    np.testing.assert_allclose(table["ensemble_mean"], (table["seasonalnaive"] + table["drift"]) / 2, atol=1e-9)
    assert (table["ensemble_mean-lo-80"] < table["ensemble_mean"]).all()
    metrics = pd.read_csv(out / "metrics.csv")
    overall = metrics[metrics["level"] == "overall"].set_index("model")
    assert set(overall.index) == {"seasonalnaive", "drift", "ensemble_mean"}
    assert len(metrics[(metrics["model"] == "ensemble_mean") & (metrics["level"] == "cutoff")]) == 3
    assert np.isfinite(overall.loc["ensemble_mean", "coverage_80"])
    # the comparison run holds the weights and the figures with the ensemble in them
    client = MlflowClient(db)
    run = client.search_runs([client.get_experiment_by_name("syn").experiment_id], "tags.kind = 'backtest-comparison'")[0]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"ensemble.json", "metrics.csv", "backtest.parquet"}
    assert run.data.metrics["ensemble_mean/backtest/mse"] == pytest.approx(overall.loc["ensemble_mean", "mse"])

    # resumed with another method: the members are read back, nothing is refitted
    again = api.backtest(*series_args(store, "ensemble.method=median", "resume=true", f"logger.tracking_uri={db}",
                                      f"hydra.run.dir={tmp_path / 'again'}"))
    assert again.attrs["refits"]["seasonalnaive"] == {"trained": 0, "resumed": 1}
    np.testing.assert_allclose(again["ensemble_median"], (table["seasonalnaive"] + table["drift"]) / 2, atol=1e-9)


@pytest.mark.parametrize("overrides,match", [
    (["ensemble.method=vote"], r"ensemble.method='vote' is not one of"),
    (["ensemble.method=mean", "ensemble.top_k=3"], r"ensemble.top_k=3: .* of its 2 members .* from 1 to 2"),
    (["ensemble.method=mean", "ensemble.top_k=0"], r"ensemble.top_k=0"),
    (["ensemble.top_k=1"], r"ensemble.top_k=1 without ensemble.method"),
    (["models=[seasonalnaive]", "ensemble.method=mean"], r"combines several models, this backtest has 1"),
])
def test_bad_ensemble_settings_are_config_errors(store, tmp_path, monkeypatch, overrides, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=match):
        api.backtest(*series_args(store, "logger=none", f"hydra.run.dir={tmp_path}", *overrides))
    assert not (tmp_path / "backtest.parquet").exists()
