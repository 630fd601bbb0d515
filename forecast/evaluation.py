"""Rolling-origin evaluation: cutoffs, forecasts from them, and their scores.

One implementation for every program that evaluates a model on the latest rows of a series
(the retrain's champion/challenger comparison; a backtest over many cutoffs):

* :func:`rolling_origins`: the cutoffs, the first row of each forecast horizon, counted back
  from an end row or forward from a first cutoff; :func:`backtest_cutoffs` places them from a
  backtest's ``start``/``end`` settings (``test``, a timestamp or a row);
* :func:`refit_groups`: which cutoffs each (re)training of a backtest serves;
* :func:`forecasts_from` / :func:`actuals_at`: ``[W, H, C]`` forecasts of a served model from each
  cutoff (it sees only the rows before it) and the values that followed;
* :func:`score`, :func:`score_per_cutoff`, :func:`score_per_step`: the test metrics of
  :class:`forecast.metrics.ForecastMetrics`, z-scored (with one per-channel scale for every model,
  or one per window: the scaler of the rows each window's model was trained on) and in the
  data's units.

Rows are positions in a validated :class:`forecast.data.sources.TimeSeriesTable`; a cutoff ``c``
means "forecast rows ``c .. c + H - 1`` from rows ``0 .. c - 1``".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from forecast.data.sources import TimeSeriesTable
from forecast.errors import ConfigError, DataError
from forecast.metrics import METRIC_NAMES, ForecastMetrics

METRICS = ("mse", "mae", "mae_orig", "rmse_orig")  # the retrain's decision metrics
ALL_METRICS = METRIC_NAMES  # a backtest reports every test metric


def rolling_origins(n_rows: int, windows: int, horizon: int, step: int | None = None, start: int = 0,
                    end: int | None = None, setting: str = "windows", first: int | None = None) -> list[int]:
    """The cutoffs of ``windows`` evaluation windows of ``horizon`` rows, ``step`` rows apart
    (default ``horizon``: back to back), oldest first. ``start`` is the earliest allowed cutoff:
    the rows the first forecast needs before it (a look-back, or a training span); ``end`` is the
    row the windows end by (exclusive; default ``n_rows``, the end of the series).

    Without ``first`` the last window ends at ``end``:
    ``cutoff_k = end - horizon - (windows - 1 - k)·step``. With ``first`` the cutoffs go forward
    from it, ``cutoff_k = first + k·step``, and the last window must end by ``end``: a window that
    would run past it is refused (``DataError`` naming how many windows fit), never dropped.
    ``DataError`` too when the first cutoff would come before ``start``; ``setting`` names the
    setting of ``windows`` in the messages' fix (e.g. ``eval_windows``).
    """
    step = horizon if step is None else step
    for key, value in (("windows", windows), ("horizon", horizon), ("step", step)):
        if int(value) != value or value < 1:
            raise ConfigError(f"{setting if key == 'windows' else key}={value} must be a positive integer. "
                              "Fix: set it to 1 or more.")
    end = n_rows if end is None else end
    if not 0 <= end <= n_rows:
        raise ConfigError(f"end={end} is outside the series of {n_rows:,} rows. Fix: give a row between 0 and {n_rows}.")
    span = horizon + (windows - 1) * step
    apart = "" if step == horizon else f", {step} apart,"
    if first is None:
        first = end - span
        if first < start:
            raise DataError(f"the data has {n_rows:,} rows; {windows} evaluation windows of {horizon} rows{apart} after a "
                            f"look-back of {start} need at least {start + span + (n_rows - end):,}. Fix: wait for more "
                            f"data, or lower {setting}.")
    elif first < start:
        raise DataError(f"the first cutoff, row {first}, has {first} rows before it; the forecasts need {start}. "
                        f"Fix: start the cutoffs at row {start} or later.")
    elif first + span > end:
        fit = max((end - horizon - first) // step + 1, 0)
        raise DataError(f"{windows} evaluation windows of {horizon} rows{apart} from row {first} end at row "
                        f"{first + span}, past row {end} where they must end; {fit} fit. Fix: set {setting}={fit}"
                        f"{' or a smaller step' if windows > 1 else ''}, or start earlier.")
    return [first + k * step for k in range(windows)]


def row_of(value, dates, key: str, test_split=None, end: bool = False) -> int:
    """The row a backtest's ``start`` or ``end`` setting names: ``test`` (the test split of the
    data config: its first forecast row for ``start``, the row after its last for ``end``), a
    row number, or a timestamp (``start``: the first row at or after it; ``end``: the row after
    the last one at or before it, so that the last forecast may fall on it)."""
    n = len(dates)
    if isinstance(value, str) and value.strip().lower() == "test":
        if test_split is None:
            raise ConfigError(f"{key}=test: this data has no test split. Fix: give a timestamp or a row.")
        return int(test_split.end if end else test_split.border)
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value} is not a row, a timestamp or 'test'. Fix: e.g. {key}=test or {key}=2017-06-01.")
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        row = int(value)
        if not 0 <= row <= n:
            raise ConfigError(f"{key}={row} is outside the series of {n:,} rows. Fix: give a row between 0 and {n}.")
        return row
    try:
        when = pd.Timestamp(str(value))
    except (ValueError, TypeError):
        raise ConfigError(f"{key}={value!r} is not a row, a timestamp or 'test'. Fix: e.g. {key}=test or "
                          f"{key}={dates[n // 2]:%Y-%m-%d}.") from None
    if dates.tz is not None and when.tz is None:
        when = when.tz_localize(dates.tz)
    row = int(dates.searchsorted(when, side="right" if end else "left"))
    if not end and row >= n:
        raise DataError(f"{key}={value} is after the last row of the data ({dates[-1]}). Fix: give an earlier time.")
    return row


def backtest_cutoffs(dates, windows: int, horizon: int, step: int | None = None, start=None, end=None,
                     test_split=None, history: int = 1, prefix: str = "backtest") -> list[int]:
    """The cutoffs of a backtest, oldest first: ``windows`` of them ``step`` rows apart (default
    ``horizon``: windows that do not overlap).

    * ``start`` given (``test``, a timestamp or a row): the first cutoff is there and the others
      follow; the windows must end by ``end`` when it is given, else by the end of the test
      split (``start=test``) or of the series.
    * only ``end`` given: the last window ends there (the cutoffs are counted back from it).
    * neither: ``start=test``.

    A window that would run past where the windows must end is refused with the number that
    fit; a first cutoff with fewer than ``history`` rows before it (the longest look-back of the
    models) is refused too. Both are ``DataError``; bad settings are ``ConfigError``."""
    n = len(dates)
    if start is None and end is None:
        start = "test"
    setting = f"{prefix}.windows"
    if step is not None and (int(step) != step or step < 1):
        raise ConfigError(f"{prefix}.step={step} must be a positive integer (rows between cutoffs; null: the horizon). "
                          "Fix: set it to 1 or more.")
    if int(windows) != windows or windows < 1:
        raise ConfigError(f"{setting}={windows} must be a positive integer. Fix: set it to 1 or more.")
    limit = row_of(end, dates, f"{prefix}.end", test_split, end=True) if end is not None else None
    if start is None:
        try:
            return rolling_origins(n, int(windows), horizon, step, start=history, end=limit, setting=setting)
        except DataError:
            first = limit - horizon - (int(windows) - 1) * (step or horizon)
            raise DataError(_too_early(first, history, dates, prefix, "end")) from None
    first = row_of(start, dates, f"{prefix}.start", test_split)
    if limit is None:
        is_test = isinstance(start, str) and start.strip().lower() == "test"
        limit = int(test_split.end) if is_test and test_split is not None else n
        where = f"the end of the test split (row {limit}, {dates[limit - 1]}; the data runs to {dates[-1]})" if limit < n \
            else f"the end of the data ({dates[-1]})"
    else:
        where = f"{prefix}.end (row {limit}{f', {dates[limit - 1]}' if limit else ''})"
    if first < history:
        raise DataError(_too_early(first, history, dates, prefix, "start"))
    step = horizon if step is None else int(step)
    span = horizon + (int(windows) - 1) * step
    if first + span > limit:
        fit = max((limit - horizon - first) // step + 1, 0)
        raise DataError(f"{windows} windows of {horizon} rows, {step} apart, from {dates[first]} (row {first}) run past "
                        f"{where}: {fit} fit. Fix: set {setting}={fit}" + (" or a smaller step" if windows > 1 else "")
                        + f", an earlier {prefix}.start, or a later {prefix}.end.")
    return rolling_origins(n, int(windows), horizon, step, start=history, end=limit, setting=setting, first=first)


def _too_early(first: int, history: int, dates, prefix: str, key: str) -> str:
    when = f" ({dates[first]})" if 0 <= first < len(dates) else ""
    return (f"the first cutoff, row {first}{when}, has {max(first, 0)} rows before it, fewer than the {history} of the "
            f"longest look-back (data.seq_len). Fix: a later {prefix}.{key}, fewer {prefix}.windows, or a shorter "
            "data.seq_len.")


def refit_groups(cutoffs: list[int], refit) -> list[list[int]]:
    """The cutoffs each training of a backtest serves, in order: ``refit=false`` one training for
    all of them (before the first); an integer ``k`` a training every ``k`` cutoffs (before the
    first of each group of ``k``); ``true`` one per cutoff."""
    if refit is False or refit is None:
        return [list(cutoffs)]
    k = 1 if refit is True else refit
    if not isinstance(k, (int, float, np.integer)) or isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"backtest.refit={refit} must be false, true or a positive integer (train every k cutoffs). "
                          "Fix: e.g. backtest.refit=4.")
    k = int(k)
    return [list(cutoffs[i : i + k]) for i in range(0, len(cutoffs), k)]


def forecasts_from(model, table: TimeSeriesTable, cutoffs: list[int], outputs: list[str]) -> np.ndarray:
    """``[W, H, len(outputs)]``: the forecasts of ``model`` (a :class:`forecast.serving.ForecastModel`)
    from each cutoff, in the data's units; each sees only the rows before its cutoff, checked as
    a request to the served model would be."""
    preds = []
    for cutoff in cutoffs:
        history = dataclasses.replace(table, dates=table.dates[:cutoff], values=table.values[:cutoff])
        dates, values = model.spec.check_table(history, f"{table.path} (rows before {table.dates[cutoff]})")
        preds.append(model.forecast(dates, values)[outputs].to_numpy(dtype=np.float64))
    return np.stack(preds)


def actuals_at(table: TimeSeriesTable, cutoffs: list[int], horizon: int, outputs: list[str]) -> np.ndarray:
    """``[W, H, len(outputs)]``: the values of the ``horizon`` rows from each cutoff."""
    index = [table.columns.index(c) for c in outputs]
    return np.stack([table.values[c : c + horizon, index] for c in cutoffs])


def channel_scale(table: TimeSeriesTable, end: int, outputs: list[str]) -> np.ndarray:
    """Per-channel standard deviation of the rows before ``end`` (1 where it is 0): the one
    z-scoring that makes the scores of different models comparable."""
    index = [table.columns.index(c) for c in outputs]
    std = table.values[:end, index].std(axis=0)
    return np.where(std > 0, std, 1.0)


def score(pred: np.ndarray, actual: np.ndarray, std: np.ndarray, mase_scale: np.ndarray | None = None,
          metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    """The test metrics of ``ForecastMetrics`` over every window, step and channel of ``pred``
    and ``actual`` (``[W, H, C]``, data units): z-scored (``mse``, ``mae``, with the per-channel
    ``std`` given: ``[C]`` for every window, or ``[W, C]``, one scale per window) and in the
    data's units (``mae_orig``, ``rmse_orig``; ``mase_orig`` with ``mase_scale``, ``[C]`` or
    ``[W, C]`` like ``std``; ``smape_orig``). ``metrics`` selects the keys returned."""
    w, _, c = pred.shape
    std = np.broadcast_to(np.asarray(std, dtype=np.float64), (w, c))
    scale = np.broadcast_to(np.ones(c) if mase_scale is None else np.asarray(mase_scale, dtype=np.float64), (w, c))
    keys = np.concatenate([std, scale], axis=1)
    groups = np.unique(keys, axis=0)
    total = None
    # one metric per distinct scale (a refit of a backtest), their sums merged into the first
    for key in groups:
        rows = np.flatnonzero((keys == key).all(axis=1))
        part = _metric(key[:c], key[c:], "part" if total is not None else "total")
        part.update(torch.from_numpy(pred[rows] / key[:c]), torch.from_numpy(actual[rows] / key[:c]))
        if total is None:
            total = part
        else:
            total.merge_state(part.metric_state)
    return {k: float(v) for k, v in total.compute().items() if k in metrics}


_METRICS: dict = {}


def _metric(std: np.ndarray, mase_scale: np.ndarray, role: str) -> ForecastMetrics:
    """A reset :class:`ForecastMetrics` with this scale (mean 0: the errors do not depend on it),
    reused between calls: building one costs more than scoring a window with it."""
    key = (std.tobytes(), mase_scale.tobytes(), role)
    if key not in _METRICS:
        if len(_METRICS) > 64:
            _METRICS.clear()
        _METRICS[key] = ForecastMetrics(std=std, mase_scale=mase_scale, c_out=len(std))
    metric = _METRICS[key]
    metric.reset()
    return metric


def score_per_cutoff(pred: np.ndarray, actual: np.ndarray, std: np.ndarray, mase_scale: np.ndarray | None = None,
                     metrics: tuple[str, ...] = METRICS) -> list[dict[str, float]]:
    """:func:`score` of each window (cutoff) alone, oldest first."""
    w, _, c = pred.shape
    std = np.broadcast_to(np.asarray(std, dtype=np.float64), (w, c))
    scale = None if mase_scale is None else np.broadcast_to(np.asarray(mase_scale, dtype=np.float64), (w, c))
    return [score(pred[i : i + 1], actual[i : i + 1], std[i : i + 1], None if scale is None else scale[i : i + 1], metrics)
            for i in range(w)]


def score_per_step(pred: np.ndarray, actual: np.ndarray, std: np.ndarray, mase_scale: np.ndarray | None = None,
                   metrics: tuple[str, ...] = METRICS) -> list[dict[str, float]]:
    """:func:`score` of each horizon step over every window (step 1 first)."""
    return [score(pred[:, h : h + 1], actual[:, h : h + 1], std, mase_scale, metrics) for h in range(pred.shape[1])]
