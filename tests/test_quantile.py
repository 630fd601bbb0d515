"""Quantile training (``module.loss=quantile``) and conformalised quantile regression
(``intervals.method=cqr``): the pinball loss against numpy, non-crossing quantiles after
training, CQR's finite-sample quantile on a hand-worked case, CQR widening an under-covering
model to nominal coverage, the ConfigErrors, and a quantile DLinear trained, logged and served
through the train pipeline with its bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import intervals, quantiles
from forecast.errors import ConfigError, DataError
from forecast.losses import PinballLoss
from forecast.models.dlinear import DLinear


# ------------------------------------------------------------------ the loss
def test_pinball_loss_equals_a_numpy_reference():
    rng = np.random.default_rng(0)
    taus = [0.05, 0.25, 0.5, 0.8, 0.975]
    pred = rng.standard_normal((4, 6, 3, len(taus)))
    target = rng.standard_normal((4, 6, 3))
    reference = np.mean([np.where(target >= pred[..., i], tau * (target - pred[..., i]), (1 - tau) * (pred[..., i] - target))
                         for i, tau in enumerate(taus)])
    got = PinballLoss(taus)(torch.tensor(pred), torch.tensor(target)).item()
    assert got == pytest.approx(reference, rel=1e-6)
    # at the median alone it is half the mean absolute error
    half = PinballLoss([0.5])(torch.tensor(pred[..., 2:3]), torch.tensor(target)).item()
    assert half == pytest.approx(0.5 * np.abs(target - pred[..., 2]).mean(), rel=1e-6)


def test_the_grid_follows_the_levels_and_needs_a_median():
    assert quantiles.level_quantiles([80, 95]) == [0.025, 0.1, 0.5, 0.9, 0.975]
    with pytest.raises(ConfigError, match="median"):
        quantiles.check_grid([0.1, 0.9])
    with pytest.raises(ConfigError, match="strictly between"):
        quantiles.check_grid([0.0, 0.5])
    assert intervals.quantile_pairs([0.025, 0.1, 0.5, 0.9, 0.975]) == {80: (1, 3), 95: (0, 4)}


def test_the_default_grid_holds_the_wql_grid_and_the_levels_quantiles():
    from tests.helpers import compose

    cfg = compose("train", ["module.loss=quantile", "intervals.levels=[80,95]"])
    assert quantiles.trained_grid(cfg) == [0.025, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.975]
    assert quantiles.trained_grid(compose("train", ["module.loss=quantile", "module.quantiles=[0.9,0.5,0.1]"])) == [0.1, 0.5, 0.9]
    assert quantiles.trained_grid(compose("train", [])) is None  # MSE: points only


# ------------------------------------------------------------------ non-crossing
def test_quantile_outputs_do_not_cross_after_training():
    torch.manual_seed(0)
    L, H, C = 32, 8, 3
    grid = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95]
    network = quantiles.QuantileNetwork(DLinear(seq_len=L, pred_len=H, enc_in=C), grid, L, H)
    loss = PinballLoss(grid)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.05)  # large steps: crossing would show
    for _ in range(20):
        x = torch.randn(16, L, C) * 3
        target = torch.randn(16, H, C) * torch.rand(1, 1, C) * 5
        optimizer.zero_grad()
        loss(network.quantiles(x), target).backward()
        optimizer.step()
    with torch.no_grad():
        q = network.quantiles(torch.randn(64, L, C) * 10).numpy()
        point = network(torch.randn(2, L, C)).shape
    assert q.shape == (64, H, C, len(grid)) and point == (2, H, C)
    assert (np.diff(q, axis=-1) >= 0).all()
    median = grid.index(0.5)
    assert (q[..., 0] <= q[..., median]).all() and (q[..., median] <= q[..., -1]).all()
    assert (q[..., -1] - q[..., 0] > 0).mean() > 0.99  # the head learnt a band, not a point


def _trainable():
    from tests.test_models import TRAINABLE

    return TRAINABLE


@pytest.mark.parametrize("name", _trainable())
def test_every_deep_network_trains_quantiles_through_the_wrapper(name):
    # the wrapper works for each network without touching it: the median is its forward, the
    # quantiles are ordered, and the pinball loss reaches the head and the network's parameters
    from tests.test_models import NETWORKS, build, inputs

    grid = [0.1, 0.5, 0.9]
    network = quantiles.QuantileNetwork(build(NETWORKS[name], 48, 12, 3), grid, 48, 12).train()
    x, x_mark, y_mark = inputs(48, 12, 3, batch=4)
    q = network.quantiles(x, x_mark, y_mark)
    assert q.shape == (4, 12, 3, 3)
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    with torch.no_grad():
        network.eval()  # dropout off: both forwards see the same network
        torch.testing.assert_close(network.quantiles(x, x_mark, y_mark)[..., 1], network(x, x_mark, y_mark))
        network.train()
    PinballLoss(grid)(q, torch.randn(4, 12, 3)).backward()
    declared = network.parameters_without_gradient()
    unreached = [n for n, p in network.named_parameters() if p.requires_grad and n not in declared
                 and (p.grad is None or p.grad.abs().max() == 0)]
    assert unreached == []


# ------------------------------------------------------------------ CQR
def test_cqr_finite_sample_quantile_hand_worked():
    # q_lo = -1, q_hi = 1 in every window; y = 1 + e for e = 1..9 (shuffled) gives E = e
    grid = [0.05, 0.1, 0.5, 0.9, 0.95]
    e = np.array([5, 3, 9, 1, 7, 2, 8, 4, 6], dtype=float)
    forecasts = np.tile(np.array([-1.0, -1.0, 0.0, 1.0, 1.0]), (9, 1, 1, 1))  # [9, 1, 1, 5]
    actual = (1 + e).reshape(9, 1, 1)
    cal = intervals.calibrate_quantiles(forecasts, actual, grid, [80, 90])
    assert cal.score_levels == [80, 90]
    # level 80: k = ⌈10·0.8⌉ = 8 → Q = 8, band [-1 - 8, 1 + 8]; level 90: k = 9 → Q = 9
    lo, hi = cal.bands(forecasts[:1], [80])[80]
    assert (lo.item(), hi.item()) == (-9.0, 9.0)
    lo, hi = cal.bands(forecasts[:1], [90])[90]
    assert (lo.item(), hi.item()) == (-10.0, 10.0)
    # a y inside the band scores negative: max(-1 - 0, 0 - 1) = -1
    inside = intervals.calibrate_quantiles(forecasts[:1], np.zeros((1, 1, 1)), grid, [80])
    assert inside.scores[0, 0, 0, 0] == -1.0
    # too few scores for a level: k = ⌈10·0.95⌉ = 10 > 9, an unbounded band
    three = forecasts[..., [0, 2, 4]]
    assert np.isinf(intervals.calibrate_quantiles(three, actual, [0.025, 0.5, 0.975], [95]).offsets(95)[1]).all()


def test_cqr_widens_an_under_covering_model_to_nominal():
    # y ~ N(0, 1) per step and channel; the model's 80 % band is [-0.5, 0.5] (covers ~38 %)
    rng = np.random.default_rng(1)
    grid = [0.1, 0.5, 0.9]
    h, c = 6, 2
    calib, fresh = rng.standard_normal((999, h, c)), rng.standard_normal((3000, h, c))

    def model(n):
        return np.broadcast_to(np.array([-0.5, 0.0, 0.5]), (n, h, c, 3))

    before = intervals.coverage(calib, model(999)[..., 0], model(999)[..., 2])
    cal = intervals.calibrate_quantiles(model(999), calib, grid, [80])
    after = intervals.coverage(calib, *cal.bands(model(999))[80])
    assert before < 0.80 - 0.05
    assert after >= 0.80                       # on the calibration windows: ⌈(n+1)·0.8⌉ of n scores
    fresh_cover = intervals.coverage(fresh, *cal.bands(model(3000))[80])
    assert abs(fresh_cover - 0.80) <= 0.02, fresh_cover
    # and narrows an over-covering one: [-3, 3] covers ~99.7 %; Q is negative
    wide = np.broadcast_to(np.array([-3.0, 0.0, 3.0]), (999, h, c, 3))
    narrowed = intervals.calibrate_quantiles(wide, calib, grid, [80])
    assert (narrowed.offsets(80)[0] < 0).all()
    assert abs(intervals.coverage(fresh, *narrowed.bands(wide[:1].repeat(3000, 0))[80]) - 0.80) <= 0.02


def test_cqr_calibration_round_trips_and_refuses_untrained_levels(tmp_path):
    rng = np.random.default_rng(2)
    grid = [0.025, 0.1, 0.5, 0.9, 0.975]
    forecasts = np.sort(rng.standard_normal((50, 4, 2, 5)), axis=-1)
    cal = intervals.calibrate_quantiles(forecasts, rng.standard_normal((50, 4, 2)), grid, [80, 95])
    back = intervals.Calibration.load(cal.save(tmp_path / intervals.FILE))
    assert isinstance(back, intervals.QuantileCalibration) and back.levels == [80, 95] and back.quantiles == grid
    for level in (80, 95):
        for a, b in zip(cal.bands(forecasts[:3], [level])[level], back.bands(forecasts[:3], [level])[level]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match=r"0\.05 and 0\.95"):
        back.bands(forecasts[:1], [90])
    with pytest.raises(DataError, match="quantile forecasts"):  # point forecasts are refused, not misread
        back.bands(forecasts[:3, ..., 2])
    # the conformalised τ-quantile is the bound of the band of level |2τ − 1|; 0.5 the median
    lo, hi = cal.bands(forecasts[:3], [80])[80]
    np.testing.assert_array_equal(cal.quantile(forecasts[:3], 0.1), lo)
    np.testing.assert_array_equal(cal.quantile(forecasts[:3], 0.9), hi)
    np.testing.assert_array_equal(cal.quantile(forecasts[:3], 0.5), forecasts[:3, ..., 2])


def test_cqr_is_refused_for_a_point_model_and_for_levels_outside_the_grid(make_config):
    from forecast.pipelines import train

    with pytest.raises(ConfigError, match="module.loss=quantile"):
        train.run(make_config("intervals.method=cqr", "logger=none"))
    with pytest.raises(ConfigError, match=r"level 95 needs the quantiles 0\.025 and 0\.975"):
        train.run(make_config("intervals.method=cqr", "module.loss=quantile", "module.quantiles=[0.1,0.5,0.9]",
                              "intervals.levels=[80,95]", "logger=none"))
    with pytest.raises(ConfigError, match="calibration=backtest with intervals.method=cqr"):
        train.run(make_config("intervals.method=cqr", "module.loss=quantile", "intervals.calibration=backtest",
                              "logger=none"))
    with pytest.raises(ConfigError, match="no trainable parameters"):
        train.run(make_config("model=seasonalnaive", "module.loss=quantile", "logger=none"))


# ------------------------------------------------------------------ through the pipeline and the served model
def test_quantile_dlinear_trains_logs_and_serves_cqr_bands(make_config, tmp_path, monkeypatch):
    from forecast.pipelines import train
    from forecast.pipelines.predict import load_model
    from tests.helpers import runs_of, sinusoid_frame

    monkeypatch.chdir(tmp_path)
    frame = sinusoid_frame(n=1200, channels=2, period=24, noise=0.3)
    path = tmp_path / "syn.csv"
    frame.to_csv(path, index=False)
    cfg = make_config("data=csv", f"data.path={path}", "data.seq_len=48", "data.pred_len=12", "model=dlinear",
                      "module.loss=quantile", "intervals.method=cqr", "intervals.levels=[80,95]",
                      "trainer.max_epochs=1", "num_threads=1", "plot_windows=1", "trainer.enable_progress_bar=false",
                      "trainer.enable_model_summary=false")
    metrics = train.run(cfg)
    for key in ("test/mse", "test/mae", "test/loss", "test/coverage_80", "test/width_95", "test/msis_95", "test/wql",
                "test/winkler_80"):
        assert np.isfinite(metrics[key]), key
    assert 0 < metrics["test/width_80"] < metrics["test/width_95"]
    assert metrics["test/coverage_80"] <= metrics["test/coverage_95"]
    # i.i.d. noise around a sinusoid: the CQR bands hold near nominal on the test windows
    assert abs(metrics["test/coverage_80"] - 0.80) <= 0.08 and abs(metrics["test/coverage_95"] - 0.95) <= 0.04

    client, runs = runs_of(make_config.tracking_uri, cfg.logger.experiment_name)
    run_id = runs[0].info.run_id
    model, impl = load_model(f"runs:/{run_id}/model", make_config.tracking_uri)
    assert model.metadata.metadata["intervals"]["method"] == "cqr"
    assert isinstance(impl.network, quantiles.QuantileNetwork)
    history = frame.tail(60).reset_index(drop=True)
    answer = model.predict(history)
    outputs = impl.spec.outputs
    # the served bands are the stored CQR scores' quantiles around the network's own quantiles
    _, q = impl.forecast_with_quantiles(pd.DatetimeIndex(history["date"])[-48:],
                                        history[impl.spec.columns].to_numpy(dtype=np.float64)[-48:])
    grid = impl.calibration.quantiles
    for level, (tau_lo, tau_hi) in ((80, (0.1, 0.9)), (95, (0.025, 0.975))):
        down, up = impl.calibration.offsets(level)
        for j, c in enumerate(outputs):
            lo, hi = answer[f"{c}-lo-{level}"].to_numpy(), answer[f"{c}-hi-{level}"].to_numpy()
            assert (lo <= answer[c]).all() and (answer[c] <= hi).all() and (lo <= hi).all()
            np.testing.assert_allclose(lo, q[:, j, grid.index(tau_lo)] - down[:, j], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(hi, q[:, j, grid.index(tau_hi)] + up[:, j], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(answer[c], q[:, j, grid.index(0.5)], rtol=1e-6, atol=1e-6)
