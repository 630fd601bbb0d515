"""Holt-Winters exponential smoothing (:class:`HoltWinters`)."""

from __future__ import annotations

import numpy as np

from forecast.models.classical import fits
from forecast.models.classical.base import Smoothing, choice, unit_interval

class HoltWinters(Smoothing):
    """Holt-Winters exponential smoothing (``statsmodels.tsa.holtwinters.ExponentialSmoothing``
    with ``initialization_method='heuristic'``): level, optional (damped) additive trend,
    optional additive or multiplicative season of the shortest period.

    Parameters ``smoothing_level`` α, ``smoothing_trend`` β, ``smoothing_seasonal`` γ and
    ``damping_trend`` φ: given values are used as they are; the others are estimated
    (``ExponentialSmoothing.fit``, the one-step fit) on the training split (``refit: once``, the
    default) or on each window (``refit: window``); ``objective: horizon`` (with ``refit: once``)
    chooses them instead for the ``pred_len``-step error of windows of the training split
    (:mod:`forecast.models.classical.horizon`). Forecasts come from the same recursion, vectorised over
    every window and channel, from heuristic initial states of each window.

    Note: statsmodels 0.15's own ``forecast`` takes the seasonal state from before the last
    update at horizons that are multiples of the period (statsmodels issue #9538); ours uses the
    final state (Hyndman & Athanasopoulos' equations, and what ``ETSModel`` computes).
    """

    _multiplicative_name = "seasonal='mul'"

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, trend: str | None = "add",
                 damped: bool = True, seasonal: str | None = "add", smoothing_level: float | None = None,
                 smoothing_trend: float | None = None, smoothing_seasonal: float | None = None,
                 damping_trend: float | None = None, positive_shift: bool = False, refit: str = "once",
                 objective: str = "one_step", train_rows: int | None = None, workers: int | None = None,
                 progress: bool = True):
        choice("trend", trend, (None, "add"))
        choice("seasonal", seasonal, (None, "add", "mul"))
        self._check_objective(objective, refit)
        for name, value in (("smoothing_level", smoothing_level), ("smoothing_trend", smoothing_trend),
                            ("smoothing_seasonal", smoothing_seasonal), ("damping_trend", damping_trend)):
            unit_interval(name, value)
        self.trend_kind, self.seasonal_kind, self.damped = trend, seasonal, bool(damped and trend)
        self.smoothing_level, self.smoothing_trend = smoothing_level, smoothing_trend
        self.smoothing_seasonal, self.damping_trend = smoothing_seasonal, damping_trend
        self.positive_shift = positive_shift
        super().__init__(seq_len, pred_len, periods, refit, train_rows, workers, progress)

    def _given(self) -> dict:
        given = {"smoothing_level": self.smoothing_level}
        if self.trend_kind:
            given["smoothing_trend"] = self.smoothing_trend
        if self.seasonal_kind:
            given["smoothing_seasonal"] = self.smoothing_seasonal
        if self.damped:
            given["damping_trend"] = self.damping_trend
        return given

    def _fixed_params(self):
        given = self._given()
        if any(v is None for v in given.values()):
            return None
        return np.array([given["smoothing_level"], given.get("smoothing_trend", 0.0), given.get("smoothing_seasonal", 0.0),
                         given.get("damping_trend", 1.0)], dtype=np.float64)

    def _estimator(self):
        return fits.estimate_holt_winters

    def _estimate_kwargs(self):
        fixed = {k: float(v) for k, v in self._given().items() if v is not None}
        return {"trend": self.trend_kind == "add", "damped": self.damped, "seasonal": self.seasonal_kind,
                "period": self.period if self.seasonal_kind else None, "fixed": fixed}
