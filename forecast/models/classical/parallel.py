"""Run one statsmodels estimation per univariate series, over a process pool, counting what goes wrong.

statsmodels fits are Python-heavy and independent per (window, channel) series, so they are
spread over worker processes in chunks (a few per worker, so that the pool overhead is small
and the load balanced). Each call runs under its own ``warnings.catch_warnings``: warnings are
counted (convergence warnings apart), never printed; a call that raises or returns non-finite
values is marked failed so the caller can fall back, and counted.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class FitCounts:
    """What happened over a set of fits: warnings caught and series whose estimation failed."""

    series: int = 0
    failed: int = 0
    warnings: int = 0
    convergence_warnings: int = 0
    messages: dict[str, int] = field(default_factory=dict)  # first line of each failure message -> count

    def add(self, other: "FitCounts") -> None:
        self.series += other.series
        self.failed += other.failed
        self.warnings += other.warnings
        self.convergence_warnings += other.convergence_warnings
        for message, n in other.messages.items():
            self.messages[message] = self.messages.get(message, 0) + n


def _is_convergence(category: type) -> bool:
    return category.__name__ == "ConvergenceWarning"


def call_counted(fn: Callable, y: np.ndarray, kwargs: dict, size: int | None, counts: FitCounts):
    """``fn(y, **kwargs)`` as a float array of ``size`` values, or NaNs if it raised or returned
    anything non-finite; with ``size=None`` whatever it returns, or ``None`` if it raised.
    Warnings and failures go into ``counts``."""
    counts.series += 1
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            out = fn(y, **kwargs)
            if size is not None:
                out = np.asarray(out, dtype=np.float64).reshape(-1)
                if out.shape[0] != size or not np.all(np.isfinite(out)):
                    raise FloatingPointError("non-finite or mis-shaped result")
        except Exception as error:  # noqa: BLE001 - any failure of one fit falls back; it is counted
            counts.failed += 1
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
            counts.messages[message] = counts.messages.get(message, 0) + 1
            out = None if size is None else np.full(size, np.nan)
    counts.warnings += len(caught)
    counts.convergence_warnings += sum(_is_convergence(w.category) for w in caught)
    return out


def _run_chunk(fn: Callable, series: np.ndarray, kwargs_list: list[dict], size: int | None) -> tuple[list, FitCounts]:
    counts = FitCounts()
    return [call_counted(fn, y, kwargs, size, counts) for y, kwargs in zip(series, kwargs_list)], counts


def _limit_threads() -> None:
    """Worker initialiser: one BLAS/OpenMP thread per process (the pool is the parallelism)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn/scipy stacks
        pass


# Imported once by the fork server, so that workers start with statsmodels loaded; not
# ``__main__`` (the default), which need not be importable (a REPL, ``python -``, a notebook).
PRELOAD = ["forecast.models.classical.fits", "statsmodels.tsa.api", "statsmodels.tsa.arima.model",
           "statsmodels.tsa.exponential_smoothing.ets", "statsmodels.tsa.forecasting.stl",
           "statsmodels.tsa.forecasting.theta"]


def _context():
    """``forkserver`` where the platform has it (no fork of this possibly threaded process),
    else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def resolve_workers(workers: int | None) -> int:
    """``None`` or 0: one per core (``os.cpu_count()``)."""
    return max(1, int(workers) if workers else (os.cpu_count() or 1))


def map_series(
    fn: Callable,
    series: np.ndarray,
    kwargs_list: list[dict],
    size: int | None,
    workers: int = 1,
    progress: bool = False,
    desc: str = "fits",
) -> tuple[np.ndarray | list, FitCounts]:
    """``fn(series[i], **kwargs_list[i])`` for every row of ``series [N, L]``.

    Returns ``(results, counts)``: ``results`` is ``[N, size]`` with NaN rows where a call
    failed, or (``size=None``) the list of whatever the calls returned, ``None`` where one
    failed. ``workers=1`` (or at most four series per worker) runs in this process; otherwise a
    ``ProcessPoolExecutor`` of ``workers`` processes takes chunks of rows (see :func:`_context`).
    """
    from tqdm.auto import tqdm

    n = len(series)
    total = FitCounts()
    results: list = [None] * n
    chunk = max(1, min(256, math.ceil(n / (max(workers, 1) * 8))))
    bar = tqdm(total=n, desc=desc, unit="series", disable=not progress or n == 0, mininterval=1.0, leave=False)
    try:
        if workers <= 1 or n <= 4 * workers:  # a handful of fits: not worth starting processes
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                results[start:stop], counts = _run_chunk(fn, series[start:stop], kwargs_list[start:stop], size)
                total.add(counts)
                bar.update(stop - start)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_limit_threads) as pool:
                futures = {
                    pool.submit(_run_chunk, fn, series[start : start + chunk], kwargs_list[start : start + chunk], size): start
                    for start in range(0, n, chunk)
                }
                for future in as_completed(futures):
                    start = futures[future]
                    chunk_results, counts = future.result()
                    results[start : start + len(chunk_results)] = chunk_results
                    total.add(counts)
                    bar.update(len(chunk_results))
    finally:
        bar.close()
    if size is None:
        return results, total
    return (np.stack(results) if n else np.full((0, size), np.nan)), total
