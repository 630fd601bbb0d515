"""Metrics equal their textbook definitions, computed here directly with numpy."""

import numpy as np
import torch

from forecast.metrics import ForecastMetrics


def test_metrics_match_direct_computation_and_do_not_depend_on_batching():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(50, 12, 3)), rng.normal(size=(50, 12, 3))
    mean, std, scale = np.array([10.0, -2.0, 0.5]), np.array([2.0, 0.5, 3.0]), np.array([1.5, 0.2, 4.0])
    metric = ForecastMetrics(mean, std, scale, c_out=3)
    for chunk in np.array_split(np.arange(50), 7):  # uneven batches
        metric.update(torch.tensor(pred[chunk], dtype=torch.float32), torch.tensor(target[chunk], dtype=torch.float32))
    got = {k: float(v) for k, v in metric.compute().items()}

    p, t = pred.astype(np.float32).astype(np.float64), target.astype(np.float32).astype(np.float64)
    po, to = p * std + mean, t * std + mean
    expected = {
        "mse": np.mean((p - t) ** 2),
        "mae": np.mean(np.abs(p - t)),
        "mae_orig": np.mean(np.abs(po - to)),
        "rmse_orig": np.sqrt(np.mean((po - to) ** 2)),
        "mase_orig": np.mean(np.abs(po - to) / scale),
        "smape_orig": np.mean(200 * np.abs(po - to) / (np.abs(po) + np.abs(to))),
    }
    for key, value in expected.items():
        assert abs(got[key] - value) < 1e-9 * max(1.0, abs(value)), key


def test_perfect_forecast_scores_zero_and_smape_handles_zeros():
    metric = ForecastMetrics(c_out=1)
    y = torch.tensor([[[0.0], [1.0], [-2.0]]])
    metric.update(y, y)
    assert all(float(v) == 0.0 for v in metric.compute().values())
