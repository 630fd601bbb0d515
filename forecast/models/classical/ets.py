"""State-space exponential smoothing, statsmodels' ETSModel (:class:`ETS`)."""

from __future__ import annotations

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
