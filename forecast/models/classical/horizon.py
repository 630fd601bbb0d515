"""Exponential smoothing parameters chosen for the horizon that is forecast.

statsmodels estimates α, β, γ, φ by the one-step-ahead fit (squared errors or likelihood). For a
forecast ``H`` steps ahead from a short look-back that favours a level that chases the last
values (on ETTh1 α ≈ 0.8 per channel), and the forecast then stays close to the naive one. Here
the parameters are those that minimise the mean squared ``H``-step error of the forecasts this
model makes: windows of ``seq_len`` values cut from the training split, each filtered from its
own heuristic start by :func:`kernels.exponential_smoothing` (the recursion the test forecasts
use) and scored on the ``H`` values that follow it. Only training rows are used.

The recursion is differentiable, so every channel's four parameters are fitted at once by
L-BFGS on their logits, from the best point of a small grid.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from forecast.models.classical import kernels

# statsmodels' bounds for the damping (ExponentialSmoothing: 0.8-0.98 by default; a little wider)
PHI_RANGE = (0.8, 0.995)
START_GRID = {"alpha": (0.02, 0.1, 0.4), "beta": (0.01,), "gamma": (0.02, 0.1, 0.3), "phi": (0.9,)}


def training_windows(train: torch.Tensor, seq_len: int, horizon: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` evenly spaced windows of each row of ``train [C, T]``: ``(x [C, W, L], y [C, W, H])``."""
    span = seq_len + horizon
    length = train.shape[1]
    if length < span:
        raise ValueError(f"the training split has {length} rows, fewer than seq_len + pred_len = {span}")
    starts = torch.from_numpy(np.unique(np.linspace(0, length - span, count).round().astype(np.int64)))
    steps = torch.arange(span)
    cut = train[:, starts[:, None] + steps]  # [C, W, L + H]
    return cut[..., :seq_len], cut[..., seq_len:]


def _forecast(x, horizon, params, trend, damped, seasonal, period, season_from_new_level):
    c, w, length = x.shape
    alpha, beta, gamma, phi = (p.repeat_interleave(w) for p in params)
    out = kernels.exponential_smoothing(
        x.reshape(c * w, length), horizon, alpha, beta if trend else 0.0, gamma if seasonal else 0.0,
        phi if trend and damped else 1.0, trend=trend, seasonal=seasonal, period=period,
        season_from_new_level=season_from_new_level,
    )
    return out.reshape(c, w, horizon)


def _params(logits: torch.Tensor) -> list[torch.Tensor]:
    alpha, beta, gamma, phi = torch.sigmoid(logits).unbind(1)
    return [alpha, beta, gamma, PHI_RANGE[0] + (PHI_RANGE[1] - PHI_RANGE[0]) * phi]


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def fit(train: np.ndarray, seq_len: int, horizon: int, trend: bool, damped: bool, seasonal: str | None,
        period: int | None, fixed: dict | None = None, windows: int = 256, season_from_new_level: bool = False,
        max_iter: int = 60) -> np.ndarray:
    """Per channel of ``train [T, C]``, the ``[α, β, γ, φ]`` (0 for an absent component, φ = 1
    undamped) that minimise the mean squared ``horizon``-step error over ``windows`` evenly
    spaced windows of ``seq_len`` values: ``[C, 4]``. ``fixed`` holds values that are given
    (``smoothing_level``, ``smoothing_trend``, ``smoothing_seasonal``, ``damping_trend``)."""
    series = torch.from_numpy(np.ascontiguousarray(np.asarray(train, dtype=np.float64).T))
    x, y = training_windows(series, seq_len, horizon, windows)
    channels = x.shape[0]
    fixed = fixed or {}
    names = ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend")
    free = torch.tensor([names[i] not in fixed and (i != 1 or trend) and (i != 2 or bool(seasonal))
                         and (i != 3 or (trend and damped)) for i in range(4)])

    def loss_of(logits):
        params = _params(logits)
        for i, name in enumerate(names):
            if name in fixed:
                params[i] = torch.full_like(params[i], float(fixed[name]))
        pred = _forecast(x, horizon, params, trend, damped, seasonal, period, season_from_new_level)
        return ((pred - y) ** 2).mean(dim=(1, 2))  # [C]

    def phi_logit(phi):
        return _logit((phi - PHI_RANGE[0]) / (PHI_RANGE[1] - PHI_RANGE[0]))

    # the best start of a small grid, per channel
    best = None
    with torch.no_grad():
        for a, b, g, p in itertools.product(*START_GRID.values()):
            logits = torch.tensor([_logit(a), _logit(b), _logit(g), phi_logit(p)], dtype=torch.float64).repeat(channels, 1)
            loss = loss_of(logits)
            if best is None:
                best_loss, best = loss, logits
            else:
                better = loss < best_loss
                best_loss = torch.where(better, loss, best_loss)
                best = torch.where(better[:, None], logits, best)
    logits = best.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([logits], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_of(logits).sum()  # channels are independent: one sum, per-channel gradients
        loss.backward()
        logits.grad[:, ~free] = 0.0
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        params = torch.stack(_params(logits), dim=1)
        for i, name in enumerate(names):
            if name in fixed:
                params[:, i] = float(fixed[name])
        if not trend:
            params[:, 1] = 0.0
        if not seasonal:
            params[:, 2] = 0.0
        if not (trend and damped):
            params[:, 3] = 1.0
    return params.numpy()
