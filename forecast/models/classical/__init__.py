"""Classical forecasting baselines as networks without trainable parameters.

Each class is an ``nn.Module`` with the network contract (``forward(x [B, L, C]) -> [B, H, C]``
on the standardised scale, ``uses_time_features``, ``channel_independent``), so it runs through
the same ``ForecastModule`` / ``Trainer.test`` path as the deep models: same windows, same
metrics, same MLflow run. Every channel of every window is forecast as a univariate series.

Two protocols (``refit``) for the models that estimate parameters:

* ``window``: estimate on each window's look-back, then forecast (the rolling-origin protocol);
* ``once``: estimate on the training split (per channel), then only filter each window's
  look-back with those parameters and forecast.

What is vectorised (every series at once, in float64 tensors): naive, seasonal naive, drift,
the classical decomposition and its trend extrapolation, and exponential smoothing with given
or once-estimated parameters (also the forecast of per-window estimates). What is not (STL/MSTL,
Theta, ARIMA, and every per-window estimation) runs one statsmodels call per series over a
process pool (``workers``, default one per core; ``workers=1`` runs in-process) with a progress
bar (``progress``). Warnings are counted, not printed; a series whose estimation fails or whose
forecast is not finite falls back to seasonal naive and is counted. The pipeline logs the
counts as ``test/series``, ``test/fallbacks``, ``test/warnings``, ``test/convergence_warnings``,
``test/fit_seconds`` and ``test/forecast_seconds`` (see :meth:`_Classical.diagnostics`).

Multiplicative models need positive data, but the network sees standardised values: they work
in the data's own units (the scaler comes with :meth:`_Classical.fit_training`); a channel whose
training split is not positive is an error, unless ``positive_shift=true`` adds to it the
constant that puts its training minimum one standard deviation above zero. A window still not
positive falls back to seasonal naive.

Seasonal periods default from the data's frequency (:func:`periods.default_periods`: hourly
24 and 168, 15-minute 96 and 672, daily 7, weekly 52, monthly 12); ``periods`` overrides them.
Single-season models use the shortest period that fits the look-back, MSTL every one that fits.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from forecast.errors import ConfigError, DataError
from forecast.models.classical import fits, horizon, kernels
from forecast.models.classical.parallel import FitCounts, map_series, resolve_workers
from forecast.models.classical.periods import default_periods

log = logging.getLogger(__name__)

REFIT = ("window", "once")
OBJECTIVES = ("one_step", "horizon")  # exponential smoothing: statsmodels' one-step fit, or the pred_len-step error


def _choice(name: str, value, options: tuple) -> None:
    if value not in options:
        raise ConfigError(f"model.{name}={value!r} is not one of {list(options)}. Fix: use one of them.")


def _unit_interval(name: str, value) -> None:
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"model.{name}={value} must lie in [0, 1] (or be null to estimate it).")


class _Classical(nn.Module):
    """What every classical baseline shares: periods, the training-split hook, the univariate
    reshaping of ``[B, L, C]`` windows, fallbacks and counts. Subclasses implement
    :meth:`_forecast` on ``[N, L]`` float64 series."""

    uses_time_features = False
    channel_independent = True
    needs_period = True  # False: the period only draws the decomposition figure

    def __init__(self, seq_len: int, pred_len: int, periods=None, workers: int | None = 1, progress: bool = False):
        super().__init__()
        for key, value in (("seq_len", seq_len), ("pred_len", pred_len)):
            if int(value) < 1:
                raise ConfigError(f"model.{key}={value} must be a positive integer.")
        self.seq_len, self.pred_len = int(seq_len), int(pred_len)
        self.workers, self.progress = resolve_workers(workers), bool(progress)
        self.periods = self._check_periods(list(periods)) if periods else None
        self.mean = self.std = self.shift = None  # the scaler (data units) and positive shift, per channel
        self.train_series: np.ndarray | None = None
        self.reset_counts()

    # ------------------------------------------------------------------ periods
    def min_length(self, period: int) -> int:
        """The shortest look-back this model accepts with ``period``."""
        return 2 * period if self.needs_period else 1

    def _check_periods(self, periods: list) -> list[int]:
        out = []
        for p in periods:
            if int(p) != p or int(p) < 2:
                raise ConfigError(f"model.periods={periods}: each period must be an integer of at least 2 steps.")
            need = self.min_length(int(p))
            if self.needs_period and self.seq_len < need:
                raise ConfigError(
                    f"{type(self).__name__}: the period {int(p)} needs a look-back of at least {need} steps, but "
                    f"data.seq_len={self.seq_len}. Fix: set data.seq_len>={need}, or a shorter model.periods."
                )
            out.append(int(p))
        return out

    def _periods_from_freq(self, freq) -> list[int]:
        found = default_periods(freq)
        usable = [p for p in found if self.seq_len >= self.min_length(p)] if self.needs_period else found
        if self.needs_period and not usable:
            freq_name = getattr(freq, "freqstr", freq)
            why = (f"gives the periods {found}, none of which fits a look-back of data.seq_len={self.seq_len} "
                   f"(this model needs {self.min_length(found[0])} steps for {found[0]})" if found else "has no seasonal period")
            raise ConfigError(f"{type(self).__name__}: the data's frequency '{freq_name}' {why}. "
                              "Fix: set model.periods (e.g. model.periods=[24]) or a longer data.seq_len.")
        return usable

    @property
    def period(self) -> int | None:
        """The shortest period: the one single-season models (and the fallback) use."""
        return self.periods[0] if self.periods else None

    # -------------------------------------------------------- the training hook
    def fit_training(self, series, freq=None, scaler=None) -> None:
        """Called by the training pipeline before testing with the training split ``series
        [T, C]`` (standardised, as the network sees it), the data's frequency (the default
        periods) and its scaler (``mean``/``std`` per channel: the data's units, for the
        multiplicative models). Estimates the ``refit: once`` parameters; resets the counts."""
        self.reset_counts()
        start = time.perf_counter()
        if self.periods is None:
            self.periods = self._periods_from_freq(freq)
        values = series.detach().cpu().double().numpy() if torch.is_tensor(series) else np.asarray(series, dtype=np.float64)
        self.train_series = values
        if scaler is not None:
            self.mean = np.asarray(scaler.mean, dtype=np.float64).reshape(-1)
            self.std = np.asarray(scaler.std, dtype=np.float64).reshape(-1)
        self._prepare(values)
        self.counts_fit_seconds = time.perf_counter() - start

    def _prepare(self, train: np.ndarray) -> None:
        """Subclasses: checks and ``refit: once`` estimation on the training split ``[T, C]``."""

    # ------------------------------------------------------------ data units
    @property
    def multiplicative(self) -> bool:
        return False

    def _units(self, channels: torch.Tensor, dtype=torch.float64):
        """``(mean, std, shift)`` per series (rows of ``channels``) for the positive scale."""
        n = len(channels)
        if self.mean is None:
            ones, zeros = torch.ones(n, dtype=dtype), torch.zeros(n, dtype=dtype)
            shift = torch.as_tensor(self.shift, dtype=dtype)[channels] if self.shift is not None else zeros
            return zeros, ones, shift
        mean = torch.as_tensor(self.mean, dtype=dtype)[channels]
        std = torch.as_tensor(self.std, dtype=dtype)[channels]
        shift = torch.as_tensor(self.shift, dtype=dtype)[channels] if self.shift is not None else torch.zeros(n, dtype=dtype)
        return mean, std, shift

    def to_positive(self, x: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        mean, std, shift = self._units(channels)
        return x * std[:, None] + (mean + shift)[:, None]

    def from_positive(self, y: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        mean, std, shift = self._units(channels)
        return (y - (mean + shift)[:, None]) / std[:, None]

    def _check_positive_training(self, train: np.ndarray, name: str) -> None:
        """Set the positive shift (or refuse) for a multiplicative model, from the training split."""
        channels = torch.arange(train.shape[1])
        self.shift = None
        units = self.to_positive(torch.from_numpy(train.T.copy()), channels).numpy()
        mins = units.min(axis=1)
        bad = np.flatnonzero(mins <= 0)
        if not len(bad):
            return
        std = self.std if self.std is not None else np.ones(train.shape[1])
        if getattr(self, "positive_shift", False):
            self.shift = np.where(mins <= 0, std - mins, 0.0)
            log.info("%s: channels %s shifted by %s (data units) to be positive", type(self).__name__, bad.tolist(),
                     np.round(self.shift[bad], 4).tolist())
            return
        raise ConfigError(
            f"{type(self).__name__} with {name} needs positive data, but channel(s) {bad.tolist()} (of {train.shape[1]}) "
            f"reach {np.round(mins[bad], 4).tolist()} in the training split (in the data's units). "
            "Fix: use the additive form, or set model.positive_shift=true to add to each such channel the constant "
            "that puts its training minimum one standard deviation above zero."
        )

    # --------------------------------------------------------------- forecast
    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None, y_mark: torch.Tensor | None = None) -> torch.Tensor:
        if self.needs_period and not self.periods:
            raise ConfigError(
                f"{type(self).__name__}: no seasonal period. Fix: set model.periods, or run it through "
                "forecast.pipelines.train.run, which takes them from the data's frequency (fit_training)."
            )
        start = time.perf_counter()
        b, length, c = x.shape
        series = x.detach().to("cpu", torch.float64).permute(0, 2, 1).reshape(b * c, length)
        channels = torch.arange(c).repeat(b)
        out, failed = self._forecast(series, channels)
        failed = failed | ~torch.isfinite(out).all(dim=1)
        if failed.any():
            out[failed] = self.fallback(series[failed])
        self.counts.series += b * c
        self.counts.failed += int(failed.sum())
        self.counts_forecast_seconds += time.perf_counter() - start
        return out.reshape(b, c, self.pred_len).permute(0, 2, 1).to(dtype=x.dtype, device=x.device)

    def _forecast(self, series: torch.Tensor, channels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``series [N, L]`` (float64, standardised), ``channels [N]`` -> ``(forecast [N, H],
        failed [N] bool)``; failed rows are replaced by the fallback."""
        raise NotImplementedError

    def fallback(self, series: torch.Tensor) -> torch.Tensor:
        """Seasonal naive with the shortest period (naive if it does not fit the look-back)."""
        if self.period and self.period <= series.shape[1]:
            return kernels.seasonal_naive(series, self.period, self.pred_len)
        return kernels.naive(series, self.pred_len)

    def _map(self, fn, series: torch.Tensor, kwargs_list: list[dict], size: int | None, what: str = "fits"):
        results, counts = map_series(fn, series.numpy(), kwargs_list, size, self.workers, self.progress,
                                     desc=f"{type(self).__name__} {what}")
        self.counts.warnings += counts.warnings
        self.counts.convergence_warnings += counts.convergence_warnings
        for message, n in counts.messages.items():
            self.counts.messages[message] = self.counts.messages.get(message, 0) + n
        return results, counts

    # ------------------------------------------------------------ diagnostics
    def reset_counts(self) -> None:
        self.counts = FitCounts()
        self.counts_fit_seconds = 0.0
        self.counts_forecast_seconds = 0.0

    def diagnostics(self) -> dict[str, float]:
        """Counts since :meth:`fit_training` (the pipeline logs them as ``test/<key>``):
        ``series`` forecast (windows × channels), ``fallbacks`` (series whose estimation failed
        or whose forecast was not finite or not positive where it must be: replaced by seasonal
        naive), ``warnings`` caught during estimation and filtering (all categories) and, of
        them, ``convergence_warnings``; ``fit_seconds`` (the training-split hook: ``refit: once``
        estimation) and ``forecast_seconds`` (every forward)."""
        if self.counts.messages:
            top = sorted(self.counts.messages.items(), key=lambda kv: -kv[1])[:3]
            log.warning("%s: %d fallbacks; most frequent causes: %s", type(self).__name__, self.counts.failed,
                        "; ".join(f"{m} (x{n})" for m, n in top))
        return {
            "series": float(self.counts.series),
            "fallbacks": float(self.counts.failed),
            "warnings": float(self.counts.warnings),
            "convergence_warnings": float(self.counts.convergence_warnings),
            "fit_seconds": float(self.counts_fit_seconds),
            "forecast_seconds": float(self.counts_forecast_seconds),
        }

    # ---------------------------------------------------------- decomposition
    def training_decomposition(self, channels: list[int]) -> dict[str, np.ndarray] | None:
        """Trend, seasonal and residual parts of the training split (``fit_training``) for the
        given channel positions, in the data's units: ``{name: [T, len(channels)]}``. Here the
        classical additive decomposition with the shortest period; STL/MSTL show their own."""
        if self.train_series is None or not self.period or self.train_series.shape[0] < 2 * self.period:
            return None
        x = torch.from_numpy(self.train_series[:, channels].T.copy())
        trend, seasonal, resid = kernels.seasonal_decompose(x, self.period)
        parts = {"observed": x, "trend": trend, f"seasonal ({self.period})": seasonal, "residual": resid}
        return self._to_units(parts, channels)

    def _to_units(self, parts: dict, channels: list[int]) -> dict[str, np.ndarray]:
        """Additive parts of standardised series back to the data's units (the level parts
        rescaled and re-centred, the others rescaled): ``{name: [T, k]}``."""
        mean = np.zeros(len(channels)) if self.mean is None else self.mean[channels]
        std = np.ones(len(channels)) if self.std is None else self.std[channels]
        out = {}
        for name, part in parts.items():
            values = np.asarray(part, dtype=np.float64).T * std
            out[name] = values + mean if name in ("observed", "trend") else values
        return out


# ====================================================================== parameter-free


class Naive(_Classical):
    """The last observed value, repeated over the horizon (the random-walk forecast).

    ``forward(x [B, L, C]) -> [B, H, C]``; no statsmodels call, fully vectorised."""

    needs_period = False

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None):
        super().__init__(seq_len, pred_len, periods)

    def _forecast(self, series, channels):
        return kernels.naive(series, self.pred_len), torch.zeros(len(series), dtype=torch.bool)


class SeasonalNaive(_Classical):
    """The last seasonal cycle (the shortest period), repeated: ``ŷ[L+h] = x[L − m + (h mod m)]``.

    Needs ``seq_len ≥ m``; fully vectorised."""

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None):
        super().__init__(seq_len, pred_len, periods)

    def min_length(self, period: int) -> int:
        return period

    def _forecast(self, series, channels):
        return kernels.seasonal_naive(series, self.period, self.pred_len), torch.zeros(len(series), dtype=torch.bool)


class Drift(_Classical):
    """The line through the first and last values of the look-back, extended (random walk with
    drift): ``ŷ[L+h] = x[L−1] + h·(x[L−1] − x[0])/(L−1)``. Fully vectorised."""

    needs_period = False

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None):
        super().__init__(seq_len, pred_len, periods)

    def _forecast(self, series, channels):
        return kernels.drift(series, self.pred_len), torch.zeros(len(series), dtype=torch.bool)


# ================================================================ estimated models


class _Estimated(_Classical):
    """Models with parameters: the ``refit`` protocol and, for ``once``, the training rows."""

    def __init__(self, seq_len, pred_len, periods=None, refit: str = "window", train_rows: int | None = None,
                 workers: int | None = None, progress: bool = True):
        _choice("refit", refit, REFIT)
        if train_rows is not None and int(train_rows) < 1:
            raise ConfigError(f"model.train_rows={train_rows} must be positive (or null: the whole training split).")
        self.refit = refit
        self.train_rows = int(train_rows) if train_rows else None
        super().__init__(seq_len, pred_len, periods, workers, progress)

    def _training_rows(self, train: np.ndarray) -> np.ndarray:
        return train[-self.train_rows :] if self.train_rows else train

    def _estimate_per_channel(self, fn, train_units: np.ndarray, kwargs: dict, size: int | None, what: str):
        """``fn`` on each channel of the training split (``refit: once``); a failure is an error."""
        series = torch.from_numpy(np.ascontiguousarray(train_units.T))
        results, counts = self._map(fn, series, [kwargs] * len(series), size, what=f"estimation on the training split ({what})")
        failed = [i for i, r in enumerate(results) if r is None or (size is not None and not np.all(np.isfinite(r)))]
        if failed:
            causes = "; ".join(counts.messages) or "non-finite parameters"
            raise DataError(
                f"{type(self).__name__}: estimation on the training split failed for channel(s) {failed} "
                f"({causes}). Fix: use model.refit=window, other model settings, or model.train_rows to use fewer rows."
            )
        return results


class _Smoothing(_Estimated):
    """Exponential smoothing whose forecasts come from :func:`kernels.exponential_smoothing`
    (heuristic initial states from each window) with parameters that are given, estimated once
    on the training split, or estimated per window; subclasses say how they are estimated."""

    trend_kind: str | None
    seasonal_kind: str | None
    season_from_new_level = False  # ETSModel's multiplicative season (see kernels.exponential_smoothing)

    @property
    def multiplicative(self) -> bool:
        return self.seasonal_kind == "mul"

    def min_length(self, period: int) -> int:
        return kernels.heuristic_minimum(period if self.seasonal_kind else None)

    def _estimate_kwargs(self) -> dict:
        raise NotImplementedError

    def _estimator(self):
        raise NotImplementedError

    def _fixed_params(self) -> np.ndarray | None:
        """``[α, β, γ, φ]`` when every parameter the model has is given, else ``None``."""
        return None

    def _check_objective(self, objective: str, refit: str) -> None:
        _choice("objective", objective, OBJECTIVES)
        if objective == "horizon" and refit != "once":
            raise ConfigError("model.objective=horizon scores forecasts from windows of the training split, so it "
                              "estimates once. Fix: model.refit=once, or model.objective=one_step.")
        self.objective = objective

    def _prepare(self, train):
        if self.multiplicative:
            self._check_positive_training(train, self._multiplicative_name)
        self.params = None
        if self.refit == "once" and self._fixed_params() is None:
            units = self.to_positive(torch.from_numpy(train.T.copy()), torch.arange(train.shape[1])).numpy().T
            if self.objective == "horizon":
                kwargs = self._estimate_kwargs()
                results = horizon.fit(self._training_rows(units), self.seq_len, self.pred_len, kwargs["trend"],
                                      kwargs["damped"], kwargs["seasonal"], kwargs["period"], kwargs.get("fixed"),
                                      season_from_new_level=self.season_from_new_level)
            else:
                results = self._estimate_per_channel(self._estimator(), self._training_rows(units), self._estimate_kwargs(),
                                                     4, "smoothing parameters")
            self.params = torch.as_tensor(np.asarray(results), dtype=torch.float64)  # [C, 4]

    def _forecast(self, series, channels):
        n = len(series)
        failed = torch.zeros(n, dtype=torch.bool)
        y = self.to_positive(series, channels) if self.multiplicative else series
        if self.multiplicative:
            failed |= (y <= 0).any(dim=1)
            y = torch.where(failed[:, None], torch.ones_like(y), y)  # filtered but replaced below
        params = self._fixed_params()
        if params is not None:
            params = torch.as_tensor(params, dtype=torch.float64).expand(n, 4)
        elif self.refit == "once":
            if self.params is None:
                raise ConfigError(f"{type(self).__name__} with refit=once has no parameters: fit_training() was not called. "
                                  "Fix: run it through forecast.pipelines.train.run, or use model.refit=window.")
            params = self.params[channels]
        else:
            estimated, _ = self._map(self._estimator(), y[~failed], [self._estimate_kwargs()] * int((~failed).sum()), 4)
            params = torch.full((n, 4), 0.5, dtype=torch.float64)
            params[:, 3] = 1.0
            good = torch.as_tensor(estimated, dtype=torch.float64).reshape(-1, 4)
            bad = ~torch.isfinite(good).all(dim=1)
            good[bad] = params[: int(bad.sum())]
            params[~failed] = good
            failed[torch.nonzero(~failed).flatten()[bad]] = True
        out = kernels.exponential_smoothing(
            y, self.pred_len, params[:, 0], params[:, 1], params[:, 2], params[:, 3],
            trend=self.trend_kind == "add", seasonal=self.seasonal_kind, period=self.period,
            season_from_new_level=self.season_from_new_level,
        )
        return (self.from_positive(out, channels) if self.multiplicative else out), failed


class HoltWinters(_Smoothing):
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
        _choice("trend", trend, (None, "add"))
        _choice("seasonal", seasonal, (None, "add", "mul"))
        self._check_objective(objective, refit)
        for name, value in (("smoothing_level", smoothing_level), ("smoothing_trend", smoothing_trend),
                            ("smoothing_seasonal", smoothing_seasonal), ("damping_trend", damping_trend)):
            _unit_interval(name, value)
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


class ETS(_Smoothing):
    """State-space exponential smoothing (``statsmodels.tsa.exponential_smoothing.ets.ETSModel``,
    maximum likelihood, ``initialization_method='heuristic'``): additive or multiplicative error,
    optional (damped) additive trend, optional additive or multiplicative season.

    Parameters are estimated on the training split (``refit: once``, the default) or on each
    window (``refit: window``); ``objective: horizon`` (``refit: once``) chooses them for the
    ``pred_len``-step error instead of the likelihood, as Holt-Winters does; the point forecasts, which the error type does not change, come
    from the equivalent Holt-Winters recursion (``β = β_ETS/α``; a multiplicative season is
    updated from the new level, as ``ETSModel`` does), vectorised."""

    _multiplicative_name = "a multiplicative error or season"
    season_from_new_level = True

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, error: str = "add",
                 trend: str | None = "add", damped: bool = True, seasonal: str | None = "add",
                 positive_shift: bool = False, refit: str = "once", objective: str = "one_step",
                 train_rows: int | None = None, workers: int | None = None, progress: bool = True):
        _choice("error", error, ("add", "mul"))
        self._check_objective(objective, refit)
        _choice("trend", trend, (None, "add"))
        _choice("seasonal", seasonal, (None, "add", "mul"))
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


class ClassicalDecomposition(_Estimated):
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
        _choice("model", model, ("additive", "multiplicative"))
        _choice("trend", trend, ("linear", "holt"))
        _unit_interval("smoothing_level", smoothing_level)
        _unit_interval("smoothing_trend", smoothing_trend)
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


class STL(_Estimated):
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
        _choice("model", model, ("ets", "arima"))
        _choice("trend", trend, (None, "add"))
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


class MSTL(STL):
    """STL with several seasonal periods (``statsmodels.tsa.seasonal.MSTL``: e.g. 24 and 168
    for hourly data, every default period that fits more than twice in the look-back), a model of the
    adjusted series (``ETSModel`` or ``ARIMA``), and each seasonal component's last cycle added
    back: ``STLForecast`` generalised to several seasons. ``windows``: the seasonal smoother of
    each period (null: MSTL's default 7 + 4·i)."""

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None, model: str = "ets",
                 trend: str | None = "add", damped: bool = True, order: list = (1, 1, 1), windows: list | None = None,
                 robust: bool = False, refit: str = "window", train_rows: int | None = None,
                 workers: int | None = None, progress: bool = True):
        self._init_adjusted(model, trend, damped, order, robust)
        self.windows = [int(w) for w in windows] if windows else None
        if self.windows and any(w < 3 or w % 2 == 0 for w in self.windows):
            raise ConfigError(f"model.windows={windows}: each seasonal smoother must be an odd integer of at least 3.")
        self.seasonal_smoother = 7
        _Estimated.__init__(self, seq_len, pred_len, periods, refit, train_rows, workers, progress)
        if self.windows and self.periods and len(self.windows) != len(self.periods):
            raise ConfigError(f"model.windows={windows} needs one smoother per period of model.periods={self.periods}.")

    def min_length(self, period: int) -> int:
        return 2 * period + 1  # statsmodels' MSTL drops a period that is not below half the series

    def _used_periods(self) -> list[int]:
        return list(self.periods)

    def _smoother(self):
        return self.windows


class Theta(_Estimated):
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
        _choice("method", method, ("auto", "additive", "multiplicative"))
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


DEFAULT_ARIMA_ORDERS = ((1, 0, 0), (2, 0, 0), (1, 0, 1), (2, 0, 1), (0, 1, 1), (1, 1, 1))


class ARIMA(_Estimated):
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
        if self.seasonal is None:
            return None
        if not self.period:
            raise ConfigError("ARIMA with model.seasonal_order needs a seasonal period. Fix: set model.periods.")
        return (*self.seasonal, self.period)

    def _prepare(self, train):
        self.selected = None
        if self.refit == "once":
            self.selected = self._estimate_per_channel(fits.select_arima, self._training_rows(train),
                                                       {"orders": self.orders, "seasonal_order": self._seasonal_order()},
                                                       None, "order selection")
            log.info("ARIMA orders selected on the training split, per channel: %s", [o for o, _ in self.selected])

    def _forecast(self, series, channels):
        seasonal = self._seasonal_order()
        if self.refit == "once":
            if self.selected is None:
                raise ConfigError("ARIMA with refit=once has no parameters: fit_training() was not called. "
                                  "Fix: run it through the pipeline or use model.refit=window.")
            per_channel = [{"horizon": self.pred_len, "order": o, "params": p, "seasonal_order": seasonal}
                           for o, p in self.selected]
            kwargs_list = [per_channel[c] for c in channels.tolist()]
        else:
            kwargs_list = [{"horizon": self.pred_len, "orders": self.orders, "seasonal_order": seasonal}] * len(series)
        out, _ = self._map(fits.arima_forecast, series, kwargs_list, self.pred_len)
        out = torch.as_tensor(out, dtype=torch.float64)
        return out, ~torch.isfinite(out).all(dim=1)
