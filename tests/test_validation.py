"""Every bad input fails early with an error that names the problem and the fix, and a run
that fails validation writes nothing to MLflow."""

import numpy as np
import pandas as pd
import pytest

from forecast.data.datamodule import ForecastDataModule
from forecast.data.sources import load_table
from forecast.errors import ConfigError, DataError
from forecast.pipelines.train import run
from tests.helpers import sinusoid_frame

HEADER = "date,a,OT\n"


def hourly(n=10, start="2020-01-01"):
    return [str(d) for d in pd.date_range(start, periods=n, freq="h")]


def rows(dates, values=None):
    values = values or [f"{i},{i * 2 + 1}" for i in range(len(dates))]
    return HEADER + "".join(f"{d},{v}\n" for d, v in zip(dates, values))


CASES = {
    "missing file": (None, r"file not found.*Fix: set data.path"),
    "empty file": ("", r"the file is empty"),
    "header only": (HEADER, r"header but no data rows"),
    "no date column": ("time,a,OT\n2020-01-01,1,2\n", r"no date column 'date'.*\['time', 'a', 'OT'\].*data.date_col"),
    "unparseable date": (rows(hourly(3)[:2] + ["not a date"]), r"'date' has 1 value\(s\) that are not dates \(line 4: 'not a date'\)"),
    "duplicate timestamps": (rows(hourly(4)[:3] + [hourly(4)[2]]), r"duplicate timestamps at line 5 \(2020-01-01 02:00:00\).*one row per timestamp"),
    "not increasing": (rows([hourly(4)[i] for i in (0, 1, 3, 2)]), r"not increasing at line 5 .*sort the file"),
    "gap in spacing": (rows(hourly(6)[:3] + hourly(6)[4:]), r"not spaced by the inferred frequency 'h': 1 missing timestamp in 1 gap: 2020-01-01 03:00:00 between line 4 \(2020-01-01 02:00:00\) and line 5 \(2020-01-01 04:00:00\)"),
    "missing values": (rows(hourly(5), ["1,2", "2,", "3,4", ",", "5,6"]), r"missing values in 'a' at line 5 .*; 'OT' at line 3 .*line 5 .*data.fill=ffill or data.fill=interpolate"),
    "non-numeric column": (rows(hourly(3), ["1,2", "x,3", "3,4"]), r"column 'a' is not numeric \(line 3: 'x'\)"),
    "target missing": (HEADER.replace("OT", "load") + "2020-01-01 00:00,1,2\n", r"target column 'OT' not found.*\['a', 'load'\].*data.target"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_files_raise_a_specific_error(case, write_csv, tmp_path):
    content, message = CASES[case]
    path = tmp_path / "absent.csv" if content is None else write_csv(content)
    with pytest.raises(DataError, match=message) as info:
        load_table(path)
    assert str(path) in str(info.value)  # the file is always named


def test_declared_frequency_is_checked(write_csv):
    path = write_csv(rows(hourly(5)))
    with pytest.raises(DataError, match=r"the rows are spaced by 'h', not by data.freq='15min'. Fix: set data.freq='h'"):
        load_table(path, freq="15min")
    with pytest.raises(ConfigError, match="not a pandas frequency alias"):
        load_table(path, freq="fortnightly-ish")


def test_fill_is_opt_in_and_does_what_it_says(write_csv):
    path = write_csv(rows(hourly(5), ["1,2", ",4", "3,", "4,8", "5,10"]))
    np.testing.assert_allclose(load_table(path, fill="ffill").values, [[1, 2], [1, 4], [3, 4], [4, 8], [5, 10]])
    np.testing.assert_allclose(load_table(path, fill="interpolate").values, [[1, 2], [2, 4], [3, 6], [4, 8], [5, 10]])
    leading = write_csv(rows(hourly(3), [",1", "2,2", "3,3"]), "leading.csv")
    with pytest.raises(DataError, match="start of the series cannot be forward-filled.*data.fill=interpolate"):
        load_table(leading, fill="ffill")
    with pytest.raises(ConfigError, match="data.fill='zero' is not a fill method"):
        load_table(path, fill="zero")


def test_split_too_short_for_the_window(write_csv):
    path = write_csv(sinusoid_frame(n=200))
    # 200 rows: train 140, val 20, test 40
    with pytest.raises(DataError, match=r"the val split has 20 rows, fewer than the pred_len=25 rows of one window"):
        ForecastDataModule(name="s", path=path, seq_len=30, pred_len=25).load()
    with pytest.raises(DataError, match=r"the train split has 140 rows, fewer than the seq_len \+ pred_len = 100 \+ 41 rows"):
        ForecastDataModule(name="s", path=path, seq_len=100, pred_len=41, split_sizes=[0.7, 0.05, 0.25]).load()


def test_constant_channel_is_an_error_unless_allowed(write_csv):
    frame = sinusoid_frame(n=300)
    frame["ch0"] = 5.0
    path = write_csv(frame)
    with pytest.raises(DataError, match=r"channel\(s\) \['ch0'\] are constant over the training rows.*data.allow_constant=true"):
        ForecastDataModule(name="s", path=path, seq_len=24, pred_len=12).load()
    dm = ForecastDataModule(name="s", path=path, seq_len=24, pred_len=12, allow_constant=True).load()
    assert dm.scaler.std[0] == 1.0 and np.isfinite(dm.values.numpy()).all()
    assert float(dm.values[:, 0].abs().max()) == 0.0  # centred, not divided by zero


@pytest.mark.parametrize("kwargs,message", [
    ({"features": "MM"}, "data.features='MM' is not a feature mode"),
    ({"seq_len": 0}, "data.seq_len=0 must be a positive integer"),
    ({"split_by": "weeks"}, "data.split_by='weeks' is unknown"),
    ({"split_sizes": [0.5, 0.1, 0.1]}, "must sum to 1"),
    ({"enc_in": 5}, r"data.enc_in=5 but .* gives 3"),
])
def test_bad_settings_raise_config_errors(kwargs, message, write_csv):
    path = write_csv(sinusoid_frame(n=300))
    args = {"name": "s", "path": path, "seq_len": 24, "pred_len": 12, **kwargs}
    with pytest.raises(ConfigError, match=message):
        ForecastDataModule(**args).load()


@pytest.mark.parametrize("case", CASES)
def test_a_run_that_fails_validation_writes_nothing_to_mlflow(case, make_config, write_csv, tmp_path):
    content = CASES[case][0]
    path = tmp_path / "absent.csv" if content is None else write_csv(content)
    cfg = make_config("data=csv", f"data.path={path}", "trainer=debug")
    with pytest.raises(DataError):
        run(cfg)
    assert not make_config.db.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
