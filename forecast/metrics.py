"""Forecast accuracy, accumulated over every window, step and channel of a split.

The papers report MSE and MAE on the standardised data; practitioners read errors in the
units of the data. :class:`ForecastMetrics` accumulates both from the same forecasts: sums
are kept in float64 and reduced across processes by summation, so results do not depend on
batch size or on the number of DDP ranks.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

METRIC_NAMES = ("mse", "mae", "mae_orig", "rmse_orig", "mase_orig", "smape_orig")


class ForecastMetrics(Metric):
    """``mse``/``mae`` on the scaled data; ``mae_orig``, ``rmse_orig``, ``mase_orig`` and
    ``smape_orig`` (percent, 0-200) after undoing the scaling.

    ``mean``/``std`` are the target channels' scaler statistics and ``mase_scale`` the
    in-sample seasonal-naive MAE per target channel (the MASE denominator), all ``[c_out]``.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, mean=None, std=None, mase_scale=None, c_out: int = 1):
        super().__init__()
        ones = torch.ones(c_out, dtype=torch.float64)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64) if mean is not None else ones * 0)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64) if std is not None else ones)
        self.register_buffer("mase_scale", torch.as_tensor(mase_scale, dtype=torch.float64) if mase_scale is not None else ones)
        for name in ("sq", "abs", "sq_orig", "abs_orig", "scaled_abs_orig", "smape", "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``, ``target``: scaled ``[B, H, c_out]``."""
        pred, target = pred.detach().double(), target.detach().double()
        err = pred - target
        self.sq += (err**2).sum()
        self.abs += err.abs().sum()
        pred_o, target_o = pred * self.std + self.mean, target * self.std + self.mean
        err_o = (pred_o - target_o).abs()
        self.sq_orig += (err_o**2).sum()
        self.abs_orig += err_o.sum()
        self.scaled_abs_orig += (err_o / self.mase_scale).sum()
        denom = pred_o.abs() + target_o.abs()
        self.smape += torch.where(denom > 0, 200.0 * err_o / denom.clamp_min(1e-300), torch.zeros_like(denom)).sum()
        self.count += err.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count
        return {
            "mse": self.sq / n,
            "mae": self.abs / n,
            "mae_orig": self.abs_orig / n,
            "rmse_orig": (self.sq_orig / n).sqrt(),
            "mase_orig": self.scaled_abs_orig / n,
            "smape_orig": self.smape / n,
        }
