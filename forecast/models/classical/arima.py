"""ARIMA, seasonal or not, with the order of lowest AIC (:class:`ARIMA`)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from forecast.errors import ConfigError
from forecast.models.classical import fits
from forecast.models.classical.base import Estimated

log = logging.getLogger(__name__)

DEFAULT_ARIMA_ORDERS = ((1, 0, 0), (2, 0, 0), (1, 0, 1), (2, 0, 1), (0, 1, 1), (1, 1, 1))


class ARIMA(Estimated):
    """ARIMA (``statsmodels.tsa.arima.model.ARIMA``, state-space maximum likelihood, a constant
    when nothing is differenced) with the order of ``orders`` of lowest AIC, and with
    ``seasonal_order`` ``(P, D, Q)`` a seasonal ARIMA of the shortest period (null: non-seasonal).

    ``refit: once`` (the default) selects the order and estimates it per channel on the training
    split, then filters each window with those parameters (``.filter(params)``) and forecasts;
    ``refit: window`` selects and estimates on every window (one fit per order per series: slow).
    Without a seasonal order the period only serves the fallback and the decomposition figure."""

    needs_period = False

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, orders: list = DEFAULT_ARIMA_ORDERS,
                 seasonal_order: list | None = None, refit: str = "once", train_rows: int | None = None,
                 workers: int | None = None, progress: bool = True):
        orders = [tuple(int(v) for v in order) for order in orders]
        if not orders or any(len(o) != 3 or min(o) < 0 for o in orders):
            raise ConfigError(f"model.orders={orders} must be a non-empty list of (p, d, q) triples of non-negative integers.")
        if seasonal_order is not None and (len(seasonal_order) != 3 or min(int(v) for v in seasonal_order) < 0):
            raise ConfigError(f"model.seasonal_order={seasonal_order} must be (P, D, Q), three non-negative integers, or null.")
        self.orders = orders
        self.seasonal = tuple(int(v) for v in seasonal_order) if seasonal_order is not None else None
        super().__init__(seq_len, pred_len, periods, refit, train_rows, workers, progress)

    def _seasonal_order(self):
        """``(P, D, Q, m)`` with the shortest period, or ``None``."""
        seasonal = getattr(self, "seasonal", None)  # models pickled before the option: non-seasonal
        if seasonal is None:
            return None
        if not self.period:
            raise ConfigError("ARIMA with model.seasonal_order needs a seasonal period. Fix: set model.periods.")
        return (*seasonal, self.period)

    def _prepare(self, train):
        self.selected = None
        if self.refit == "once":
            self.selected = self._estimate_per_channel(fits.select_arima, self._training_rows(train),
                                                       {"orders": self.orders, "seasonal_order": self._seasonal_order()},
                                                       None, "order selection")
            log.info("ARIMA orders selected on the training split, per channel: %s", [o for o, _ in self.selected])

    def _kwargs(self, channels) -> list[dict]:
        seasonal = self._seasonal_order()
        if self.refit == "once":
            if self.selected is None:
                raise ConfigError("ARIMA with refit=once has no parameters: fit_training() was not called. "
                                  "Fix: run it through the pipeline or use model.refit=window.")
            per_channel = [{"horizon": self.pred_len, "order": o, "params": p, "seasonal_order": seasonal}
                           for o, p in self.selected]
            return [per_channel[c] for c in channels.tolist()]
        return [{"horizon": self.pred_len, "orders": self.orders, "seasonal_order": seasonal}] * len(channels)

    def _native(self, series, channels, alphas):
        """``ARIMA(...).filter(params).get_forecast(H).conf_int(alpha)`` of each series (the same
        filtered model as the point forecast)."""
        kwargs_list = [{**kwargs, "alphas": list(alphas)} for kwargs in self._kwargs(channels)]
        out, _ = self._map(fits.arima_intervals, series, kwargs_list, None, what="intervals")
        nan = np.full((2 * len(alphas), self.pred_len), np.nan)
        return np.stack([nan if r is None else r for r in out])

    def _forecast(self, series, channels):
        kwargs_list = self._kwargs(channels)
        out, _ = self._map(fits.arima_forecast, series, kwargs_list, self.pred_len)
        out = torch.as_tensor(out, dtype=torch.float64)
        return out, ~torch.isfinite(out).all(dim=1)
