"""Ensembles of forecasting models: the weights, the combination, and the served ensemble.

One implementation for the offline backtest (``python backtest.py models=[…] ensemble.method=mean``)
and the served model (:class:`EnsembleModel`, logged by :func:`log_ensemble`):

* :func:`fit_weights`: the members' weights ``[M]`` (non-negative, summing to 1; 0 for a member
  left out by ``top_k``) from their forecasts of **selection windows** and what followed;
* :func:`combine`: the ensemble forecast ``[..., H, C]`` from the members' ``[M, ..., H, C]``
  (data units): the weighted mean, or for ``median`` the median of the members with a weight.

Methods (``ensemble.method``):

- ``mean``: equal weights;
- ``median``: the median of the members' forecasts, per window, step and channel;
- ``inverse_error``: weights ``∝ 1 / MSE`` of each member on the selection windows;
- ``stacking``: the non-negative weights summing to 1 that minimise the squared error of the
  weighted mean on the selection windows (least squares on the simplex: non-negative least
  squares on the members' Gram matrix with the sum-to-one constraint as a heavily weighted
  extra row, then normalised; :func:`stacking_weights`);

and ``top_k``: only the ``k`` members with the lowest selection MSE take part (before combining).
The selection MSE is z-scored per channel (``scale``: the z-scoring of the training rows), as
the platform's ``mse``, so that a channel with large values does not decide alone.

**No leakage.** The selection windows are the members' **validation windows** (the last rows
before the first cutoff of a refit, which no member trained on; the same windows the members'
conformal intervals are calibrated on). A cutoff's weights therefore come from rows before it,
never from the windows they are scored on; the ensemble's intervals are conformal on the
*ensemble's own* errors on those windows (:func:`forecast.intervals.calibrate`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from forecast import intervals, serving
from forecast.errors import ConfigError, DataError

METHODS = ("mean", "median", "inverse_error", "stacking")
FILE = "ensemble.json"


# ------------------------------------------------------------------ settings
def check_settings(node, members: list[str], key: str = "ensemble", where: str = "this backtest",
                   listed: str = "models") -> dict:
    """The ``ensemble:`` node (``method``, ``top_k``) checked against the member labels, as a
    plain dict (``{}``: no ensemble). ``ConfigError`` with the fix for an unknown method, a
    ``top_k`` outside 1..members, or fewer than two members (``where`` has them, listed in the
    setting ``listed``: a backtest's ``models``, a retrain's ``candidates``)."""
    if node is None or node.get("method") is None:
        if node is not None and node.get("top_k") is not None:
            raise ConfigError(f"{key}.top_k={node.get('top_k')} without {key}.method. Fix: set {key}.method "
                              f"(one of {', '.join(METHODS)}) or drop {key}.top_k.")
        return {}
    method = node.get("method")
    if method not in METHODS:
        raise ConfigError(f"{key}.method={method!r} is not one of {list(METHODS)}. Fix: e.g. {key}.method=mean, or "
                          f"null for no ensemble.")
    if len(members) < 2:
        raise ConfigError(f"{key}.method={method}: an ensemble combines several models, {where} has "
                          f"{len(members)} ({', '.join(members) or 'none'}). Fix: list two or more in {listed}=[…], e.g. "
                          f"{listed}=[dlinear,ets,seasonalnaive].")
    top_k = node.get("top_k")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= len(members):
            raise ConfigError(f"{key}.top_k={top_k!r}: the ensemble keeps the best k of its {len(members)} members "
                              f"({', '.join(members)}). Fix: an integer from 1 to {len(members)}, or null for all.")
        top_k = int(top_k)
    return {"method": str(method), "top_k": top_k}


def label(settings: dict) -> str:
    """The ensemble's column in a backtest's table, e.g. ``ensemble_mean_top2``."""
    top = f"_top{settings['top_k']}" if settings.get("top_k") else ""
    return f"ensemble_{settings['method']}{top}"


# ------------------------------------------------------------------ weights
def selection_mse(preds: np.ndarray, actual: np.ndarray, scale=None) -> np.ndarray:
    """``[M]``: each member's MSE on the selection windows (``preds [M, N, H, C]``, ``actual
    [N, H, C]``), z-scored per channel by ``scale [C]`` when given."""
    preds, actual = np.asarray(preds, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    error = preds - actual[None]
    if scale is not None:
        error = error / np.asarray(scale, dtype=np.float64)
    return (error ** 2).reshape(len(preds), -1).mean(axis=1)


def top(mse: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the ``k`` members with the lowest MSE (all for ``None``; ties: the earlier member)."""
    order = np.argsort(np.asarray(mse), kind="stable")
    return np.sort(order[: (len(order) if k is None else int(k))])


def stacking_weights(preds: np.ndarray, actual: np.ndarray, scale=None) -> np.ndarray:
    """``[M]``: ``argmin ‖Σ_m w_m·ŷ_m − y‖²`` over ``w ≥ 0, Σ w = 1`` on the selection windows.

    Solved as non-negative least squares (``scipy.optimize.nnls``) on the ``M × M`` Cholesky
    factor of the members' Gram matrix (the same objective as the full ``N·H·C``-row problem, up
    to a constant) with one extra row ``λ·1 = λ`` that enforces the sum (``λ`` a thousand times
    the Gram matrix's scale); the result is then normalised to sum exactly to 1."""
    from scipy.optimize import nnls

    preds, actual = np.asarray(preds, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if scale is not None:
        preds, actual = preds / np.asarray(scale), actual / np.asarray(scale)
    p = preds.reshape(len(preds), -1).T                      # [N·H·C, M]
    y = actual.reshape(-1)
    gram = p.T @ p
    gram += np.eye(len(gram)) * 1e-10 * max(np.trace(gram), 1e-300)  # identical members: still positive definite
    r = np.linalg.cholesky(gram).T                            # gram = rᵀ r
    b = np.linalg.solve(r.T, p.T @ y)                         # ‖p w − y‖² = ‖r w − b‖² + const
    lam = 1e3 * np.sqrt(np.trace(gram) / len(gram))
    w, _ = nnls(np.vstack([r, np.full((1, len(gram)), lam)]), np.concatenate([b, [lam]]))
    if w.sum() <= 0:
        raise DataError("stacking found no positive weight on the selection windows. Fix: ensemble.method=mean.")
    return w / w.sum()


def fit_weights(method: str, preds: np.ndarray, actual: np.ndarray, top_k: int | None = None,
                scale=None) -> np.ndarray:
    """``[M]`` weights of the members from their forecasts of the selection windows
    ``preds [M, N, H, C]`` and the actuals ``[N, H, C]`` (data units; ``scale [C]`` z-scores the
    errors). Members outside the ``top_k`` get 0; the others sum to 1 (for ``median`` they are
    equal and only say who takes part). The windows given must precede those the weights are
    used on (see the module docstring)."""
    preds = np.asarray(preds, dtype=np.float64)
    if method not in METHODS:
        raise ConfigError(f"ensemble.method={method!r} is not one of {list(METHODS)}.")
    if preds.ndim != 4 or preds.shape[1:] != np.shape(actual):
        raise DataError(f"selection forecasts {preds.shape} must be [M, N, H, C] over actuals {np.shape(actual)}.")
    if not (np.isfinite(preds).all() and np.isfinite(actual).all()):
        raise DataError("a member's selection forecast or an actual is not finite; the weights need finite errors. "
                        "Fix: repair the validation rows (data.fill) or leave the member out.")
    mse = selection_mse(preds, actual, scale)
    chosen = top(mse, top_k)
    w = np.zeros(len(preds))
    if method in ("mean", "median"):
        w[chosen] = 1.0 / len(chosen)
    elif method == "inverse_error":
        inverse = 1.0 / np.maximum(mse[chosen], 1e-300)
        w[chosen] = inverse / inverse.sum()
    else:
        w[chosen] = stacking_weights(preds[chosen], actual, scale)
    return w


def fit(method: str, preds: np.ndarray, actual: np.ndarray, top_k: int | None = None, scale=None,
        interval: dict | None = None) -> tuple[np.ndarray, intervals.Calibration | None]:
    """The weights (:func:`fit_weights`) and, with ``interval`` (``{"method", "levels"}``, e.g.
    :func:`forecast.intervals.check_settings` of a run's ``intervals:``), the ensemble's own
    conformal calibration on the same selection windows: what :func:`log_ensemble` stores."""
    weights = fit_weights(method, preds, actual, top_k, scale)
    if not interval:
        return weights, None
    return weights, intervals.calibrate(combine(preds, weights, method), actual, interval["method"],
                                        interval["levels"], interval.get("calibration", "val"))


def check_weights(method: str, weights, members: int) -> np.ndarray:
    """``weights`` as ``[M]`` non-negative numbers summing to 1 (``None``: equal weights, as
    ``mean`` and ``median`` use); ``ConfigError`` otherwise."""
    if method not in METHODS:
        raise ConfigError(f"ensemble method {method!r} is not one of {list(METHODS)}.")
    if weights is None:
        if method in ("inverse_error", "stacking"):
            raise ConfigError(f"method={method} needs the weights fitted on selection windows (fit_weights). Fix: "
                              "pass weights=[…], one per member.")
        return np.full(members, 1.0 / members)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != members or not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1) > 1e-6:
        raise ConfigError(f"weights={list(np.asarray(weights).reshape(-1))}: need {members} non-negative numbers "
                          "summing to 1, one per member. Fix: fit_weights(...) gives them.")
    return w


def combine(preds: np.ndarray, weights: np.ndarray, method: str) -> np.ndarray:
    """The ensemble forecast ``[..., H, C]`` of members' ``preds [M, ..., H, C]``: the weighted
    mean, or for ``median`` the median of the members whose weight is positive."""
    preds, weights = np.asarray(preds, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if method == "median":
        return np.median(preds[weights > 0], axis=0)
    return np.tensordot(weights, preds, axes=1)


# ------------------------------------------------------------------ the served ensemble
class EnsembleModel(serving.ForecastModel):
    """The pyfunc of an ensemble: the members' logged models (copied inside it, artifacts
    ``member_0`` …), ``ensemble.json`` (method, weights, the members' URIs) and, with intervals,
    ``intervals.npz``: the ensemble's own conformal scores.

    Its input is a member's: the same columns, step and date column (every member must agree),
    at least the longest member's ``seq_len`` rows, checked by the same
    :class:`forecast.serving.InputSpec` path as a single model; each member forecasts from its own
    last ``seq_len`` rows. Its output is a member's: the future dates, one column per forecast
    channel and the ``-lo-``/``-hi-`` columns of its calibration (``params={"levels": […]}``
    as for any model)."""

    def load(self, artifacts: dict[str, str]) -> "EnsembleModel":
        import mlflow.pyfunc

        spec = json.loads(Path(artifacts["ensemble"]).read_text())
        self.method = spec["method"]
        self.member_uris = list(spec["members"])
        self.members = []
        for i in range(len(self.member_uris)):
            with serving.quiet_mlflow():
                self.members.append(mlflow.pyfunc.load_model(artifacts[f"member_{i}"]).unwrap_python_model())
        self.weights = check_weights(self.method, spec["weights"], len(self.members))
        self.spec = common_spec([m.spec for m in self.members], self.member_uris)
        longest = max(self.members, key=lambda m: m.spec.seq_len)
        self.cfg, self.lineage, self.scaler = longest.cfg, longest.lineage, longest.scaler
        self.network = None
        self.calibration = intervals.Calibration.load(artifacts["intervals"]) if artifacts.get("intervals") else None
        return self

    def member_forecasts(self, dates: pd.DatetimeIndex, values: np.ndarray) -> np.ndarray:
        """``[M, H, C]``: each member's forecast from its own last ``seq_len`` rows."""
        outputs = self.spec.outputs
        return np.stack([m.forecast(dates[-m.spec.seq_len:], values[-m.spec.seq_len:])[outputs].to_numpy(np.float64)
                         for m in self.members])

    def forecast_with_quantiles(self, dates: pd.DatetimeIndex, values: np.ndarray) -> tuple[pd.DataFrame, None]:
        """The combined forecast (the members' points; an ensemble's intervals are conformal on its
        own errors, so it has no quantile forecasts): what :meth:`ForecastModel.forecast` and
        ``forecast_table`` call."""
        pred = combine(self.member_forecasts(dates, values), self.weights, self.method)
        result = pd.DataFrame(pred, columns=self.spec.outputs)
        result.insert(0, self.spec.date_col, self.spec.future_dates(dates[-1]).as_unit("ns"))
        return result, None


SHARED_SPEC = ("columns", "date_col", "freq", "features", "pred_len", "c_out", "fill")


def common_spec(specs: list, names: list[str]):
    """The ensemble's :class:`forecast.serving.InputSpec`: the longest member's (its ``seq_len``
    rows feed every member); ``ConfigError`` when the members disagree on the input or output."""
    for key in SHARED_SPEC:
        values = [getattr(s, key) for s in specs]
        if any(v != values[0] for v in values[1:]):
            raise ConfigError(f"ensemble members disagree on {key}: " + ", ".join(f"{n}: {v}" for n, v in zip(names, values))
                              + ". Fix: ensemble models trained on the same data, channels and horizon.")
    longest = max(specs, key=lambda s: s.seq_len)
    return replace(longest)


def log_ensemble(member_uris: list[str], method: str, weights=None, calibration: intervals.Calibration | None = None,
                 tags: dict | None = None, metadata: dict | None = None):
    """Log an ensemble of logged forecast models as one pyfunc model (:class:`EnsembleModel`)
    to the active MLflow run (MLflow starts one if none is active); returns MLflow's
    ``ModelInfo`` (``.model_uri`` to register or serve, as any model's).

    ``member_uris``: the members' models (``runs:/<id>/model``, ``models:/<name>@<alias>``, …,
    read from the current tracking URI), copied into the ensemble; ``method``: one of
    :data:`METHODS`; ``weights``: ``[M]`` non-negative, summing to 1 (from :func:`fit_weights`;
    ``None``: equal, for ``mean``/``median``); ``calibration``: the ensemble's own conformal
    scores (``intervals.calibrate(combine(member val forecasts), actuals, …)``), or ``None`` for
    points only. ``metadata``: more to record in the model's metadata (e.g. the selection scores)."""
    import mlflow
    import mlflow.pyfunc

    if len(member_uris) < 1:
        raise ConfigError("log_ensemble: no member. Fix: give the members' model URIs.")
    weights = check_weights(method, weights, len(member_uris))
    with tempfile.TemporaryDirectory(prefix="forecast-ensemble-") as tmp:
        artifacts = {}
        for i, uri in enumerate(member_uris):
            with serving.quiet_mlflow():
                artifacts[f"member_{i}"] = mlflow.artifacts.download_artifacts(artifact_uri=uri,
                                                                               dst_path=str(Path(tmp) / f"member_{i}"))
        artifacts["ensemble"] = str(Path(tmp) / FILE)
        Path(artifacts["ensemble"]).write_text(json.dumps(
            {"method": method, "weights": weights.tolist(), "members": list(member_uris)}, indent=1))
        if calibration is not None:
            artifacts["intervals"] = str(calibration.save(Path(tmp) / intervals.FILE))
        model = EnsembleModel().load(artifacts)
        longest = max(range(len(model.members)), key=lambda i: model.members[i].spec.seq_len)
        example = mlflow.models.Model.load(artifacts[f"member_{longest}"]).load_input_example(artifacts[f"member_{longest}"])
        output = model.predict(None, example)
        info = {"input_contract": model.spec.contract(),
                "ensemble": {"method": method, "weights": weights.tolist(), "members": list(member_uris)},
                **({"intervals": calibration.metadata()} if calibration is not None else {}), **(metadata or {})}
        with serving.quiet_mlflow():
            return mlflow.pyfunc.log_model(name=serving.MODEL_NAME, python_model=EnsembleModel(), artifacts=artifacts,
                                           signature=serving.signature(output), input_example=example,
                                           pip_requirements=serving.requirements(), tags=tags, metadata=info)
