"""State-space exponential smoothing, statsmodels' ETSModel (:class:`ETS`)."""

from __future__ import annotations

import numpy as np
import torch

from forecast.models.classical import fits
from forecast.models.classical.base import Smoothing, choice

class ETS(Smoothing):
    """State-space exponential smoothing (``statsmodels.tsa.exponential_smoothing.ets.ETSModel``,
    maximum likelihood, ``initialization_method='heuristic'``): additive or multiplicative error,
    optional (damped) additive trend, optional additive or multiplicative season.

    Parameters are estimated on the training split (``refit: once``, the default) or on each
    window (``refit: window``); ``objective: horizon`` (``refit: once``) chooses them for the
    ``pred_len``-step error instead of the likelihood, as Holt-Winters does; the point forecasts,
    which the error type does not change, come
    from the equivalent Holt-Winters recursion (``β = β_ETS/α``; a multiplicative season is
    updated from the new level, as ``ETSModel`` does), vectorised."""

    _multiplicative_name = "a multiplicative error or season"
    season_from_new_level = True

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, error: str = "add",
                 trend: str | None = "add", damped: bool = True, seasonal: str | None = "add",
                 positive_shift: bool = False, refit: str = "once", objective: str = "one_step",
                 train_rows: int | None = None, workers: int | None = None, progress: bool = True):
        choice("error", error, ("add", "mul"))
        self._check_objective(objective, refit)
        choice("trend", trend, (None, "add"))
        choice("seasonal", seasonal, (None, "add", "mul"))
        self.error, self.trend_kind, self.seasonal_kind, self.damped = error, trend, seasonal, bool(damped and trend)
        self.positive_shift = positive_shift
        super().__init__(seq_len, pred_len, periods, refit, train_rows, workers, progress)

    @property
    def multiplicative(self) -> bool:
        return self.seasonal_kind == "mul" or self.error == "mul"

    def _estimator(self):
        return fits.estimate_ets

    def _estimate_kwargs(self):
        return {"error": self.error, "trend": self.trend_kind == "add", "damped": self.damped,
                "seasonal": self.seasonal_kind, "period": self.period if self.seasonal_kind else None}

    def _native(self, series, channels, alphas):
        """statsmodels' ``ETSModel`` prediction intervals of each window with this model's
        parameters (:func:`fits.ets_intervals`), in the units the model works in."""
        if self.refit != "once" or self.params is None:
            return None
        y = self.to_positive(series, channels) if self.multiplicative else series
        kwargs = self._estimate_kwargs()
        kwargs_list = [{"horizon": self.pred_len, "alphas": list(alphas), "params": self.params[c].tolist(), **kwargs}
                       for c in channels.tolist()]
        out, _ = self._map(fits.ets_intervals, y, kwargs_list, None, what="intervals")
        nan = np.full((2 * len(alphas), self.pred_len), np.nan)
        bounds = torch.as_tensor(np.stack([nan if r is None else r for r in out]))
        if self.multiplicative:  # back to the standardised scale: affine per series
            n, k, h = bounds.shape
            bounds = self.from_positive(bounds.reshape(n, k * h), channels).reshape(n, k, h)
        return bounds.numpy()
