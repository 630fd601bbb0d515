"""Calendar features of timestamps, as the long-term forecasting literature encodes them.

Each feature is a calendar position scaled to [-0.5, 0.5] (the ``timeF`` encoding of the
Informer/Autoformer code bases, itself from GluonTS). Which features a series gets depends on
its resolution: hourly data gets hour-of-day, day-of-week, day-of-month, day-of-year; 15-minute
data adds minute-of-hour; and so on (:data:`FEATURES`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.errors import ConfigError


def _field(d: pd.DatetimeIndex, name: str) -> np.ndarray:
    """A calendar field as a float64 array: the arithmetic below then runs on numpy arrays, not on
    pandas indexes (each pandas operation builds a new index; a served forecast computes these
    features on every request)."""
    return np.asarray(getattr(d, name), dtype=np.float64)


def _second(d):
    return _field(d, "second") / 59.0 - 0.5


def _minute(d):
    return _field(d, "minute") / 59.0 - 0.5


def _hour(d):
    return _field(d, "hour") / 23.0 - 0.5


def _day_of_week(d):
    return _field(d, "dayofweek") / 6.0 - 0.5


def _day_of_month(d):
    return (_field(d, "day") - 1) / 30.0 - 0.5


def _day_of_year(d):
    return (_field(d, "dayofyear") - 1) / 365.0 - 0.5


def _month(d):
    return (_field(d, "month") - 1) / 11.0 - 0.5


def _week(d):
    return (d.isocalendar().week.to_numpy(dtype=np.float64) - 1) / 52.0 - 0.5


# resolution letter -> features, finest first (the order of the reference code)
FEATURES = {
    "a": [],
    "m": [_month],
    "w": [_day_of_month, _week],
    "d": [_day_of_week, _day_of_month, _day_of_year],
    "h": [_hour, _day_of_week, _day_of_month, _day_of_year],
    "t": [_minute, _hour, _day_of_week, _day_of_month, _day_of_year],
    "s": [_second, _minute, _hour, _day_of_week, _day_of_month, _day_of_year],
}


def resolution(freq: str | pd.offsets.BaseOffset) -> str:
    """The calendar resolution letter (s, t, h, d, w, m, a) of a pandas frequency."""
    offset = to_offset(freq)
    try:
        step = pd.Timedelta(offset)
    except ValueError:  # calendar offsets (weeks, months, business days) have no fixed length
        code = offset.rule_code.upper()
        for prefix, letter in (("W", "w"), ("Y", "a"), ("BY", "a"), ("A", "a"), ("Q", "m"),
                               ("BQ", "m"), ("M", "m"), ("BM", "m"), ("SM", "m"), ("CBM", "m"),
                               ("B", "d"), ("C", "d")):
            if code.startswith(prefix):
                return letter
        raise ConfigError(f"no calendar features are defined for frequency '{offset.freqstr}'. Fix: set data.calendar_freq (e.g. h, d, w, m).")
    if step < pd.Timedelta(minutes=1):
        return "s"
    if step < pd.Timedelta(hours=1):
        return "t"
    if step < pd.Timedelta(days=1):
        return "h"
    if step < pd.Timedelta(days=7):
        return "d"
    if step < pd.Timedelta(days=28):
        return "w"
    return "m"


def time_features(dates: pd.DatetimeIndex, freq: str | pd.offsets.BaseOffset) -> np.ndarray:
    """Calendar features ``[T, F]`` (float32, each in [-0.5, 0.5]) of ``dates`` at ``freq``."""
    funcs = FEATURES[resolution(freq)]
    if not funcs:
        return np.zeros((len(dates), 0), dtype=np.float32)
    return np.stack([np.asarray(f(dates), dtype=np.float32) for f in funcs], axis=1)
