"""Vectorised classical forecasts: many univariate series ``[N, L]`` at once, in float64.

Each function computes what a statsmodels call computes for one series, for a whole batch of
series with tensor operations (the seasonal decomposition, exponential smoothing with given
parameters and its heuristic start), so that a test set of thousands of windows × channels
costs a fraction of a second instead of thousands of Python-level fits. The tests check each
one against statsmodels itself.
"""

from __future__ import annotations

import math

import torch

Tensorish = float | torch.Tensor


def naive(x: torch.Tensor, horizon: int) -> torch.Tensor:
    """The last value repeated: ``[N, L] -> [N, H]``."""
    return x[:, -1:].expand(-1, horizon).clone()


def seasonal_naive(x: torch.Tensor, period: int, horizon: int) -> torch.Tensor:
    """The last ``period`` values repeated over the horizon: ``ŷ[L+h] = x[L - period + h mod period]``."""
    length = x.shape[-1]
    index = length - period + torch.arange(horizon, device=x.device) % period
    return x[:, index]


def drift(x: torch.Tensor, horizon: int) -> torch.Tensor:
    """The straight line through the first and the last value, extended: ``x[L-1] + h·(x[L-1]-x[0])/(L-1)``."""
    length = x.shape[-1]
    slope = (x[:, -1] - x[:, 0]) / max(length - 1, 1)
    steps = torch.arange(1, horizon + 1, dtype=x.dtype, device=x.device)
    return x[:, -1:] + slope[:, None] * steps


def centred_moving_average(x: torch.Tensor, period: int) -> torch.Tensor:
    """The trend of a classical decomposition: ``[N, L] -> [N, L]``, NaN in the first and the
    last ``period // 2`` positions where the average is not defined.

    The centred average of one cycle: ``period`` equal weights for an odd period, the
    2×``period`` average (half weights at both ends) for an even one. Computed from cumulative
    sums, O(N·L) time and memory whatever the period (a convolution would unfold ``period``
    copies of the batch).
    """
    n, length = x.shape
    half = period // 2
    csum = torch.cat([torch.zeros(n, 1, dtype=x.dtype, device=x.device), x.cumsum(dim=1)], dim=1)
    sums = csum[:, period:] - csum[:, :-period]  # sums[:, i] = x[:, i : i + period].sum()
    valid = sums / period if period % 2 else (sums[:, :-1] + sums[:, 1:]) / (2 * period)
    out = torch.full_like(x, math.nan)
    out[:, half : half + valid.shape[-1]] = valid
    return out


def seasonal_means(detrended: torch.Tensor, period: int, multiplicative: bool) -> torch.Tensor:
    """Per-phase mean of the detrended series (phase 0 = the first position), normalised to sum
    to zero (additive) or to average one (multiplicative): ``[N, L] -> [N, period]``."""
    n, length = detrended.shape
    cycles = -(-length // period)
    padded = torch.full((n, cycles * period), math.nan, dtype=detrended.dtype, device=detrended.device)
    padded[:, :length] = detrended
    means = torch.nanmean(padded.view(n, cycles, period), dim=1)
    if multiplicative:
        return means / means.mean(dim=1, keepdim=True)
    return means - means.mean(dim=1, keepdim=True)


def trend_and_pattern(x: torch.Tensor, period: int, multiplicative: bool = False):
    """The trend ``[N, L]`` (NaN at both ends) and the seasonal pattern ``[N, period]`` (phase 0 =
    the first position) of the classical decomposition, without materialising the other parts."""
    trend = centred_moving_average(x, period)
    detrended = x / trend if multiplicative else x - trend
    return trend, seasonal_means(detrended, period, multiplicative)


def seasonal_decompose(x: torch.Tensor, period: int, multiplicative: bool = False):
    """Classical decomposition (``statsmodels.tsa.seasonal.seasonal_decompose``, two-sided
    filter, no trend extrapolation) of every row: ``(trend, seasonal, resid)``, each ``[N, L]``;
    ``trend`` and ``resid`` are NaN where the moving average is undefined. Needs ``L ≥ 2·period``."""
    length = x.shape[-1]
    trend, pattern = trend_and_pattern(x, period, multiplicative)
    seasonal = pattern.repeat(1, -(-length // period))[:, :length]
    detrended = x / trend if multiplicative else x - trend
    resid = x / seasonal / trend if multiplicative else detrended - seasonal
    return trend, seasonal, resid


def _first_ten_regression(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intercept and slope of the least-squares line through ``y[:, :10]`` at ``t = 1..10``."""
    t = torch.arange(1, 11, dtype=y.dtype, device=y.device)
    first = y[:, :10]
    t_centred = t - t.mean()
    slope = (first * t_centred).sum(dim=1) / (t_centred**2).sum()
    intercept = first.mean(dim=1) - slope * t.mean()
    return intercept, slope


def heuristic_minimum(period: int | None) -> int:
    """Observations the heuristic start needs: 10, and two cycles and ``10 + 2·(period // 2)``
    with a season."""
    if not period:
        return 10
    return max(10, 2 * period, 10 + 2 * (period // 2))


def heuristic_initial_states(x: torch.Tensor, trend: bool, seasonal: str | None, period: int | None):
    """Initial level, trend and seasonal states of exponential smoothing from the start of each
    series (Hyndman & Athanasopoulos, FPP3 §8.6; statsmodels' ``initialization_method='heuristic'``):
    with a season, a classical decomposition of the first few cycles (at least two, at most five,
    enough for ten trend values) gives the seasonal states and the trend; a straight line through
    the first ten values of the trend (or of the series) gives the level and the slope.

    Returns ``(level [N], slope [N] or None, seasonal [N, period] or None)``.
    """
    n, length = x.shape
    if length < heuristic_minimum(period if seasonal else None):
        raise ValueError(f"the heuristic start needs {heuristic_minimum(period if seasonal else None)} observations, got {length}")
    season = None
    base = x
    if seasonal:
        need = 10 + 2 * (period // 2)
        cycles = max(min(5, length // period), -(-need // period))
        head = x[:, : cycles * period]
        trend_part = centred_moving_average(head, period)
        multiplicative = seasonal == "mul"
        detrended = head / trend_part if multiplicative else head - trend_part
        season = seasonal_means(detrended, period, multiplicative)
        half = period // 2
        base = trend_part[:, half : head.shape[1] - half]
    level, slope = _first_ten_regression(base)
    return level, (slope if trend else None), season


def exponential_smoothing(
    x: torch.Tensor,
    horizon: int,
    alpha: Tensorish,
    beta: Tensorish = 0.0,
    gamma: Tensorish = 0.0,
    phi: Tensorish = 1.0,
    trend: bool = False,
    seasonal: str | None = None,
    period: int | None = None,
    level0: torch.Tensor | None = None,
    slope0: torch.Tensor | None = None,
    season0: torch.Tensor | None = None,
    season_from_new_level: bool = False,
) -> torch.Tensor:
    """Holt-Winters exponential smoothing with given parameters, filtered over every row of
    ``x [N, L]`` and forecast ``horizon`` steps: ``[N, H]``.

    The recursion is statsmodels' ``ExponentialSmoothing`` (``.fit(..., optimized=False)``):
    with ``ℓ`` the level, ``b`` the (optionally damped, ``φ``) slope and ``s`` the season,
    ``ℓ_t = α(y_t − s_t) + (1−α)(ℓ + φb)``, ``b_t = β(ℓ_t − ℓ) + (1−β)φb``,
    ``s_{t+m} = γ(y_t − ℓ − φb) + (1−γ)s_t`` (additive season; ``/`` in place of ``−`` for a
    multiplicative one), forecast ``ℓ + (φ + … + φ^h)b (+ or ×) s``. Parameters are floats
    or per-row tensors ``[N]``; the initial states default to :func:`heuristic_initial_states`.

    ``season_from_new_level``: the multiplicative season of ``ETSModel`` instead,
    ``s_{t+m} = γ*·y_t/ℓ_t + (1−γ*)s_t`` with ``γ* = γ/(1−α)`` (for an additive season the two
    forms coincide).
    """
    n, length = x.shape
    dtype, device = x.dtype, x.device

    def as_tensor(v):
        return torch.as_tensor(v, dtype=dtype, device=device).expand(n) if not torch.is_tensor(v) or v.dim() == 0 else v.to(dtype)

    alpha, beta, gamma, phi = as_tensor(alpha), as_tensor(beta), as_tensor(gamma), as_tensor(phi)
    if level0 is None:
        level0, slope0, season0 = heuristic_initial_states(x, trend, seasonal, period)
    level = level0.clone()
    slope = slope0.clone() if trend and slope0 is not None else torch.zeros(n, dtype=dtype, device=device)
    if not trend:
        phi = torch.zeros(n, dtype=dtype, device=device)
    # one tensor per seasonal slot, replaced rather than written in place: the recursion stays
    # differentiable in the parameters (forecast.models.classical.horizon estimates them by autograd)
    season = list(season0.unbind(1)) if seasonal else None
    for t in range(length):
        y = x[:, t]
        damped = level + phi * slope
        if seasonal:
            j = t % period
            s = season[j]
            if seasonal == "mul":
                new_level = alpha * y / s + (1 - alpha) * damped
                if season_from_new_level:
                    gamma_star = gamma / (1 - alpha)
                    season[j] = gamma_star * y / new_level + (1 - gamma_star) * s
                else:
                    season[j] = gamma * y / damped + (1 - gamma) * s
            else:
                new_level = alpha * (y - s) + (1 - alpha) * damped
                season[j] = gamma * (y - damped) + (1 - gamma) * s
        else:
            new_level = alpha * y + (1 - alpha) * damped
        if trend:
            slope = beta * (new_level - level) + (1 - beta) * phi * slope
        level = new_level
    steps = torch.arange(1, horizon + 1, dtype=dtype, device=device)
    if trend:
        damping = torch.cumsum(phi[:, None] ** steps, dim=1)
        path = level[:, None] + damping * slope[:, None]
    else:
        path = level[:, None].expand(-1, horizon)
    if seasonal:
        index = (length + torch.arange(horizon, device=device)) % period
        cycle = torch.stack(season, dim=1)[:, index]
        path = path * cycle if seasonal == "mul" else path + cycle
    return path


def linear_trend(y: torch.Tensor, first: int, horizon_positions: torch.Tensor) -> torch.Tensor:
    """Least-squares line through ``y [N, P]`` (positions ``first … first+P-1``), evaluated at
    ``horizon_positions [H]``: ``[N, H]``."""
    p = y.shape[1]
    t = torch.arange(first, first + p, dtype=y.dtype, device=y.device)
    t_mean = t.mean()
    t_centred = t - t_mean
    denom = (t_centred**2).sum().clamp_min(1e-300)
    slope = (y * t_centred).sum(dim=1) / denom
    intercept = y.mean(dim=1)
    return intercept[:, None] + slope[:, None] * (horizon_positions.to(y.dtype) - t_mean)
