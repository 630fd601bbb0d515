"""The data layer: splits, scaling, windows, feature modes, calendar features, file layouts."""

import numpy as np
import pandas as pd
import pytest
import torch

from forecast.data.datamodule import ForecastDataModule
from forecast.data.sources import load_table
from forecast.data.timefeatures import resolution, time_features
from tests.helpers import ETTH1, SHARED_DATA, sinusoid_frame


def etth1(**kwargs) -> ForecastDataModule:
    args = dict(name="etth1", path=ETTH1, freq="h", split_by="months", split_sizes=[12, 4, 4])
    args.update(kwargs)
    dm = ForecastDataModule(**args)
    dm.setup()
    return dm


def test_etth1_split_sizes_and_borders_match_the_literature():
    dm = etth1(seq_len=96, pred_len=96)
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 8449, "val": 2785, "test": 2785}
    _, target_dates = dm.window_dates("test", 0)
    assert target_dates[0] == pd.Timestamp("2017-10-24 00:00")
    _, last_dates = dm.window_dates("test", len(dm.datasets["test"]) - 1)
    assert last_dates[-1] == pd.Timestamp("2018-02-20 23:00")  # the last row of the 20 months used
    _, first_val = dm.window_dates("val", 0)
    assert first_val[0] == pd.Timestamp("2017-06-26 00:00")


def test_scaler_is_fitted_on_the_training_rows_only():
    dm = etth1()
    raw = pd.read_csv(ETTH1).drop(columns="date")
    train = raw.iloc[:8640]
    np.testing.assert_allclose(dm.scaler.mean, train.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(dm.scaler.std, train.std(ddof=0).to_numpy(), rtol=1e-12)
    # the statistics of all rows differ, so the check above could fail
    assert not np.allclose(dm.scaler.mean, raw.mean().to_numpy(), rtol=1e-3)
    # and the whole series is scaled with them
    np.testing.assert_allclose(dm.values[12000].numpy(), ((raw.iloc[12000] - train.mean()) / train.std(ddof=0)).to_numpy(), rtol=1e-5)


def test_windows_are_views_of_one_tensor_and_batches_equal_single_windows():
    dm = etth1(seq_len=48, pred_len=24)
    ds = dm.datasets["val"]
    item = ds[10]
    base = dm.values.untyped_storage().data_ptr()
    assert item["x"].untyped_storage().data_ptr() == base and item["y"].untyped_storage().data_ptr() == base
    start = dm.splits["val"].start + 10
    torch.testing.assert_close(item["x"], dm.values[start : start + 48])
    torch.testing.assert_close(item["y"], dm.values[start + 48 : start + 72])
    batch = ds.__getitems__([3, 10, 57])
    torch.testing.assert_close(batch["x"][1], item["x"])
    torch.testing.assert_close(batch["y_mark"][1], item["y_mark"])
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("features,enc_in,c_out", [("M", 7, 7), ("S", 1, 1), ("MS", 7, 1)])
def test_feature_modes(features, enc_in, c_out):
    dm = etth1(features=features, seq_len=96, pred_len=48)
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape == (32, 96, enc_in)
    assert batch["y"].shape == (32, 48, c_out)
    assert batch["x_mark"].shape == (32, 96, 4) and batch["y_mark"].shape == (32, 48, 4)
    # the target (OT) is always the last input channel and the output of S/MS
    ot = pd.read_csv(ETTH1)["OT"].to_numpy()
    start = dm.splits["val"].start
    expected = (ot[start + 96 : start + 144] - ot[:8640].mean()) / ot[:8640].std()
    np.testing.assert_allclose(batch["y"][0, :, -1].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_val_and_test_loaders_keep_every_window():
    dm = etth1(batch_size=32, eval_batch_size=1000)
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        assert sum(len(b["x"]) for b in loader) == len(dm.datasets[split]) == 2785
    compat = etth1(batch_size=32, drop_last_test=True)
    assert sum(len(b["x"]) for b in compat.test_dataloader()) == 2784  # 87 full batches of 32


def test_ratio_split_on_a_generic_file(write_csv):
    path = write_csv(sinusoid_frame(n=1000, freq="D"))
    dm = ForecastDataModule(name="s", path=path, seq_len=20, pred_len=10)
    dm.setup()
    train, val, test = (dm.splits[k] for k in ("train", "val", "test"))
    assert (train.end, val.border, val.end, test.border, test.end) == (700, 700, 800, 800, 1000)
    assert len(dm.datasets["test"]) == 200 - 10 + 1
    assert dm.table.freq.freqstr == "D"


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="the shared benchmark folder is not beside this checkout")
@pytest.mark.parametrize("name,rows,split_rows", [
    ("ettm1", 69680, (34560, 11520, 11520)),
    ("exchange", 7588, (5311, 760, 1517)),
    ("ili", 966, (676, 97, 193)),
])
def test_benchmark_files_split_as_published(make_config, name, rows, split_rows):
    from hydra.utils import instantiate

    dm = instantiate(make_config(f"data={name}").data).load()
    assert dm.table.n_rows == rows
    assert tuple(s.end - s.border for s in dm.splits.values()) == split_rows


def test_long_format_is_pivoted_to_wide(write_csv):
    wide = sinusoid_frame(n=300, channels=2)
    long = wide.melt(id_vars="date", var_name="unique_id", value_name="y").rename(columns={"date": "ds"})
    long = long.sample(frac=1.0, random_state=0)  # any row order
    table = load_table(write_csv(long, "long.csv"), target="OT")
    assert table.columns == ["ch0", "OT"]
    np.testing.assert_allclose(table.values, wide[["ch0", "OT"]].to_numpy())
    assert (table.dates == pd.DatetimeIndex(wide["date"])).all()


def test_parquet_and_csv_read_the_same(tmp_path):
    frame = sinusoid_frame(n=200)
    frame.to_parquet(tmp_path / "s.parquet")
    frame.to_csv(tmp_path / "s.csv", index=False)
    a, b = load_table(tmp_path / "s.parquet"), load_table(tmp_path / "s.csv")
    np.testing.assert_allclose(a.values, b.values)
    assert a.columns == b.columns and (a.dates == b.dates).all()


def test_target_moves_to_the_last_column(write_csv):
    frame = sinusoid_frame(n=100)[["date", "OT", "ch0", "ch1"]]
    table = load_table(write_csv(frame), target="OT")
    assert table.columns == ["ch0", "ch1", "OT"]


def test_calendar_features():
    dates = pd.DatetimeIndex(["2024-01-01 00:00", "2024-12-31 23:00"])  # a Monday; the 366th day
    feats = time_features(dates, "h")
    np.testing.assert_allclose(feats[0], [-0.5, -0.5, -0.5, -0.5])
    np.testing.assert_allclose(feats[1], [0.5, 1 / 6 - 0.5, 0.5, 365 / 365 - 0.5], atol=1e-6)
    assert time_features(pd.date_range("2024-01-01", periods=5, freq="15min"), "15min").shape == (5, 5)
    # second, minute (then hour, weekday, day of month, day of year) at one second before 01:00
    np.testing.assert_allclose(time_features(pd.DatetimeIndex(["2024-01-01 00:59:59"]), "s")[0],
                               [0.5, 0.5, -0.5, -0.5, -0.5, -0.5], atol=1e-6)
    # weekly: day of month, ISO week (2024-12-23 is in week 52); monthly: the month
    np.testing.assert_allclose(time_features(pd.DatetimeIndex(["2024-12-23"]), "W")[0], [22 / 30 - 0.5, 51 / 52 - 0.5], atol=1e-6)
    np.testing.assert_allclose(time_features(pd.DatetimeIndex(["2024-01-01", "2024-12-01"]), "MS")[:, 0], [-0.5, 0.5], atol=1e-6)
    assert [resolution(f) for f in ("s", "15min", "h", "D", "W-TUE", "MS", "YS")] == ["s", "t", "h", "d", "w", "m", "a"]
