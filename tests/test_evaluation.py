"""Rolling-origin evaluation: the cutoff arithmetic, forecasts from cutoffs and their scores."""

import numpy as np
import pandas as pd
import pytest

from forecast.data.sources import TimeSeriesTable
from forecast.errors import ConfigError, DataError
from forecast.evaluation import (
    actuals_at,
    channel_scale,
    forecasts_from,
    rolling_origins,
    score,
    score_per_cutoff,
    score_per_step,
)


@pytest.mark.parametrize("kwargs,expected", [
    (dict(n_rows=100, windows=3, horizon=10), [70, 80, 90]),                  # back to back, ending at the last row
    (dict(n_rows=100, windows=3, horizon=10, step=5), [80, 85, 90]),          # overlapping horizons
    (dict(n_rows=100, windows=2, horizon=10, step=25), [65, 90]),             # gaps between them
    (dict(n_rows=100, windows=1, horizon=7, end=50), [43]),                   # ending before the last row
    (dict(n_rows=100, windows=4, horizon=10, start=60), [60, 70, 80, 90]),    # exactly enough history
])
def test_cutoffs_by_hand(kwargs, expected):
    cutoffs = rolling_origins(**kwargs)
    assert cutoffs == expected
    end = kwargs.get("end", kwargs["n_rows"])
    assert cutoffs[-1] + kwargs["horizon"] == end  # the last window ends at `end`


def test_too_little_history_names_the_rows_needed_and_the_setting():
    with pytest.raises(DataError, match=r"has 100 rows; 4 evaluation windows of 10 rows after a look-back of 61 "
                                        r"need at least 101\. Fix: wait for more data, or lower eval_windows"):
        rolling_origins(100, 4, 10, start=61, setting="eval_windows")
    with pytest.raises(DataError, match="5 apart"):
        rolling_origins(30, 3, 10, step=5, start=20)


@pytest.mark.parametrize("kwargs", [dict(windows=0), dict(horizon=0), dict(step=0), dict(end=101), dict(windows=1.5)])
def test_bad_settings_are_config_errors_with_a_fix(kwargs):
    args = dict(n_rows=100, windows=2, horizon=10) | kwargs
    with pytest.raises(ConfigError, match="Fix:"):
        rolling_origins(**args)


def _table(n=60, channels=("a", "OT")):
    values = np.arange(n * len(channels), dtype=np.float64).reshape(n, len(channels))
    dates = pd.date_range("2024-01-01", periods=n, freq="h")
    return TimeSeriesTable(path=None, dates=dates, values=values, columns=list(channels), target="OT",
                           freq=dates.freq, sha256="")


class LastValueModel:
    """A served-model stand-in: repeats the last row it is given; records what it saw."""

    def __init__(self, horizon):
        self.horizon, self.seen = horizon, []
        self.spec = self

    def check_table(self, table, source):
        return table.dates, table.values

    def forecast(self, dates, values):
        self.seen.append(len(values))
        return pd.DataFrame(np.repeat(values[-1:], self.horizon, axis=0), columns=["a", "OT"])


def test_forecasts_see_only_the_rows_before_each_cutoff_and_actuals_follow_them():
    table, model = _table(), LastValueModel(4)
    cutoffs = rolling_origins(table.n_rows, 3, 4, start=10)
    pred = forecasts_from(model, table, cutoffs, ["OT"])
    actual = actuals_at(table, cutoffs, 4, ["OT"])
    assert model.seen == cutoffs == [48, 52, 56]
    assert pred.shape == actual.shape == (3, 4, 1)
    np.testing.assert_array_equal(pred[:, :, 0], np.repeat([[95.0], [103.0], [111.0]], 4, axis=1))  # row c-1 of OT
    np.testing.assert_array_equal(actual[0, :, 0], [97.0, 99.0, 101.0, 103.0])  # rows 48..51 of OT


def test_scores_by_hand_and_per_cutoff_and_step():
    pred = np.zeros((2, 3, 2))
    actual = np.ones((2, 3, 2)) * np.array([2.0, 4.0])
    actual[1] *= 2
    std = np.array([2.0, 4.0])
    overall = score(pred, actual, std)
    # z-scored errors: 1 in the first window, 2 in the second
    assert overall["mse"] == pytest.approx((1 + 4) / 2) and overall["mae"] == pytest.approx(1.5)
    assert overall["mae_orig"] == pytest.approx((2 + 4 + 4 + 8) / 4)
    assert overall["rmse_orig"] == pytest.approx(np.sqrt((4 + 16 + 16 + 64) / 4))
    per_cutoff = score_per_cutoff(pred, actual, std)
    assert [s["mse"] for s in per_cutoff] == pytest.approx([1.0, 4.0])
    per_step = score_per_step(pred, actual, std)
    assert len(per_step) == 3 and all(s["mse"] == pytest.approx(2.5) for s in per_step)


def test_channel_scale_uses_rows_before_the_end_and_never_zero():
    table = _table(10)
    table.values[:, 0] = 3.0  # constant channel
    std = channel_scale(table, 6, ["a", "OT"])
    assert std[0] == 1.0 and std[1] == pytest.approx(np.std(table.values[:6, 1]))
