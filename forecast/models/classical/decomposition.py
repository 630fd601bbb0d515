"""Decomposition-based forecasting with the classical decomposition (:class:`ClassicalDecomposition`)."""

from __future__ import annotations

import numpy as np
import torch

from forecast.errors import ConfigError
from forecast.models.classical import fits, kernels
from forecast.models.classical.base import Estimated, choice, unit_interval

class ClassicalDecomposition(Estimated):
    """Decomposition-based forecasting (the Sen & Datta Chaudhuri scheme): decompose each
    window with the classical moving-average decomposition
    (``statsmodels.tsa.seasonal.seasonal_decompose``, additive or multiplicative, the shortest
    period), extrapolate the trend and add (multiply by) the last seasonal cycle; the residual
    is not forecast.

    The trend is defined up to ``m//2`` steps before the window's end; ``trend='linear'`` fits
    a least-squares line to its last ``trend_points`` values (all by default), ``trend='holt'``
    runs Holt's linear exponential smoothing over them (``ExponentialSmoothing(trend='add')``,
    heuristic start) with ``smoothing_level``/``smoothing_trend`` given, or estimated on the
    trend of the training split (``refit: once``) or of each window (``refit: window``).
    Everything but the per-window estimation is vectorised.
    """

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, model: str = "additive",
                 trend: str = "linear", trend_points: int | None = None, damped: bool = False,
                 smoothing_level: float | None = None, smoothing_trend: float | None = None,
                 positive_shift: bool = False, refit: str = "window", train_rows: int | None = None,
                 workers: int | None = None, progress: bool = True):
        choice("model", model, ("additive", "multiplicative"))
        choice("trend", trend, ("linear", "holt"))
        unit_interval("smoothing_level", smoothing_level)
        unit_interval("smoothing_trend", smoothing_trend)
        if trend_points is not None and int(trend_points) < (10 if trend == "holt" else 2):
            raise ConfigError(f"model.trend_points={trend_points} is too few for trend={trend} "
                              f"(at least {10 if trend == 'holt' else 2}).")
        self.model, self.trend, self.damped = model, trend, bool(damped)
        self.trend_points = int(trend_points) if trend_points else None
        self.smoothing_level, self.smoothing_trend = smoothing_level, smoothing_trend
        self.positive_shift = positive_shift
        super().__init__(seq_len, pred_len, periods, refit, train_rows, workers, progress)

    @property
    def multiplicative(self) -> bool:
        return self.model == "multiplicative"

    def min_length(self, period: int) -> int:
        need = 2 * period
        if self.trend == "holt":  # ten trend values for the heuristic start
            need = max(need, 2 * (period // 2) + 10)
        return need

    def _holt_fixed(self):
        if self.smoothing_level is None or self.smoothing_trend is None or self.damped:
            return None
        return np.array([self.smoothing_level, self.smoothing_trend, 0.0, 1.0])

    def _holt_kwargs(self):
        fixed = {k: float(v) for k, v in (("smoothing_level", self.smoothing_level), ("smoothing_trend", self.smoothing_trend))
                 if v is not None}
        return {"trend": True, "damped": self.damped, "seasonal": None, "period": None, "fixed": fixed}

    def _trend_values(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(trend values [N, P], seasonal pattern [N, m], position of the first value)``."""
        m = self.period
        trend, pattern = kernels.trend_and_pattern(y, m, self.multiplicative)
        half, length = m // 2, y.shape[1]
        first, stop = half, length - half
        if self.trend_points:
            first = max(first, stop - self.trend_points)
        return trend[:, first:stop], pattern, first

    def _prepare(self, train):
        if self.multiplicative:
            self._check_positive_training(train, "model='multiplicative'")
        self.params = None
        if self.trend == "holt" and self.refit == "once" and self._holt_fixed() is None:
            units = self.to_positive(torch.from_numpy(train.T.copy()), torch.arange(train.shape[1]))
            units = units[:, -self.train_rows :] if self.train_rows else units
            values, _, _ = self._trend_values(units)
            results = self._estimate_per_channel(fits.estimate_holt_winters, values.numpy().T, self._holt_kwargs(), 4, "Holt on the trend")
            self.params = torch.as_tensor(np.asarray(results), dtype=torch.float64)

    def _forecast(self, series, channels):
        n, length = series.shape
        m, horizon = self.period, self.pred_len
        failed = torch.zeros(n, dtype=torch.bool)
        y = series
        if self.multiplicative:
            y = self.to_positive(series, channels)
            failed |= (y <= 0).any(dim=1)
            y = torch.where(failed[:, None], torch.ones_like(y), y)
        values, pattern, first = self._trend_values(y)
        positions = torch.arange(length, length + horizon)
        if self.trend == "linear":
            trend = kernels.linear_trend(values, first, positions)
        else:
            ahead = length - (first + values.shape[1])  # steps from the last trend value to the window's end
            params = self._holt_fixed()
            if params is not None:
                params = torch.as_tensor(params).expand(n, 4)
            elif self.refit == "once":
                if self.params is None:
                    raise ConfigError("ClassicalDecomposition with trend=holt and refit=once has no parameters: "
                                      "fit_training() was not called. Fix: run it through the pipeline or use model.refit=window.")
                params = self.params[channels]
            else:
                ok = ~failed
                estimated, _ = self._map(fits.estimate_holt_winters, values[ok], [self._holt_kwargs()] * int(ok.sum()), 4,
                                         what="Holt fits on the trend")
                params = torch.tensor([0.5, 0.1, 0.0, 1.0], dtype=torch.float64).repeat(n, 1)
                good = torch.as_tensor(estimated, dtype=torch.float64).reshape(-1, 4)
                bad = ~torch.isfinite(good).all(dim=1)
                good[bad] = params[: int(bad.sum())]
                params[ok] = good
                failed[torch.nonzero(ok).flatten()[bad]] = True
            path = kernels.exponential_smoothing(values, ahead + horizon, params[:, 0], params[:, 1], 0.0, params[:, 3], trend=True)
            trend = path[:, ahead:]
        season = pattern[:, positions % m]
        out = trend * season if self.multiplicative else trend + season
        return (self.from_positive(out, channels) if self.multiplicative else out), failed

    def training_decomposition(self, channels):
        if self.train_series is None or not self.multiplicative:
            return super().training_decomposition(channels)
        units = self.to_positive(torch.from_numpy(self.train_series[:, channels].T.copy()), torch.as_tensor(channels))
        trend, seasonal, resid = kernels.seasonal_decompose(units, self.period, True)
        return {"observed": units.numpy().T, "trend": trend.numpy().T, f"seasonal factor ({self.period})": seasonal.numpy().T,
                "residual factor": resid.numpy().T}
