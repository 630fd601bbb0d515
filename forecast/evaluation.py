"""Rolling-origin evaluation: cutoffs, forecasts from them, and their scores.

One implementation for every program that evaluates a model on the latest rows of a series
(the retrain's champion/challenger comparison; a backtest over many cutoffs):

* :func:`rolling_origins`: the cutoffs, the first row of each forecast horizon;
* :func:`forecasts_from` / :func:`actuals_at`: ``[W, H, C]`` forecasts of a served model from each
  cutoff (it sees only the rows before it) and the values that followed;
* :func:`score`, :func:`score_per_cutoff`, :func:`score_per_step`: the test metrics of
  :class:`forecast.metrics.ForecastMetrics`, z-scored with one per-channel scale for every model
  and in the data's units.

Rows are positions in a validated :class:`forecast.data.sources.TimeSeriesTable`; a cutoff ``c``
means "forecast rows ``c .. c + H - 1`` from rows ``0 .. c - 1``".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from forecast.data.sources import TimeSeriesTable
from forecast.errors import ConfigError, DataError
from forecast.metrics import ForecastMetrics

METRICS = ("mse", "mae", "mae_orig", "rmse_orig")


def rolling_origins(n_rows: int, windows: int, horizon: int, step: int | None = None, start: int = 0,
                    end: int | None = None, setting: str = "windows") -> list[int]:
    """The cutoffs of ``windows`` evaluation windows of ``horizon`` rows, ``step`` rows apart
    (default ``horizon``: back to back), the last one ending at row ``end`` (exclusive; default
    ``n_rows``, the end of the series). ``start`` is the earliest allowed cutoff: the rows the
    first forecast needs before it (a look-back, or a training span).

    ``cutoff_k = end - horizon - (windows - 1 - k)·step`` for ``k = 0 .. windows - 1``, oldest
    first. ``DataError`` when the first would come before ``start``; ``setting`` names the
    setting of ``windows`` in the message's fix (e.g. ``eval_windows``).
    """
    step = horizon if step is None else step
    for key, value in (("windows", windows), ("horizon", horizon), ("step", step)):
        if int(value) != value or value < 1:
            raise ConfigError(f"{setting if key == 'windows' else key}={value} must be a positive integer. "
                              "Fix: set it to 1 or more.")
    end = n_rows if end is None else end
    if not 0 <= end <= n_rows:
        raise ConfigError(f"end={end} is outside the series of {n_rows:,} rows. Fix: give a row between 0 and {n_rows}.")
    first = end - horizon - (windows - 1) * step
    if first < start:
        span = horizon + (windows - 1) * step
        apart = "" if step == horizon else f", {step} apart,"
        raise DataError(f"the data has {n_rows:,} rows; {windows} evaluation windows of {horizon} rows{apart} after a "
                        f"look-back of {start} need at least {start + span + (n_rows - end):,}. Fix: wait for more "
                        f"data, or lower {setting}.")
    return [first + k * step for k in range(windows)]


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


def score(pred: np.ndarray, actual: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """The test metrics of ``ForecastMetrics`` over every window, step and channel of ``pred``
    and ``actual`` (``[W, H, C]``, data units): z-scored (``mse``, ``mae``, with the per-channel
    ``std`` given) and in the data's units (``mae_orig``, ``rmse_orig``)."""
    metric = ForecastMetrics(std=std, c_out=len(std))  # mean 0: the errors do not depend on it
    metric.update(torch.from_numpy(pred / std), torch.from_numpy(actual / std))
    return {k: float(v) for k, v in metric.compute().items() if k in METRICS}


def score_per_cutoff(pred: np.ndarray, actual: np.ndarray, std: np.ndarray) -> list[dict[str, float]]:
    """:func:`score` of each window (cutoff) alone, oldest first."""
    return [score(pred[w : w + 1], actual[w : w + 1], std) for w in range(len(pred))]


def score_per_step(pred: np.ndarray, actual: np.ndarray, std: np.ndarray) -> list[dict[str, float]]:
    """:func:`score` of each horizon step over every window (step 1 first)."""
    return [score(pred[:, h : h + 1], actual[:, h : h + 1], std) for h in range(pred.shape[1])]
