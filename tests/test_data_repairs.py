"""Validation reports every problem of a file in one error, and the opt-in repairs
(``data.duplicates``, ``data.regularize``, ``data.fill``) are counted where a run is looked at:
the run output, the MLflow tags and ``data.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecast.data.sources import load_table, validate_frame
from forecast.data import problems
from forecast.errors import ConfigError, DataError
from forecast.pipelines.train import run
from tests.helpers import ETTH1, REPO, sinusoid_frame


def duplicate_and_gap(n: int = 400):
    """An hourly file with row 10 repeated (file line 13 holds the repeat) and the timestamps of
    rows 200 and 201 missing (a gap between lines 202 and 203 of the file)."""
    frame = sinusoid_frame(n=n, channels=2)
    with_repeat = pd.concat([frame.iloc[:11], frame.iloc[10:11].assign(ch0=99.0, OT=99.0), frame.iloc[11:]])
    return with_repeat.drop(index=[200, 201]).reset_index(drop=True), frame


def test_a_duplicate_and_a_gap_are_reported_together_with_their_lines(write_csv):
    broken, _ = duplicate_and_gap()
    path = write_csv(broken)
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 2 problems.")
    assert "duplicate timestamps at line 13 (2020-01-01 10:00:00)" in message
    assert ("not spaced by the inferred frequency 'h': 2 missing timestamps in 1 gap: 2 from 2020-01-09 08:00:00 "
            "to 2020-01-09 09:00:00 between line 202 (2020-01-09 07:00:00) and line 203 (2020-01-09 10:00:00)") in message
    assert message.count("Fix:") == 2 and "data.duplicates=first|last|mean" in message and "data.regularize=true" in message


def test_every_kind_of_problem_is_listed_once_with_its_first_lines(write_csv):
    text = ("date,a,OT\n"
            "2020-01-01 00:00,1,2\n"          # line 2
            "2020-01-01 01:00,2,3\n"
            "2020-01-01 01:00,2,3\n"          # line 4: repeated
            "2020-01-01 03:00,x,4\n"          # line 5: not numeric; 02:00 missing before it
            "2020-01-01 04:00,inf,\n"         # line 6: infinite, missing
            "2020-01-01 05:00,true,6\n"       # line 7: a boolean
            "not a date,1,1\n"                # line 8
            "2020-01-01 06:00,7,7\n")
    path = write_csv(text)
    with pytest.raises(DataError) as info:
        load_table(path)
    items = str(info.value).splitlines()[1:]
    assert str(info.value).splitlines()[0] == f"{path}: 6 problems."
    expected = [
        "column 'date' has 1 value(s) that are not dates (line 8: 'not a date')",
        "column 'a' is not numeric (line 5: 'x', line 7: 'true')",
        "column 'a' has infinite values at line 6",
        "duplicate timestamps at line 4 (2020-01-01 01:00:00)",
        "1 missing timestamp in 1 gap: 2020-01-01 02:00:00 between line 3 (2020-01-01 01:00:00) and line 5",
        "missing values in 'OT' at line 6 (2020-01-01 04:00:00)",
    ]
    for item, phrase in zip(items, expected):
        assert phrase in item and "Fix:" in item


def test_duplicate_policies_keep_the_first_the_last_or_the_mean(write_csv):
    text = "date,a,OT\n2020-01-01 00:00,1,10\n2020-01-01 01:00,2,20\n2020-01-01 01:00,4,\n2020-01-01 02:00,3,30\n"
    path = write_csv(text)
    first, last, mean = (load_table(path, duplicates=p, fill="ffill" if p == "last" else None)
                         for p in ("first", "last", "mean"))
    np.testing.assert_array_equal(first.values[1], [2, 20])
    np.testing.assert_array_equal(last.values[1], [4, 10])    # the last row's OT is empty: forward-filled from 10
    np.testing.assert_array_equal(mean.values[1], [3, 20])    # mean of 2 and 4; of 20 alone (the empty cell skipped)
    assert [t.repairs["duplicates_dropped"] for t in (first, last, mean)] == [1, 1, 1]
    assert first.n_rows == 3 and first.repairs["rows_inserted"] == 0 and last.repairs["values_filled"] == 1
    with pytest.raises(ConfigError, match="data.duplicates='any' is not a duplicates policy"):
        load_table(path, duplicates="any")


def test_regularize_inserts_the_missing_steps_and_fill_fills_them(write_csv):
    text = "date,a,OT\n2020-01-01 00:00,0,0\n2020-01-01 01:00,1,10\n2020-01-01 04:00,4,40\n2020-01-01 05:00,5,50\n"
    path = write_csv(text)
    with pytest.raises(DataError) as info:  # inserted, but nothing fills them: reported as missing values
        load_table(path, regularize=True)
    assert ("missing values in 'a' at the inserted row 2020-01-01 02:00:00, the inserted row 2020-01-01 03:00:00; "
            "'OT' at the inserted row 2020-01-01 02:00:00") in str(info.value)
    assert "the 2 row(s) inserted by data.regularize=true have no values yet" in str(info.value)
    table = load_table(path, regularize=True, fill="interpolate")
    assert list(table.dates.strftime("%H")) == ["00", "01", "02", "03", "04", "05"]
    np.testing.assert_allclose(table.values[:, 1], [0, 10, 20, 30, 40, 50])
    assert table.repairs == {"duplicates_dropped": 0, "rows_inserted": 2, "values_filled": 4}
    ffilled = load_table(path, regularize=True, fill="ffill")
    np.testing.assert_allclose(ffilled.values[:, 0], [0, 1, 1, 1, 4, 5])


def test_regularize_cannot_move_a_row_that_is_off_the_step(write_csv):
    """ETTh1 values on a 15-minute grid with one 100-minute step: 10:00 -> 11:40 is no whole
    number of steps, so inserting timestamps cannot make it regular; the row is named."""
    frame = pd.read_csv(ETTH1, nrows=300)
    frame["date"] = pd.date_range("2016-07-01 00:00", periods=len(frame), freq="15min").astype(str)
    stamps = pd.to_datetime(frame["date"])
    at = int(np.flatnonzero(stamps == pd.Timestamp("2016-07-01 10:00"))[0])
    frame.loc[at + 1, "date"] = "2016-07-01 11:40:00"
    frame = frame.drop(index=range(at + 2, at + 8)).reset_index(drop=True)   # next row: 12:00
    path = write_csv(frame, "ettm_shape.csv")
    for kwargs in ({}, {"regularize": True, "fill": "interpolate"}):
        with pytest.raises(DataError) as info:
            load_table(path, **kwargs)
        assert (f"timestamps are not spaced by the inferred frequency '15min': line {at + 3} (2016-07-01 11:40:00) "
                "fall between its steps") in str(info.value)
        # regularize cannot apply, so the gap around the row stays a problem of its own
        assert ("7 missing timestamps in 1 gap: 7 from 2016-07-01 10:15:00 to 2016-07-01 11:45:00 between "
                f"line {at + 2} (2016-07-01 10:00:00) and line {at + 4} (2016-07-01 12:00:00)") in str(info.value)


def test_long_format_duplicates_follow_the_same_policy(write_csv):
    long = pd.DataFrame({"unique_id": ["a", "a", "a", "b", "b", "b", "a"],
                         "ds": ["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 02:00"] * 2 + ["2020-01-01 01:00"],
                         "y": [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 6.0]})
    path = write_csv(long, "long.csv")
    with pytest.raises(DataError, match=r"repeated \(unique_id, ds\) pairs at line 8"):
        load_table(path, target="b")
    table = load_table(path, target="b", duplicates="mean")
    np.testing.assert_allclose(table.values[:, 0], [1, 4, 3])
    assert table.repairs["duplicates_dropped"] == 1


def test_frames_are_validated_by_the_same_function_with_request_wording():
    frame = pd.DataFrame({"date": ["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 01:00", "2020-01-01 02:00"],
                          "OT": [1.0, True, 2.0, float("inf")]}, dtype=object)
    with pytest.raises(DataError) as info:
        validate_frame(frame, problems.request("the request"))
    message = str(info.value)
    assert "row 1: True" in message and "infinite values at row 3" in message
    assert "duplicate timestamps at row 2 (2020-01-01 01:00:00). Fix: send one row per timestamp." in message
    assert "Rows are counted from 0 as in dataframe_split.data" in message and "data." not in message.replace("dataframe_split.data", "")


# ------------------------------------------------------------------ through a run
def test_a_run_that_fails_validation_lists_both_problems_and_logs_nothing(make_config, write_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_csv(duplicate_and_gap()[0])
    cfg = make_config("data=csv", f"data.path={path}", "trainer=debug")
    with pytest.raises(DataError) as info:
        run(cfg)
    assert "duplicate timestamps at line 13" in str(info.value) and "2 missing timestamps in 1 gap" in str(info.value)
    assert not make_config.db.exists() and not (tmp_path / "mlruns").exists()


def test_a_repaired_run_trains_and_counts_its_repairs_in_mlflow(make_config, write_csv, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    broken, clean = duplicate_and_gap()
    path = write_csv(broken)
    cfg = make_config("data=csv", f"data.path={path}", "trainer.max_epochs=1", "data.seq_len=24", "data.pred_len=12",
                      "data.duplicates=first", "data.regularize=true", "data.fill=interpolate", "log_model=false",
                      "trainer.enable_progress_bar=false")
    with caplog.at_level("WARNING", logger="forecast.data.datamodule"):
        metrics = run(cfg)
    assert np.isfinite(metrics["test/mse"])
    said = [r.getMessage() for r in caplog.records]
    assert f"{path}: data.duplicates=first dropped 1 row(s) with a repeated timestamp" in said
    assert f"{path}: data.regularize=true inserted 2 missing timestamp(s) at the step 'h'" in said
    assert f"{path}: data.fill=interpolate filled 4 missing value(s)" in said

    client = MlflowClient(make_config.tracking_uri)
    (r,) = client.search_runs([client.get_experiment_by_name("series").experiment_id])
    assert {k: r.data.tags[k] for k in ("data_duplicates_dropped", "data_rows_inserted", "data_values_filled")} == \
        {"data_duplicates_dropped": "1", "data_rows_inserted": "2", "data_values_filled": "4"}
    assert r.data.tags["data_rows"] == "400"
    lineage = json.loads(mlflow.artifacts.load_text(f"{r.info.artifact_uri}/data.json"))
    assert lineage["repairs"] == {"duplicates": "first", "regularize": True, "fill": "interpolate",
                                  "duplicates_dropped": 1, "rows_inserted": 2, "values_filled": 4}


def test_a_clean_run_says_so_in_its_tags(make_config, write_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_csv(sinusoid_frame(n=300, channels=2))
    run(make_config("data=csv", f"data.path={path}", "trainer.max_epochs=1", "data.seq_len=24", "data.pred_len=12",
                    "log_model=false", "trainer.enable_progress_bar=false"))
    client = MlflowClient(make_config.tracking_uri)
    (r,) = client.search_runs([client.get_experiment_by_name("series").experiment_id])
    assert [r.data.tags[f"data_{k}"] for k in ("duplicates_dropped", "rows_inserted", "values_filled")] == ["0", "0", "0"]


def test_train_py_repairs_etth1_rows_with_a_repeat_and_a_gap(tmp_path):
    """The bundled ETTh1 file's first 2,000 rows with 2016-07-21 19:00 repeated and the hours
    2016-08-12 07:00-08:00 missing: refused as it is; trained by ``python train.py`` with the
    repairs, which the run prints and tags."""
    frame = pd.read_csv(ETTH1, nrows=2000)
    broken = pd.concat([frame.iloc[:500], frame.iloc[499:500], frame.iloc[500:]]).drop(index=[1015, 1016])
    path = tmp_path / "etth1_broken.csv"
    broken.to_csv(path, index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    args = [sys.executable, str(REPO / "train.py"), "data=csv", f"data.path={path}", "trainer.max_epochs=1", "data.seq_len=48",
            "data.pred_len=24", "log_model=false", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'out'}"]
    refused = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "duplicate timestamps at line 502 (2016-07-21 19:00:00)" in refused.stderr
    assert ("2 missing timestamps in 1 gap: 2 from 2016-08-12 07:00:00 to 2016-08-12 08:00:00 between line 1,017 "
            "(2016-08-12 06:00:00) and line 1,018 (2016-08-12 09:00:00)") in refused.stderr
    assert not (tmp_path / "mlflow.db").exists()

    repaired = subprocess.run(args + ["data.duplicates=first", "data.regularize=true", "data.fill=interpolate"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    output = repaired.stdout + repaired.stderr
    assert "data.duplicates=first dropped 1 row(s) with a repeated timestamp" in output
    assert "data.regularize=true inserted 2 missing timestamp(s) at the step 'h'" in output
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (r,) = client.search_runs([client.get_experiment_by_name("etth1_broken").experiment_id])
    assert (r.data.tags["data_duplicates_dropped"], r.data.tags["data_rows_inserted"], r.data.tags["data_rows"]) == ("1", "2", "2000")
    # the inserted hours are the straight line between their neighbours
    table = load_table(path, duplicates="first", regularize=True, fill="interpolate")
    hours = table.dates.get_indexer(pd.to_datetime(["2016-08-12 06:00", "2016-08-12 07:00", "2016-08-12 09:00"]))
    ot = table.values[:, -1]
    assert ot[hours[1]] == pytest.approx(ot[hours[0]] + (ot[hours[2]] - ot[hours[0]]) / 3)


def test_a_model_expectation_checks_columns_step_length_and_scale_together():
    from forecast.data.sources import Expectation

    expect = Expectation(columns=["a", "b", "OT"], freq="h", min_rows=5, mean=np.array([0.0, 1e30, 0.0]),
                         std=np.array([1.0, 1e-10, 1.0]))
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=4, freq="h").astype(str),
                          "OT": [1.0, 2.0, 3.0, 4.0], "b": [1e30, 1e30, 1e30, 1e30], "x": 1.0})
    with pytest.raises(DataError) as info:
        validate_frame(frame, problems.request(), expect=expect)
    message = str(info.value)
    # 'b' is scaled by its own mean and std (1e30, 1e-10), though 'a' is missing: no overflow
    assert message.startswith("the request: 2 problems.") and "cannot compute" not in message
    assert "it lacks ['a'] and it has the extra column(s) ['x']" in message
    assert "has 4 rows, but the model forecasts from the last seq_len=5 rows" in message
    frame["b"] = 1e38
    assert "column 'b' has values the model cannot compute with at row 0" in str(
        pytest.raises(DataError, validate_frame, frame, problems.request(), expect=expect).value)
