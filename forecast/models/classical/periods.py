"""Seasonal periods of a sampling frequency: a day and a week of steps for sub-daily data,
the week for daily data, the year for weekly, monthly and quarterly data."""

from __future__ import annotations

import pandas as pd

from forecast.errors import ConfigError

_DAY, _WEEK = pd.Timedelta(days=1), pd.Timedelta(days=7)


def default_periods(freq) -> list[int]:
    """Periods in steps, shortest first: hourly ``[24, 168]``, 15-minute ``[96, 672]``,
    daily ``[7]``, business-daily ``[5]``, weekly ``[52]``, monthly ``[12]``, quarterly ``[4]``,
    yearly or anything else ``[]``."""
    if freq is None:
        return []
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError as error:
        raise ConfigError(f"'{freq}' is not a pandas frequency, so no seasonal period follows from it. "
                          "Fix: set model.periods, e.g. model.periods=[24].") from error
    offsets = pd.offsets
    if isinstance(offset, offsets.Week):
        return [52]
    if isinstance(offset, (offsets.MonthEnd, offsets.MonthBegin, offsets.BusinessMonthEnd, offsets.BusinessMonthBegin,
                           offsets.SemiMonthEnd, offsets.SemiMonthBegin)):
        return [24] if isinstance(offset, (offsets.SemiMonthEnd, offsets.SemiMonthBegin)) else [12]
    if isinstance(offset, (offsets.QuarterEnd, offsets.QuarterBegin, offsets.BQuarterEnd, offsets.BQuarterBegin)):
        return [4]
    if isinstance(offset, offsets.BusinessDay):
        return [5] if offset.n == 1 else []
    if isinstance(offset, offsets.Day):  # a calendar day (pandas 3 no longer makes it a Tick)
        return [7] if offset.n == 1 else []
    if isinstance(offset, offsets.Tick):
        step = pd.Timedelta(offset)
        if step == _DAY:
            return [7]
        if step < _DAY:
            return [int(span / step) for span in (_DAY, _WEEK) if span % step == pd.Timedelta(0)]
    return []
