"""What the classical baselines share: :class:`Classical` (periods, the training-split hook,
the univariate reshaping of windows, fallbacks and counts), :class:`Estimated` (the ``refit``
protocol) and :class:`Smoothing` (exponential smoothing forecasts). The networks themselves
live one per module beside this one.

Classical forecasting baselines as networks without trainable parameters.

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
``test/fit_seconds`` and ``test/forecast_seconds`` (see :meth:`Classical.diagnostics`).

Multiplicative models need positive data, but the network sees standardised values: they work
in the data's own units (the scaler comes with :meth:`Classical.fit_training`); a channel whose
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

from forecast.errors import ConfigError, DataError
from forecast.models.base import Network, positive
from forecast.models.classical import horizon, kernels
from forecast.models.classical.parallel import FitCounts, map_series, resolve_workers
from forecast.models.classical.periods import default_periods

log = logging.getLogger(__name__)

REFIT = ("window", "once")
OBJECTIVES = ("one_step", "horizon")  # exponential smoothing: statsmodels' one-step fit, or the pred_len-step error


def choice(name: str, value, options: tuple) -> None:
    if value not in options:
        raise ConfigError(f"model.{name}={value!r} is not one of {list(options)}. Fix: use one of them.")


def unit_interval(name: str, value) -> None:
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"model.{name}={value} must lie in [0, 1] (or be null to estimate it).")


class Classical(Network):
    """What every classical baseline shares: periods, the training-split hook, the univariate
    reshaping of ``[B, L, C]`` windows, fallbacks and counts. Subclasses implement
    :meth:`_forecast` on ``[N, L]`` float64 series."""

    uses_time_features = False
    channel_independent = True
    needs_period = True  # False: the period only draws the decomposition figure

    def __init__(self, seq_len: int, pred_len: int, periods=None, workers: int | None = 1, progress: bool = False):
        super().__init__()
        positive(type(self).__name__, seq_len=seq_len, pred_len=pred_len)
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

    def native_intervals(self, x: torch.Tensor, levels: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]] | None:
        """statsmodels' own prediction intervals (see :meth:`_native`), ``{level: (lo, hi)}``
        ``[B, H, C]`` on the standardised scale; ``None`` for a model without them. A series
        whose intervals fail is NaN (and counted as a fallback)."""
        b, length, c = x.shape
        series = x.detach().to("cpu", torch.float64).permute(0, 2, 1).reshape(b * c, length)
        channels = torch.arange(c).repeat(b)
        alphas = [1 - level / 100 for level in levels]
        bounds = self._native(series, channels, alphas)  # [N, 2·len(levels), H] or None
        if bounds is None:
            return None
        bounds = torch.as_tensor(np.asarray(bounds, dtype=np.float64)).reshape(b * c, 2 * len(levels), self.pred_len)
        self.counts.failed += int((~torch.isfinite(bounds).all(dim=(1, 2))).sum())

        def shaped(rows):
            return rows.reshape(b, c, self.pred_len).permute(0, 2, 1).to(dtype=x.dtype, device=x.device)

        return {level: (shaped(bounds[:, 2 * i]), shaped(bounds[:, 2 * i + 1])) for i, level in enumerate(levels)}

    def _native(self, series: torch.Tensor, channels: torch.Tensor, alphas: list[float]):
        """Subclasses with statsmodels intervals: ``series [N, L]`` (standardised) -> ``[N,
        2·len(alphas), H]`` (lower, upper per ``alpha``, standardised). Default: ``None``."""
        return None

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


class Estimated(Classical):
    """Models with parameters: the ``refit`` protocol and, for ``once``, the training rows."""

    small_config = {"workers": 1, "progress": False}  # in-process: a pool costs more than a test's few series

    def __init__(self, seq_len, pred_len, periods=None, refit: str = "window", train_rows: int | None = None,
                 workers: int | None = None, progress: bool = True):
        choice("refit", refit, REFIT)
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


class Smoothing(Estimated):
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
        choice("objective", objective, OBJECTIVES)
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
            if getattr(self, "objective", "one_step") == "horizon":  # models pickled before the option: one_step
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
