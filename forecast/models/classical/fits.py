"""One statsmodels estimation or forecast per univariate series (NumPy in, NumPy out).

These run inside worker processes (:mod:`forecast.models.classical.parallel`), one call per
(window, channel) series, so they are module-level functions of plain arrays and keyword
arguments. Parameters of exponential smoothing are returned in the form of
:func:`forecast.models.classical.kernels.exponential_smoothing` ``[α, β, γ, φ]``, which then
forecasts every series at once; the other models return their forecast ``[H]``.
"""

from __future__ import annotations

import numpy as np



def estimate_holt_winters(y: np.ndarray, trend: bool, damped: bool, seasonal: str | None, period: int | None,
                          fixed: dict | None = None) -> np.ndarray:
    """``ExponentialSmoothing(y, trend, damped_trend, seasonal, seasonal_periods,
    initialization_method='heuristic').fit(**fixed)``: the smoothing parameters ``[α, β, γ, φ]``
    (0 for an absent component, φ = 1 undamped); ``fixed`` holds the ones not estimated."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    model = ExponentialSmoothing(
        y, trend="add" if trend else None, damped_trend=bool(trend and damped), seasonal=seasonal,
        seasonal_periods=period if seasonal else None, initialization_method="heuristic",
    )
    params = model.fit(**(fixed or {})).params
    return np.array([
        params["smoothing_level"],
        params["smoothing_trend"] if trend else 0.0,
        params["smoothing_seasonal"] if seasonal else 0.0,
        params["damping_trend"] if trend and damped else 1.0,
    ])


def estimate_ets(y: np.ndarray, error: str, trend: bool, damped: bool, seasonal: str | None, period: int | None) -> np.ndarray:
    """``ETSModel(y, error, trend, damped_trend, seasonal, seasonal_periods,
    initialization_method='heuristic').fit()`` (maximum likelihood): its smoothing parameters
    as ``[α, β, γ, φ]`` of the Holt-Winters recursion.

    The state-space form updates the slope by ``β_ETS·e`` where Holt-Winters uses
    ``β·(ℓ_t − ℓ_{t−1} − φb) = β·α·e``, hence ``β = β_ETS / α``; the level and (additive)
    seasonal updates coincide, for additive and multiplicative errors alike, so the point
    forecasts are the same (a multiplicative season: see ``season_from_new_level``).
    """
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    model = ETSModel(
        y, error=error, trend="add" if trend else None, damped_trend=bool(trend and damped), seasonal=seasonal,
        seasonal_periods=period if seasonal else None, initialization_method="heuristic",
    )
    fitted = model.fit(disp=False)
    params = dict(zip(model.param_names, np.asarray(fitted.params)))
    alpha = params["smoothing_level"]
    return np.array([
        alpha,
        params["smoothing_trend"] / alpha if trend and alpha > 0 else 0.0,
        params.get("smoothing_seasonal", 0.0) if seasonal else 0.0,
        params["damping_trend"] if trend and damped else 1.0,
    ])


# ---------------------------------------------------------------- STL / MSTL + a model


def _deseasonalise(y: np.ndarray, periods: list[int], seasonal_smoother: int | list | None, robust: bool):
    """``(adjusted, seasonal [L, k])``: STL for one period (``statsmodels.tsa.seasonal.STL``, as
    ``STLForecast`` uses it), MSTL for several."""
    from statsmodels.tsa.seasonal import MSTL, STL

    if len(periods) == 1:
        smoother = seasonal_smoother if isinstance(seasonal_smoother, int) else 7
        result = STL(y, period=periods[0], seasonal=smoother, robust=robust).fit()
        seasonal = np.asarray(result.seasonal)[:, None]
    else:
        windows = list(seasonal_smoother) if isinstance(seasonal_smoother, (list, tuple)) else None
        result = MSTL(y, periods=periods, windows=windows, stl_kwargs={"robust": robust}).fit()
        seasonal = np.asarray(result.seasonal).reshape(len(y), -1)
        if seasonal.shape[1] != len(periods):  # MSTL drops periods of half the series or more
            raise ValueError(f"MSTL kept {seasonal.shape[1]} of the periods {periods} on {len(y)} values")
    return y - seasonal.sum(axis=1), seasonal


def _seasonal_forecast(seasonal: np.ndarray, periods: list[int], horizon: int) -> np.ndarray:
    """Each seasonal component's last cycle repeated (``STLForecast``'s seasonal forecast), summed."""
    length = seasonal.shape[0]
    steps = np.arange(horizon)
    return sum(seasonal[length - p + steps % p, i] for i, p in enumerate(periods))


def _adjusted_model(adjusted: np.ndarray, model: str, ets: dict, order: tuple):
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    if model == "ets":
        return ETSModel(adjusted, error="add", trend=ets["trend"], damped_trend=bool(ets["trend"] and ets["damped"]),
                        initialization_method="heuristic")
    return ARIMA(adjusted, order=tuple(order), trend="c" if order[1] == 0 else "n")


def stl_forecast(y: np.ndarray, horizon: int, periods: list[int], model: str, ets: dict, order: tuple,
                 seasonal_smoother=None, robust: bool = False, params: np.ndarray | None = None) -> np.ndarray:
    """Deseasonalise with STL (one period) or MSTL (several), forecast the adjusted series
    (trend + remainder) with ``ETSModel`` or ``ARIMA``, add each seasonal component's last cycle:
    ``statsmodels.tsa.forecasting.stl.STLForecast`` for one period, its MSTL generalisation for
    several. With ``params`` (the ``refit: once`` protocol) the model is not estimated but only
    filtered over the window with them (``.smooth(params)``)."""
    adjusted, seasonal = _deseasonalise(y, periods, seasonal_smoother, robust)
    fitted_model = _adjusted_model(adjusted, model, ets, order)
    if params is None:
        result = fitted_model.fit(disp=False) if model == "ets" else fitted_model.fit()
    else:
        result = fitted_model.smooth(params)
    return np.asarray(result.forecast(horizon)) + _seasonal_forecast(seasonal, periods, horizon)


def estimate_stl_model(y: np.ndarray, periods: list[int], model: str, ets: dict, order: tuple,
                       seasonal_smoother=None, robust: bool = False) -> np.ndarray:
    """The parameters of the adjusted-series model of :func:`stl_forecast`, estimated on ``y``
    (the training split, for ``refit: once``)."""
    adjusted, _ = _deseasonalise(y, periods, seasonal_smoother, robust)
    fitted_model = _adjusted_model(adjusted, model, ets, order)
    result = fitted_model.fit(disp=False) if model == "ets" else fitted_model.fit()
    return np.asarray(result.params)


# ---------------------------------------------------------------- Theta, ARIMA


def theta_forecast(y: np.ndarray, horizon: int, period: int | None, method: str, deseasonalize: bool,
                   use_test: bool, theta: float) -> np.ndarray:
    """``ThetaModel(y, period, deseasonalize, use_test, method).fit().forecast(horizon, theta)``:
    simple exponential smoothing plus half the least-squares slope (θ = 2), on the classically
    deseasonalised series when the season is significant."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    model = ThetaModel(y, period=period, deseasonalize=deseasonalize and bool(period), use_test=use_test, method=method)
    return np.asarray(model.fit().forecast(horizon, theta=theta))


def _arima(y: np.ndarray, order, seasonal_order=None) -> object:
    """``ARIMA(y, order, seasonal_order=(P, D, Q, m))`` with a constant when nothing is differenced."""
    from statsmodels.tsa.arima.model import ARIMA

    order = tuple(int(v) for v in order)
    seasonal = tuple(int(v) for v in seasonal_order) if seasonal_order else (0, 0, 0, 0)
    return ARIMA(y, order=order, seasonal_order=seasonal, trend="c" if order[1] == 0 and seasonal[1] == 0 else "n")


def _best_arima(y: np.ndarray, orders: list, seasonal_order=None):
    """``(order, results)`` of the order of ``orders`` with the lowest AIC: ``ARIMA(y, order,
    seasonal_order, trend='c' without differencing).fit()`` for each; orders whose fit fails are skipped."""
    best, errors = None, []
    for order in orders:
        try:
            result = _arima(y, order, seasonal_order).fit()
        except Exception as error:  # noqa: BLE001 - one order failing is not the series failing
            errors.append(f"{tuple(order)}: {error}")
            continue
        if np.isfinite(result.aic) and (best is None or result.aic < best[1].aic):
            best = (tuple(int(v) for v in order), result)
    if best is None:
        raise ValueError("no ARIMA order could be estimated (" + "; ".join(errors)[:300] + ")")
    return best


def select_arima(y: np.ndarray, orders: list, seasonal_order=None) -> tuple[tuple, np.ndarray]:
    """The lowest-AIC order of ``orders`` on ``y`` and its parameters (``refit: once``)."""
    order, result = _best_arima(y, orders, seasonal_order)
    return order, np.asarray(result.params)


def arima_forecast(y: np.ndarray, horizon: int, orders: list | None = None, order=None, params=None,
                   seasonal_order=None) -> np.ndarray:
    """The forecast of the lowest-AIC order of ``orders`` estimated on ``y`` (``refit: window``),
    or of ``order`` with given ``params`` filtered over ``y`` (``refit: once``:
    ``ARIMA(y, order, seasonal_order).filter(params)``; the forecast needs the filtered state only)."""
    if params is None:
        return np.asarray(_best_arima(y, orders, seasonal_order)[1].forecast(horizon))
    return np.asarray(_arima(y, order, seasonal_order).filter(np.asarray(params)).forecast(horizon))


# ---------------------------------------------------------------- native prediction intervals


def arima_intervals(y: np.ndarray, horizon: int, alphas: list, orders: list | None = None, order=None, params=None,
                    seasonal_order=None) -> np.ndarray:
    """``[2·len(alphas), H]``: statsmodels' own prediction intervals of :func:`arima_forecast`'s
    model (``get_forecast(H).conf_int(alpha)``: Gaussian, from the state-space forecast
    variance), lower then upper bound for each ``alpha``."""
    if params is None:
        result = _best_arima(y, orders, seasonal_order)[1]
    else:
        result = _arima(y, order, seasonal_order).filter(np.asarray(params))
    forecast = result.get_forecast(horizon)
    rows = []
    for alpha in alphas:
        bounds = np.asarray(forecast.conf_int(alpha=alpha))
        rows += [bounds[:, 0], bounds[:, 1]]
    return np.stack(rows)


def ets_intervals(y: np.ndarray, horizon: int, alphas: list, params, error: str, trend: bool, damped: bool,
                  seasonal: str | None, period: int | None) -> np.ndarray:
    """``[2·len(alphas), H]``: statsmodels' own prediction intervals of ``ETSModel`` with the
    smoothing parameters ``params`` (``[α, β, γ, φ]`` of the Holt-Winters recursion, see
    :func:`estimate_ets`) filtered over ``y`` with heuristic initial states
    (``ETSModel(...).smooth(params).get_prediction(...).pred_int(alpha)``: analytic variances
    for the additive-error models, simulated for the others)."""
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    # a Series: statsmodels' PredictionResults reads the index of its mean
    model = ETSModel(pd.Series(y), error=error, trend="add" if trend else None, damped_trend=bool(trend and damped),
                     seasonal=seasonal, seasonal_periods=period if seasonal else None, initialization_method="heuristic")
    alpha, beta, gamma, phi = (float(v) for v in params)
    values = {"smoothing_level": alpha, "smoothing_trend": beta * alpha, "smoothing_seasonal": gamma,
              "damping_trend": phi}
    result = model.smooth(np.array([values[name] for name in model.param_names]))
    prediction = result.get_prediction(start=len(y), end=len(y) + horizon - 1)
    rows = []
    for a in alphas:
        bounds = np.asarray(prediction.pred_int(alpha=a))
        rows += [bounds[:, 0], bounds[:, 1]]
    return np.stack(rows)
