"""The Theta method (:class:`Theta`)."""

from __future__ import annotations

import torch

from forecast.errors import ConfigError
from forecast.models.classical import fits
from forecast.models.classical.base import Estimated, choice

class Theta(Estimated):
    """The Theta method (``statsmodels.tsa.forecasting.theta.ThetaModel``): simple exponential
    smoothing plus the least-squares drift scaled by ``1 − 1/θ`` (θ = 2: half the slope), on the
    series deseasonalised by a classical decomposition of the shortest period when a test finds
    the season significant (``use_test``); ``method='auto'`` picks the multiplicative
    decomposition for positive data, the additive one otherwise (standardised data are not
    positive). Estimated on each window only: the drift is a least-squares fit to the window
    itself, so ``refit: once`` has nothing to carry over."""

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, method: str = "auto",
                 deseasonalize: bool = True, use_test: bool = True, theta: float = 2.0, refit: str = "window",
                 workers: int | None = None, progress: bool = True):
        choice("method", method, ("auto", "additive", "multiplicative"))
        if refit == "once":
            raise ConfigError("model.refit=once: ThetaModel cannot filter a window with given parameters (its drift is the "
                              "least-squares slope of the window itself). Fix: model.refit=window.")
        if float(theta) < 1:
            raise ConfigError(f"model.theta={theta} must be at least 1.")
        self.method, self.deseasonalize, self.use_test, self.theta = method, bool(deseasonalize), bool(use_test), float(theta)
        super().__init__(seq_len, pred_len, periods, refit, None, workers, progress)

    def _forecast(self, series, channels):
        kwargs = {"horizon": self.pred_len, "period": self.period, "method": self.method,
                  "deseasonalize": self.deseasonalize, "use_test": self.use_test, "theta": self.theta}
        out, _ = self._map(fits.theta_forecast, series, [kwargs] * len(series), self.pred_len)
        out = torch.as_tensor(out, dtype=torch.float64)
        return out, ~torch.isfinite(out).all(dim=1)
