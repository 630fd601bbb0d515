"""Prediction intervals: conformal calibration, interval columns and interval metrics.

One implementation for every model (deep and classical) and every program (train, backtest,
predict, the served pyfunc):

* :func:`check_levels`: the levels a user asks for (``intervals.levels=[80,95]``), integers in
  1..99, refused otherwise with the fix;
* :class:`Calibration`: the **raw calibration scores** ``[N, H, C]`` (data units) of ``N``
  forecasts from calibration cutoffs the model never trained on (by default every window of the
  validation split), one per horizon step and series. Any level is served from them, per step
  and per series, with the finite-sample quantile: the ``k``-th smallest of ``n`` scores,
  ``k = ⌈(n + 1)(1 − α)⌉`` (an infinite bound when ``k > n``: too few scores for that level).

  - ``conformal_error`` (symmetric, as neuralforecast's ``conformal_error``): scores
    ``|y − ŷ|``; the band of level ``1 − α`` is ``ŷ ± q_{1−α}``;
  - ``conformal_quantile`` (asymmetric): signed scores ``y − ŷ``; the upper bound is
    ``ŷ + q_{1−α/2}(y − ŷ)``, the lower ``ŷ − q_{1−α/2}(ŷ − y)`` (two one-sided conformal
    bounds of ``α/2`` each, so the band covers at least ``1 − α``).

  Under exchangeability of the calibration and test errors (per step and series) each band
  covers the truth with probability at least ``1 − α`` (and below ``1 − α + 1/(n+1)`` for
  continuous errors); drift between the calibration windows and the test windows breaks it.
* :class:`QuantileCalibration` (``cqr``, conformalised quantile regression; Romano et al., 2019)
  for a model trained with ``module.loss=quantile``: for each level whose ``α/2`` and
  ``1 − α/2`` quantiles ``q_lo``, ``q_hi`` the model forecasts, the scores
  ``E = max(q_lo − y, y − q_hi)`` ``[N, H, C]``; the band is ``[q_lo − Q, q_hi + Q]`` with ``Q``
  the same finite-sample ``(1 − α)``-quantile of ``E`` (negative when the model's band is too
  wide: CQR narrows it). Same guarantee, same assumption.
* :func:`interval_metrics`: coverage and mean width per level, the interval (Winkler) score,
  MSIS (M4: the interval score over the in-sample seasonal-naive MAE) and the mean weighted
  quantile loss over a quantile grid (gluonts' ``mean_wQuantileLoss``), all from
  ``[W, H, C]`` arrays.
* :func:`adaptive_alphas`: adaptive conformal inference (Gibbs & Candès, 2021), the level
  moved after each observed outcome.

Column names follow neuralforecast: ``<channel>-lo-<level>`` and ``<channel>-hi-<level>``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from forecast.errors import ConfigError, DataError

METHODS = ("conformal_error", "conformal_quantile")
CQR = "cqr"  # conformalised quantile regression, for a model trained with module.loss=quantile
NATIVE = "native"
CALIBRATIONS = ("val", "backtest")
WQL_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # gluonts' default grid
WQL_LEVELS = (20, 40, 60, 80)  # the central bands whose bounds are that grid (0.5: the point forecast)
FILE = "intervals.npz"


# ------------------------------------------------------------------ settings
def check_levels(levels, key: str = "intervals.levels") -> list[int]:
    """The levels as sorted unique integers in 1..99; ``ConfigError`` naming the bad one
    otherwise (0 and 100 have no interval, 150 is not a probability, text is not a level)."""
    if levels is None:
        return []
    if isinstance(levels, (int, float, str)) and not isinstance(levels, bool):
        levels = [levels]
    out = []
    for value in levels:
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(value, bool) or not isinstance(number, (int, float, np.integer, np.floating)) \
                or not math.isfinite(number):
            raise ConfigError(f"{key}: {value!r} is not a number. Fix: give levels in percent, e.g. {key}=[80,95].")
        if number != int(number) or not 1 <= number <= 99:
            why = "0 and 100 have no interval" if number in (0, 100) else "a level is a coverage in percent, 1 to 99"
            raise ConfigError(f"{key}: {value!r} is not an integer from 1 to 99 ({why}). Fix: e.g. {key}=[80,95].")
        out.append(int(number))
    return sorted(set(out))


def check_settings(node, key: str = "intervals") -> dict:
    """The ``intervals:`` node of a run (``method``, ``levels``, ``calibration``) checked, as a
    plain dict; ``method: null`` or no levels turns intervals off (``{}``)."""
    if node is None:
        return {}
    method = node.get("method")
    levels = check_levels(node.get("levels"), f"{key}.levels")
    if method is None or not levels:
        return {}
    if method not in (*METHODS, CQR, NATIVE):
        raise ConfigError(f"{key}.method={method!r} is not one of {[*METHODS, CQR, NATIVE, None]}. Fix: e.g. "
                          f"{key}.method=conformal_error, or null for no intervals.")
    calibration = node.get("calibration", "val")
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"{key}.calibration={calibration!r} is not one of {list(CALIBRATIONS)}. Fix: "
                          f"{key}.calibration=val (every window of the validation split) or {key}.calibration=backtest "
                          "(rolling-origin forecasts before the test split).")
    out = {"method": str(method), "levels": levels, "calibration": str(calibration)}
    if calibration == "backtest":
        if method == NATIVE:
            raise ConfigError(f"{key}.calibration=backtest with {key}.method=native: native intervals are not "
                              f"calibrated. Fix: {key}.method=conformal_error, or drop {key}.calibration.")
        if method == CQR:
            raise ConfigError(f"{key}.calibration=backtest with {key}.method=cqr: the calibration backtest keeps point "
                              f"forecasts, and CQR scores the quantile forecasts. Fix: drop {key}.calibration (CQR "
                              f"calibrates on the validation windows), or {key}.method=conformal_error.")
        for name in ("windows", "step"):
            value = node.get(name, 200 if name == "windows" else 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}.{name}={value!r} must be a positive integer. Fix: e.g. {key}.windows=200 "
                                  f"{key}.step=1.")
            out[name] = int(value)
        out["refit"] = node.get("refit", False)
    return out


def has_native(network) -> bool:
    """Whether ``network`` has its own prediction intervals (``intervals.method=native``)."""
    from forecast.models.base import Network
    from forecast.models.classical.base import Classical

    if isinstance(network, Classical):
        return type(network)._native is not Classical._native
    return type(network).native_intervals is not Network.native_intervals


# ------------------------------------------------------------------ the finite-sample quantile
def rank(n: int, p: float) -> int:
    """``⌈(n + 1)·p⌉``: the rank (1-based) of the finite-sample conformal ``p``-quantile of
    ``n`` scores; more than ``n`` means the bound is infinite. Exact for ``p`` in percent
    steps (``0.9`` is ``90/100``, not ``0.900…02``)."""
    exact = (n + 1) * p
    nearest = round(exact)
    return int(nearest) if abs(exact - nearest) < 1e-9 * max(1.0, exact) else int(math.ceil(exact))


def order_statistic(sorted_scores: np.ndarray, p: float) -> np.ndarray:
    """The finite-sample ``p``-quantile along axis 0 of scores sorted along axis 0 (``[N, …]``):
    the ``⌈(n+1)p⌉``-th smallest, ``+inf`` when that is past ``n``."""
    n = sorted_scores.shape[0]
    k = rank(n, p)
    if k > n:
        return np.full(sorted_scores.shape[1:], np.inf)
    return sorted_scores[max(k, 1) - 1]


# ------------------------------------------------------------------ calibration
@dataclass
class Calibration:
    """Raw conformal scores ``[N, H, C]`` in the data's units and what they came from.

    ``scores``: ``|y − ŷ|`` (``conformal_error``) or ``y − ŷ`` (``conformal_quantile``) of each
    calibration window, horizon step and forecast channel; ``levels``: the levels a forecast
    carries by default (any other in 1..99 can be asked for); ``source``: where the windows
    came from (``val``: the validation split; ``backtest``: rolling-origin forecasts before the
    test split, each by a model trained only on the rows before its cutoff)."""

    method: str
    scores: np.ndarray
    levels: list[int]
    source: str = "val"
    alphas: dict = field(default_factory=dict)  # {level: miscoverage} adapted by ACI (a retrain), used by default
    _sorted: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"intervals.method={self.method!r} is not one of {list(METHODS)}.")
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.ndim != 3 or self.scores.shape[0] < 1:
            raise DataError(f"calibration scores must be [N, H, C] with N ≥ 1, got shape {self.scores.shape}.")
        self.levels = check_levels(self.levels)
        self.alphas = {int(level): float(a) for level, a in (self.alphas or {}).items()}

    def with_alphas(self, alphas: dict[int, float]) -> "Calibration":
        """The same scores serving ``alphas`` (ACI's adapted miscoverage per level) by default."""
        return Calibration(self.method, self.scores, self.levels, self.source, alphas)

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    def _ordered(self, sign: int) -> np.ndarray:
        if sign not in self._sorted:
            self._sorted[sign] = np.sort(sign * self.scores, axis=0)
        return self._sorted[sign]

    def offsets(self, level: int, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(down, up)`` ``[H, C]``: the band of ``level`` is ``[ŷ − down, ŷ + up]``. ``alpha``:
        this miscoverage instead of ``1 − level/100`` (adaptive conformal inference): at or
        below 0 an unbounded band, at or above 1 an empty one (``ŷ``)."""
        alpha = 1 - check_levels([level])[0] / 100 if alpha is None else float(alpha)
        shape = self.scores.shape[1:]
        if alpha <= 0:
            return np.full(shape, np.inf), np.full(shape, np.inf)
        if alpha >= 1:
            return np.zeros(shape), np.zeros(shape)
        if self.method == "conformal_error":
            q = order_statistic(self._ordered(1), 1 - alpha)
            return q, q
        p = 1 - alpha / 2
        return order_statistic(self._ordered(-1), p), order_statistic(self._ordered(1), p)

    def bands(self, pred: np.ndarray, levels: Iterable[int] | None = None,
              alphas: dict[int, float] | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{level: (lo, hi)}`` around forecasts ``pred [..., H, C]`` (data units); ``alphas``:
        an adapted miscoverage per level (:func:`adapt_alphas`) instead of ``1 − level/100``
        (default: the stored :attr:`alphas` of a retrain's adaptation, where there are some)."""
        out = {}
        alphas = self.alphas if alphas is None else alphas
        for level in check_levels(self.levels if levels is None else levels):
            down, up = self.offsets(level, alphas.get(level))
            out[level] = (pred - down, pred + up)
        return out

    def quantile(self, pred: np.ndarray, tau: float) -> np.ndarray:
        """The conformal ``tau``-quantile forecast around ``pred [..., H, C]``: the bound of the
        central band whose edge is ``tau`` (``tau = 0.5``: the point forecast)."""
        if not 0 < tau < 1:
            raise ConfigError(f"quantile {tau} must lie strictly between 0 and 1.")
        if abs(tau - 0.5) < 1e-12:
            return np.array(pred, dtype=np.float64)
        upper = tau > 0.5
        if self.method == "conformal_error":
            q = order_statistic(self._ordered(1), abs(2 * tau - 1))
            return pred + q if upper else pred - q
        p = tau if upper else 1 - tau
        return pred + order_statistic(self._ordered(1), p) if upper else pred - order_statistic(self._ordered(-1), p)

    # -------------------------------------------------------------- storage
    def save(self, path: Path) -> Path:
        """``intervals.npz``: the scores (float32: the served bands differ from float64 ones by
        less than 1e-6 relative) and a JSON header (method, levels, source, n)."""
        header = {"method": self.method, "levels": self.levels, "source": self.source, "n": self.n,
                  "shape": list(self.scores.shape), "alphas": {str(k): v for k, v in self.alphas.items()}}
        np.savez_compressed(path, scores=self.scores.astype(np.float32), header=np.asarray(json.dumps(header)))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "Calibration | QuantileCalibration":
        """The calibration saved in ``path``: a :class:`QuantileCalibration` for ``cqr``."""
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header["method"] == CQR:
                return QuantileCalibration(data["scores"].astype(np.float64), header["quantiles"],
                                           header["score_levels"], header["levels"], header.get("source", "val"))
            return cls(header["method"], data["scores"].astype(np.float64), header["levels"], header.get("source", "val"),
                       {int(k): v for k, v in header.get("alphas", {}).items()})

    def metadata(self) -> dict:
        """What the logged model's metadata says about its intervals."""
        return {"method": self.method, "levels": self.levels, "calibration": self.source, "windows": self.n,
                **({"aci_alphas": {str(k): round(v, 6) for k, v in self.alphas.items()}} if self.alphas else {}),
                "stored": "raw scores per window, horizon step and channel (intervals.npz): any level 1-99 is served",
                "columns": "<channel>-lo-<level>, <channel>-hi-<level>"}


def calibrate(pred: np.ndarray, actual: np.ndarray, method: str, levels, source: str = "val") -> Calibration:
    """The :class:`Calibration` of forecasts ``pred`` against ``actual`` (``[N, H, C]``, data
    units) of windows the model did not train on."""
    pred, actual = np.asarray(pred, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if pred.shape != actual.shape:
        raise DataError(f"calibration forecasts {pred.shape} and actuals {actual.shape} differ in shape.")
    error = actual - pred
    if not np.isfinite(error).all():
        raise DataError("a calibration forecast or actual is not finite; conformal scores need finite errors. Fix: "
                        "repair the validation rows (data.fill) or check the model's forecasts.")
    return Calibration(method, np.abs(error) if method == "conformal_error" else error, levels, source)


# ------------------------------------------------------------------ conformalised quantile regression
def quantile_pairs(quantiles: Iterable[float]) -> dict[int, tuple[int, int]]:
    """``{level: (i_lo, i_hi)}``: each level (integer percent) whose ``α/2`` and ``1 − α/2`` are
    both in the ascending grid ``quantiles``, with their positions in it."""
    grid = [round(float(t), 6) for t in quantiles]
    out = {}
    for i, tau in enumerate(grid):
        level = round((1 - 2 * tau) * 100, 6)
        if tau < 0.5 and level == int(level) and round(1 - tau, 6) in grid:
            out[int(level)] = (i, grid.index(round(1 - tau, 6)))
    return dict(sorted(out.items()))


def require_pairs(quantiles: Iterable[float], levels: Iterable[int], key: str = "intervals.levels") -> dict[int, tuple[int, int]]:
    """:func:`quantile_pairs` of the asked ``levels``; ``ConfigError`` naming a level whose two
    quantiles the model was not trained on."""
    pairs = quantile_pairs(quantiles)
    for level in check_levels(levels, key):
        if level not in pairs:
            alpha = 1 - level / 100
            raise ConfigError(
                f"{key}: level {level} needs the quantiles {round(alpha / 2, 6)} and {round(1 - alpha / 2, 6)}, which the "
                f"model was not trained on (its grid: {list(quantiles)}; CQR serves the levels {list(pairs)}). Fix: ask for "
                f"one of those levels, or train with module.quantiles including both (the default grid follows "
                f"intervals.levels).")
    return {level: pairs[level] for level in check_levels(levels, key)}


@dataclass
class QuantileCalibration:
    """Conformalised quantile regression (``cqr``): the scores ``E = max(q_lo − y, y − q_hi)``
    ``[N, H, C, P]`` (data units) of ``N`` calibration windows, one per horizon step, channel
    and level of ``score_levels`` (``P`` of them: every level whose two quantiles are in the
    trained grid ``quantiles``). The band of level ``1 − α`` around quantile forecasts
    ``[..., H, C, Q]`` is ``[q_lo − Q, q_hi + Q]``, ``Q`` the finite-sample ``(1 − α)``-quantile
    of that level's scores per step and channel (:func:`order_statistic`, as
    :class:`Calibration`). Its methods take the quantile forecasts where :class:`Calibration`'s
    take the point forecast."""

    scores: np.ndarray
    quantiles: list[float]
    score_levels: list[int]
    levels: list[int]
    source: str = "val"
    method: str = CQR
    _sorted: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.quantiles = [round(float(t), 6) for t in self.quantiles]
        self.score_levels = [int(v) for v in self.score_levels]
        if self.scores.ndim != 4 or self.scores.shape[0] < 1 or self.scores.shape[-1] != len(self.score_levels):
            raise DataError(f"CQR scores must be [N, H, C, P] with N ≥ 1 and P = {len(self.score_levels)} levels, got "
                            f"shape {self.scores.shape}.")
        self.levels = list(require_pairs(self.quantiles, self.levels))

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    def _ordered(self, level: int) -> np.ndarray:
        if level not in self._sorted:
            if level not in self.score_levels:
                require_pairs(self.quantiles, [level], "levels")
            self._sorted[level] = np.sort(self.scores[..., self.score_levels.index(level)], axis=0)
        return self._sorted[level]

    def offsets(self, level: int, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(down, up)`` ``[H, C]``: the band of ``level`` is ``[q_lo − down, q_hi + up]`` (both
        ``Q``); ``alpha``: this miscoverage instead of ``1 − level/100`` (the pair of quantiles
        stays the level's)."""
        level = check_levels([level])[0]
        sorted_scores = self._ordered(level)
        alpha = 1 - level / 100 if alpha is None else float(alpha)
        shape = sorted_scores.shape[1:]
        if alpha <= 0:
            return np.full(shape, np.inf), np.full(shape, np.inf)
        q = np.zeros(shape) if alpha >= 1 else order_statistic(sorted_scores, 1 - alpha)
        return q, q

    def bands(self, quantiles: np.ndarray, levels: Iterable[int] | None = None,
              alphas: dict[int, float] | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{level: (lo, hi)}`` ``[..., H, C]`` from quantile forecasts ``[..., H, C, Q]``."""
        quantiles = np.asarray(quantiles, dtype=np.float64)
        if quantiles.ndim < 3 or quantiles.shape[-1] != len(self.quantiles) \
                or quantiles.shape[-3:-1] != self.scores.shape[1:3]:
            raise DataError(f"CQR bands need quantile forecasts [..., H, C, Q] = [..., {self.scores.shape[1]}, "
                            f"{self.scores.shape[2]}, {len(self.quantiles)}], got shape {quantiles.shape} (point "
                            "forecasts?). Fix: pass the network's quantile forecasts (QuantileNetwork.quantiles).")
        pairs = require_pairs(self.quantiles, self.levels if levels is None else levels, "levels")
        out = {}
        for level, (i_lo, i_hi) in pairs.items():
            down, up = self.offsets(level, (alphas or {}).get(level))
            out[level] = (quantiles[..., i_lo] - down, quantiles[..., i_hi] + up)
        return out

    def quantile(self, quantiles: np.ndarray, tau: float) -> np.ndarray:
        """The conformalised ``tau``-quantile of quantile forecasts ``[..., H, C, Q]``: the bound
        of the CQR band of level ``|2τ − 1|`` (``tau = 0.5``: the median), as
        :meth:`Calibration.quantile` is for the conformal bands."""
        if not 0 < tau < 1:
            raise ConfigError(f"quantile {tau} must lie strictly between 0 and 1.")
        if abs(tau - 0.5) < 1e-12:
            return self.point(quantiles)
        level = int(round(abs(2 * tau - 1) * 100))
        lo, hi = self.bands(quantiles, [level])[level]
        return hi if tau > 0.5 else lo

    def point(self, quantiles: np.ndarray) -> np.ndarray:
        """The median ``[..., H, C]`` of quantile forecasts ``[..., H, C, Q]``."""
        return np.asarray(quantiles, dtype=np.float64)[..., self.quantiles.index(0.5)]

    # -------------------------------------------------------------- storage
    def save(self, path: Path) -> Path:
        """``intervals.npz`` as :meth:`Calibration.save`, with the grid and the scored levels."""
        header = {"method": self.method, "levels": self.levels, "source": self.source, "n": self.n,
                  "shape": list(self.scores.shape), "quantiles": self.quantiles, "score_levels": self.score_levels}
        np.savez_compressed(path, scores=self.scores.astype(np.float32), header=np.asarray(json.dumps(header)))
        return Path(path)

    def metadata(self) -> dict:
        """What the logged model's metadata says about its intervals."""
        return {"method": self.method, "levels": self.levels, "calibration": self.source, "windows": self.n,
                "quantiles": self.quantiles,
                "stored": f"CQR scores per window, horizon step, channel and level {self.score_levels} (intervals.npz): "
                          "those levels are served",
                "columns": "<channel>-lo-<level>, <channel>-hi-<level>"}


def calibrate_quantiles(quantiles: np.ndarray, actual: np.ndarray, grid: Iterable[float], levels,
                        source: str = "val") -> QuantileCalibration:
    """The :class:`QuantileCalibration` of quantile forecasts ``[N, H, C, Q]`` (ascending along
    ``Q`` as ``grid``) against ``actual [N, H, C]`` (data units) of windows the model did not
    train on: the CQR scores of every level the grid has both quantiles of."""
    quantiles, actual = np.asarray(quantiles, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    grid = [round(float(t), 6) for t in grid]
    if quantiles.shape != (*actual.shape, len(grid)):
        raise DataError(f"calibration quantile forecasts {quantiles.shape} do not match the actuals {actual.shape} "
                        f"and the {len(grid)} quantiles of the grid.")
    if not (np.isfinite(quantiles).all() and np.isfinite(actual).all()):
        raise DataError("a calibration forecast or actual is not finite; conformal scores need finite errors. Fix: "
                        "repair the validation rows (data.fill) or check the model's forecasts.")
    require_pairs(grid, levels)
    pairs = quantile_pairs(grid)
    scores = np.stack([np.maximum(quantiles[..., i] - actual, actual - quantiles[..., j]) for i, j in pairs.values()], -1)
    return QuantileCalibration(scores, grid, list(pairs), levels, source)


# ------------------------------------------------------------------ metrics
def coverage(actual, lo, hi) -> float:
    """Share of the actuals inside ``[lo, hi]`` (bounds included)."""
    actual = np.asarray(actual)
    return float(((actual >= lo) & (actual <= hi)).mean())


def width(lo, hi) -> float:
    """Mean ``hi − lo`` (data units)."""
    return float(np.mean(np.asarray(hi) - np.asarray(lo)))


def interval_score(actual, lo, hi, level: int) -> np.ndarray:
    """The interval (Winkler) score of each point: ``(hi − lo) + 2/α·(lo − y)·1[y < lo] +
    2/α·(y − hi)·1[y > hi]`` with ``α = 1 − level/100`` (Gneiting & Raftery, 2007)."""
    alpha = 1 - level / 100
    actual, lo, hi = (np.asarray(a, dtype=np.float64) for a in (actual, lo, hi))
    return (hi - lo) + 2 / alpha * np.clip(lo - actual, 0, None) + 2 / alpha * np.clip(actual - hi, 0, None)


def msis(actual, lo, hi, level: int, scale) -> float:
    """M4's mean scaled interval score: the mean interval score of each channel divided by its
    in-sample seasonal-naive MAE ``scale [C]`` (the MASE denominator; ``[W, C]``: one per window
    of ``[W, H, C]`` points), averaged over channels."""
    score = interval_score(actual, lo, hi, level)
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 2:  # [W, C]: one scale per window (a backtest's refits), points [W, H, C]
        score = score / scale[:, None, :]
        scale = np.ones(score.shape[-1])
    per_channel = score.reshape(-1, score.shape[-1]).mean(axis=0) / scale
    return float(np.nanmean(per_channel))


def quantile_loss(actual, q, tau: float) -> np.ndarray:
    """The pinball loss ``max(τ·(y − q), (τ − 1)·(y − q))`` of each point."""
    diff = np.asarray(actual, dtype=np.float64) - np.asarray(q, dtype=np.float64)
    return np.maximum(tau * diff, (tau - 1) * diff)


def wql(actual, quantiles: dict[float, np.ndarray]) -> float:
    """Mean weighted quantile loss (gluonts' ``mean_wQuantileLoss``, the CRPS stand-in):
    ``mean_τ 2·Σ pinball_τ(y, q_τ) / Σ |y|`` over every window, step and channel."""
    actual = np.asarray(actual, dtype=np.float64)
    denominator = np.abs(actual).sum()
    if denominator == 0:
        return float("nan")
    return float(np.mean([2 * quantile_loss(actual, q, tau).sum() / denominator for tau, q in quantiles.items()]))


def interval_metrics(actual: np.ndarray, bands: dict[int, tuple[np.ndarray, np.ndarray]], scale=None,
                     quantiles: dict[float, np.ndarray] | None = None) -> dict[str, float]:
    """``coverage_<L>`` (0–1), ``width_<L>`` (data units), ``winkler_<L>`` (mean interval
    score, data units), ``msis_<L>`` (with ``scale``) per level, and ``wql`` (with
    ``quantiles``), over every point of ``actual [W, H, C]``."""
    out = {}
    for level, (lo, hi) in sorted(bands.items()):
        out[f"coverage_{level}"] = coverage(actual, lo, hi)
        out[f"width_{level}"] = width(lo, hi)
        out[f"winkler_{level}"] = float(interval_score(actual, lo, hi, level).mean())
        if scale is not None:
            out[f"msis_{level}"] = msis(actual, lo, hi, level, scale)
    if quantiles:
        out["wql"] = wql(actual, quantiles)
    return out


def evaluate(calibration: Calibration, pred: np.ndarray, actual: np.ndarray, scale=None,
             levels: Iterable[int] | None = None, grid=WQL_QUANTILES) -> dict[str, float]:
    """The interval metrics of ``calibration``'s bands around ``pred`` against ``actual``."""
    bands = calibration.bands(pred, levels)
    quantiles = {tau: calibration.quantile(pred, tau) for tau in grid}
    return interval_metrics(actual, bands, scale, quantiles)


def band_quantiles(pred: np.ndarray, bands: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[float, np.ndarray]:
    """The quantile forecasts a set of bands gives: ``α/2`` and ``1 − α/2`` of each level and
    the point forecast as the median (for the wQL of intervals that come without a calibration,
    e.g. native ones)."""
    out = {0.5: np.asarray(pred, dtype=np.float64)}
    for level, (lo, hi) in bands.items():
        alpha = 1 - level / 100
        out[round(alpha / 2, 6)], out[round(1 - alpha / 2, 6)] = lo, hi
    return out


# ------------------------------------------------------------------ adaptive conformal inference
def adaptive_alphas(scores: np.ndarray, calibration: np.ndarray, alpha: float, gamma: float = 0.005) -> np.ndarray:
    """Adaptive conformal inference (Gibbs & Candès, 2021) for one stream of outcomes: the
    miscoverage level used at each time, ``α_{t+1} = α_t + γ·(α − err_t)``, where ``err_t`` is 1
    when the score ``scores[t]`` (e.g. ``|y − ŷ|``) fell outside the band of level ``1 − α_t``
    built from the sorted ``calibration`` scores. Returns ``[T]`` the ``α_t`` used (an ``α_t``
    at or below 0 gives an infinite band, at or above 1 an empty one)."""
    calibration = np.sort(np.asarray(calibration, dtype=np.float64))
    out = np.empty(len(scores))
    a = alpha
    for t, s in enumerate(scores):
        out[t] = a
        q = adaptive_bound(calibration, a)
        a = a + gamma * (alpha - float(s > q))
    return out


def adaptive_bound(sorted_calibration: np.ndarray, alpha: float) -> float:
    """The band half-width of miscoverage ``alpha`` from sorted scores: ``+inf`` for ``alpha ≤ 0``
    (or too few scores), ``0`` for ``alpha ≥ 1``, else the finite-sample quantile."""
    if alpha >= 1:
        return 0.0
    if alpha <= 0:
        return np.inf
    return float(order_statistic(sorted_calibration[:, None], 1 - alpha)[0])


def adapt_alphas(calibration: Calibration, pred: np.ndarray, actual: np.ndarray, levels: Iterable[int],
                 gamma: float) -> dict[int, float]:
    """Adaptive conformal inference over recent windows, oldest first (``pred``/``actual``
    ``[W, H, C]``, data units): for each level, ``α`` starts at ``1 − level/100`` (or at the
    calibration's stored :attr:`Calibration.alphas`, adapted before) and after each
    window moves by ``γ·(α_target − miss)``, ``miss`` the share of that window's actuals outside
    its band at the current ``α``. Returns the ``α`` to forecast with next, per level."""
    if not 0 < float(gamma) < 1:
        raise ConfigError(f"aci.gamma={gamma} must lie strictly between 0 and 1. Fix: e.g. aci.gamma=0.005.")
    out = {}
    for level in check_levels(levels):
        target = 1 - level / 100
        a = calibration.alphas.get(level, target)  # a retrain's adaptation goes on from the last one's
        for w in range(len(pred)):
            lo, hi = calibration.bands(pred[w], [level], {level: a})[level]
            miss = 1.0 - coverage(actual[w], lo, hi)
            a = a + float(gamma) * (target - miss)
        out[level] = a
    return out
