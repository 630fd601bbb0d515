"""STL decomposition and a model of the seasonally adjusted series (:class:`STL`)."""

from __future__ import annotations

import numpy as np
import torch

from forecast.errors import ConfigError
from forecast.models.classical import fits
from forecast.models.classical.base import Estimated, choice

class STL(Estimated):
    """STL decomposition of each window (``statsmodels.tsa.seasonal.STL``, the shortest period,
    LOESS seasonal smoother ``seasonal_smoother``), a model of the seasonally adjusted series
    (trend + remainder), and the last seasonal cycle added back:
    ``statsmodels.tsa.forecasting.stl.STLForecast``.

    ``model='ets'``: ``ETSModel`` (additive error, ``trend`` optionally ``damped``, heuristic
    start); ``model='arima'``: ``ARIMA(order)`` (with a constant when ``d = 0``). The adjusted
    model is estimated on each window (``refit: window``, the default) or on the training
    split's adjusted series (``refit: once``: each window is then only filtered with those
    parameters, ``.smooth(params)``). One statsmodels call per series, over the process pool.
    """

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, model: str = "ets",
                 trend: str | None = "add", damped: bool = True, order: list = (1, 1, 1),
                 seasonal_smoother: int = 7, robust: bool = False, refit: str = "window", train_rows: int | None = None,
                 workers: int | None = None, progress: bool = True):
        self._init_adjusted(model, trend, damped, order, robust)
        if int(seasonal_smoother) < 3 or int(seasonal_smoother) % 2 == 0:
            raise ConfigError(f"model.seasonal_smoother={seasonal_smoother} must be an odd integer of at least 3 (STL's `seasonal`).")
        self.seasonal_smoother = int(seasonal_smoother)
        super().__init__(seq_len, pred_len, periods, refit, train_rows, workers, progress)

    def _init_adjusted(self, model, trend, damped, order, robust):
        choice("model", model, ("ets", "arima"))
        choice("trend", trend, (None, "add"))
        order = [int(v) for v in order]
        if len(order) != 3 or min(order) < 0:
            raise ConfigError(f"model.order={order} must be three non-negative integers (p, d, q).")
        self.adjusted_model, self.ets = model, {"trend": trend, "damped": bool(damped and trend)}
        self.order, self.robust = tuple(order), bool(robust)

    def _used_periods(self) -> list[int]:
        return [self.period]

    def _smoother(self):
        return self.seasonal_smoother

    def _kwargs(self) -> dict:
        return {"periods": self._used_periods(), "model": self.adjusted_model, "ets": self.ets, "order": self.order,
                "seasonal_smoother": self._smoother(), "robust": self.robust}

    def _prepare(self, train):
        self.params = None
        if self.refit == "once":
            results = self._estimate_per_channel(fits.estimate_stl_model, self._training_rows(train), self._kwargs(), None,
                                                 f"{self.adjusted_model} on the adjusted series")
            self.params = [np.asarray(r) for r in results]

    def _forecast(self, series, channels):
        common = {**self._kwargs(), "horizon": self.pred_len}
        if self.refit == "once":
            if self.params is None:
                raise ConfigError(f"{type(self).__name__} with refit=once has no parameters: fit_training() was not called. "
                                  "Fix: run it through the pipeline or use model.refit=window.")
            per_channel = [{**common, "params": p} for p in self.params]
            kwargs_list = [per_channel[c] for c in channels.tolist()]
        else:
            kwargs_list = [common] * len(series)
        out, _ = self._map(fits.stl_forecast, series, kwargs_list, self.pred_len)
        out = torch.as_tensor(out, dtype=torch.float64)
        return out, ~torch.isfinite(out).all(dim=1)

    def training_decomposition(self, channels):
        if self.train_series is None:
            return None
        from statsmodels.tsa.seasonal import MSTL as _MSTL, STL as _STL

        periods = self._used_periods()
        parts: dict[str, list] = {}
        for c in channels:
            y = self.train_series[:, c]
            if len(periods) == 1:
                result = _STL(y, period=periods[0], seasonal=self.seasonal_smoother, robust=self.robust).fit()
                seasonal = np.asarray(result.seasonal)[:, None]
            else:
                result = _MSTL(y, periods=periods, windows=self._smoother(), stl_kwargs={"robust": self.robust}).fit()
                seasonal = np.asarray(result.seasonal).reshape(len(y), -1)
            parts.setdefault("observed", []).append(y)
            parts.setdefault("trend", []).append(np.asarray(result.trend))
            for i, p in enumerate(periods):
                parts.setdefault(f"seasonal ({p})", []).append(seasonal[:, i])
            parts.setdefault("residual", []).append(np.asarray(result.resid))
        return self._to_units({k: np.stack(v) for k, v in parts.items()}, channels)
