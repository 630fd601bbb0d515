"""Rolling-origin backtests: cutoff arithmetic, equivalence with train.py's test metrics, no
leakage by construction, shared cutoffs, refit cadence, resume, bad input, the leaderboard.

A synthetic hourly series (two noisy sinusoids of period 24, 800 rows, split 70/10/20: test
border at row 640, test split rows 640-799), DLinear with look-back 48 and horizon 12, trained
for one or two short real epochs on one thread: each training takes a second or two.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecast import api, evaluation
from forecast.data.splits import Split, split_rows, splits_before
from forecast.errors import ConfigError, DataError
from forecast.pipelines import backtest as bt
from forecast.pipelines import train as train_steps
from tests.helpers import REPO, sinusoid_frame

N, SEQ, H = 800, 48, 12
TEST_BORDER = 640   # 0.7 · 800 + 0.1 · 800
VAL_ROWS = 80


@pytest.fixture
def series(tmp_path, monkeypatch):
    """The series file, the working directory (outputs/ go there) and the common overrides."""
    monkeypatch.chdir(tmp_path)
    frame = sinusoid_frame(n=N, channels=2, period=24, noise=0.3)
    path = tmp_path / "syn.csv"
    frame.to_csv(path, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = ["data=csv", f"data.path={path}", f"data.seq_len={SEQ}", f"data.pred_len={H}", "num_threads=1",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    # common: logged to MLflow in tmp_path; local: no MLflow at all
    return {"path": path, "frame": frame, "uri": uri, "common": [*base, f"logger.tracking_uri={uri}"],
            "local": [*base, "logger=none"], "tmp": tmp_path}


def runs(uri: str, experiment: str = "syn", **tags) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs([exp.experiment_id], query)


def forecasts(table: pd.DataFrame, model: str, cutoff) -> np.ndarray:
    return table.loc[table["cutoff"] == cutoff, model].to_numpy()


# ------------------------------------------------------------------ cutoff arithmetic
DATES = pd.date_range("2024-01-01", periods=1000, freq="h")
TEST = Split("test", 752, 800, 950)  # a test split that ends before the data does (as ETT's 12/4/4 months)


@pytest.mark.parametrize("kwargs,expected", [
    (dict(), [800, 824, 848]),                                          # neither start nor end: start=test, step = H
    (dict(step=10), [800, 810, 820]),                                    # overlapping windows
    (dict(start=900), [900, 924, 948]),                                  # a row: windows may run to the end of the data
    (dict(start=str(DATES[900])), [900, 924, 948]),                      # a timestamp on a row
    (dict(start=str(DATES[900] - pd.Timedelta("30min"))), [900, 924, 948]),  # between rows: the next one
    (dict(end=1000), [928, 952, 976]),                                   # only end: counted back from it
    (dict(end="test"), [878, 902, 926]),                                 # the test split's end (row 950)
    (dict(end=str(DATES[959])), [888, 912, 936]),                        # a timestamp is the last forecast step
    (dict(start="test", end=900, step=20), [800, 820, 840]),             # both: forward from start, ending by end
])
def test_cutoffs_are_the_documented_rows(kwargs, expected):
    cutoffs = evaluation.backtest_cutoffs(DATES, 3, 24, test_split=TEST, history=SEQ, **kwargs)
    assert cutoffs == expected


def test_a_window_past_the_end_is_refused_with_the_number_that_fit():
    # start=test: the windows end by the test split's end, row 950: 6 windows of 24 end at 944
    assert evaluation.backtest_cutoffs(DATES, 6, 24, test_split=TEST)[-1] == 920
    with pytest.raises(DataError, match=r"7 windows of 24 rows, 24 apart, from .* run past the end of the test split "
                                        r"\(row 950.*: 6 fit\. Fix: set backtest.windows=6"):
        evaluation.backtest_cutoffs(DATES, 7, 24, test_split=TEST)
    with pytest.raises(DataError, match=r"run past backtest.end \(row 900.*: 4 fit"):
        evaluation.backtest_cutoffs(DATES, 5, 24, start=800, end=900, test_split=TEST)
    with pytest.raises(DataError, match="0 fit"):
        evaluation.backtest_cutoffs(DATES, 1, 24, start=990, test_split=TEST)


def test_a_cutoff_before_the_look_back_and_bad_settings_are_refused():
    with pytest.raises(DataError, match=r"row 10 .* has 10 rows before it, fewer than the 48 of the longest look-back"):
        evaluation.backtest_cutoffs(DATES, 2, 24, start=10, test_split=TEST, history=48)
    with pytest.raises(DataError, match="fewer than the 48"):
        evaluation.backtest_cutoffs(DATES, 40, 24, end=1000, test_split=TEST, history=48)
    for kwargs, key in ((dict(windows=0), "backtest.windows=0"), (dict(step=0), "backtest.step=0"),
                        (dict(start="yesterday-ish"), "backtest.start"), (dict(start=2000), "backtest.start=2000")):
        with pytest.raises(ConfigError, match=key):
            evaluation.backtest_cutoffs(DATES, **({"windows": 2, "horizon": 24} | kwargs), test_split=TEST)


def test_refit_groups():
    cutoffs = list(range(7))
    assert evaluation.refit_groups(cutoffs, False) == [cutoffs]
    assert evaluation.refit_groups(cutoffs, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert evaluation.refit_groups(cutoffs, True) == [[c] for c in cutoffs]
    for bad in (0, -2, 1.5, "often"):
        with pytest.raises(ConfigError, match="backtest.refit"):
            evaluation.refit_groups(cutoffs, bad)


def test_splits_before_a_cutoff():
    own = split_rows(N, "ratio", (0.7, 0.1, 0.2), SEQ, H)
    # at the data config's own test border they are its own train and validation splits
    before = splits_before(N, TEST_BORDER, VAL_ROWS, SEQ, H)
    assert before["train"] == own["train"] and before["val"] == own["val"]
    later = splits_before(N, 700, VAL_ROWS, SEQ, H)
    assert later["train"].end == 620 and (later["val"].border, later["val"].end) == (620, 700)
    assert later["test"].border == 700
    with pytest.raises(DataError, match="too few to train with early stopping"):
        splits_before(N, 130, VAL_ROWS, SEQ, H)


def test_scores_with_a_scale_per_window_are_those_of_each_window_apart():
    rng = np.random.default_rng(0)
    pred, actual = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2))
    std = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 0.5], [3.0, 0.5]])
    overall = evaluation.score(pred, actual, std, metrics=("mse", "mae", "mae_orig"))
    z = (pred - actual) / std[:, None, :]
    assert overall["mse"] == pytest.approx(np.mean(z**2), rel=1e-12)
    assert overall["mae"] == pytest.approx(np.mean(np.abs(z)), rel=1e-12)
    assert overall["mae_orig"] == pytest.approx(np.mean(np.abs(pred - actual)), rel=1e-12)


# ------------------------------------------------------------------ equivalence with train.py
def test_every_test_window_without_refit_gives_train_py_test_metrics(series):
    """Cutoffs at every test window's origin (step 1), refit=false, the same seed: the backtest
    trains on the same rows with the same scaler and forecasts the same windows, so its scores
    are train.py's test/* (same definitions, ForecastMetrics)."""
    overrides = [*series["local"], "trainer.max_epochs=2"]
    metrics = api.train(*overrides)
    windows = (N - TEST_BORDER) - H + 1
    table = api.backtest(*overrides, windows=windows, step=1, start="test")
    assert table["cutoff"].nunique() == windows
    assert table["cutoff"].min() == series["frame"]["date"][TEST_BORDER - 1]
    overall = table.attrs["metrics"].query("level == 'overall'").iloc[0]
    for key in ("mse", "mae", "mae_orig", "rmse_orig", "mase_orig", "smape_orig"):
        assert overall[key] == pytest.approx(metrics[f"test/{key}"], abs=1e-6), key
    # the same weights given as a checkpoint (train=false): the same forecasts, nothing trained
    (best,) = [p for p in series["tmp"].glob("outputs/*/*/checkpoints/*.ckpt") if p.name != "last.ckpt"]
    again = api.backtest(*overrides, "train=false", f"ckpt_path='{best}'", windows=windows, step=1, start="test")
    assert np.array_equal(again["dlinear"].to_numpy(), table["dlinear"].to_numpy())


# ------------------------------------------------------------------ leakage
def _perturbed(series, cutoff: int, how: str):
    frame = series["frame"].copy()
    channels = [c for c in frame.columns if c != "date"]
    if how == "scale":
        frame.loc[cutoff:, channels] *= 10.0
    else:
        frame.loc[cutoff:, channels] = np.random.default_rng(1).normal(size=(len(frame) - cutoff, len(channels)))
    path = series["tmp"] / f"perturbed-{how}.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("model,refit,how", [
    ("dlinear", "true", "scale"),     # a deep model retrained at each cutoff
    ("dlinear", "false", "noise"),    # one training before the first cutoff, forecasts rolled forward
    ("ets", "true", "noise"),         # a classical model: parameters estimated on the rows before each cutoff
])
def test_rows_at_or_after_a_cutoff_never_change_its_forecast(series, model, refit, how):
    overrides = [*series["local"], f"model={model}", "trainer.max_epochs=1"]
    if model == "ets":
        overrides += ["model.workers=1", "model.progress=false"]
    settings = dict(windows=3, refit=refit, start="test")
    clean = api.backtest(*overrides, **settings)
    cutoffs = evaluation.backtest_cutoffs(pd.DatetimeIndex(series["frame"]["date"]), 3, H, start="test",
                                          test_split=Split("test", TEST_BORDER - SEQ, TEST_BORDER, N))
    dirty = api.backtest(*[o for o in overrides if not o.startswith("data.path=")],
                         f"data.path={_perturbed(series, cutoffs[1], how)}", **settings)
    stamps = sorted(clean["cutoff"].unique())
    label = clean.columns[-1]
    for stamp in stamps[:2]:  # the cutoffs at or before the perturbed rows: bit-identical forecasts
        assert np.array_equal(forecasts(clean, label, stamp), forecasts(dirty, label, stamp)), stamp
    # and the perturbation is real: the last cutoff's inputs changed, and so did its forecast
    assert not np.allclose(forecasts(clean, label, stamps[2]), forecasts(dirty, label, stamps[2]))


def test_interpolated_gaps_are_refused_as_a_leak(series):
    with pytest.raises(ConfigError, match="data.fill=interpolate .* Fix: data.fill=ffill"):
        api.backtest(*series["local"], "data.fill=interpolate", windows=2)


# ------------------------------------------------------------------ several models, refits, resume
def test_two_models_share_cutoffs_one_row_per_series_ds_cutoff(series):
    table = api.backtest(*series["common"], "models=[dlinear,seasonalnaive]", "trainer.max_epochs=1", windows=4,
                         refit=2)
    bands = [f"{side}-{level}" for level in (80, 95) for side in ("lo", "hi")]  # the default intervals
    assert list(table.columns) == ["series", "ds", "cutoff", "y", "dlinear", *[f"dlinear-{b}" for b in bands],
                                   "seasonalnaive", *[f"seasonalnaive-{b}" for b in bands]]
    assert len(table) == 4 * H * 2 and not table.isna().any().any()
    assert not table.duplicated(["series", "ds", "cutoff"]).any()
    assert (table["ds"] > table["cutoff"]).all()
    dates = series["frame"]["date"]
    assert sorted(table["cutoff"].unique()) == [dates[TEST_BORDER - 1 + k * H] for k in range(4)]
    # y is the file's value at ds
    merged = table.merge(series["frame"].melt(id_vars="date", var_name="series", value_name="file"),
                         left_on=["series", "ds"], right_on=["series", "date"])
    assert np.array_equal(merged["y"].to_numpy(), merged["file"].to_numpy())
    # one backtest run per model, on the same cutoffs, under one comparison run
    backtests = runs(series["uri"], kind="backtest")
    assert sorted(r.data.tags["model"] for r in backtests) == ["dlinear", "seasonalnaive"]
    assert len({r.data.tags["cutoffs"] for r in backtests}) == 1
    (group,) = runs(series["uri"], kind="backtest-comparison")
    assert {r.data.tags["mlflow.parentRunId"] for r in backtests} == {group.info.run_id}
    assert group.data.metrics["dlinear/backtest/mse"] == pytest.approx(
        table.attrs["metrics"].query("model == 'dlinear' and level == 'overall'")["mse"].item())
    client = MlflowClient(series["uri"])
    assert {"backtest.parquet", "metrics.csv", "plots"} <= {a.path for a in client.list_artifacts(group.info.run_id)}
    assert {a.path for a in client.list_artifacts(group.info.run_id, "plots")} == {
        "plots/error_by_cutoff.png", "plots/error_by_step.png", "plots/forecasts.png"}
    logged = pd.read_parquet(client.download_artifacts(group.info.run_id, "backtest.parquet", str(series["tmp"])))
    pd.testing.assert_frame_equal(logged, table, check_like=False)
    # scores per cutoff and per step, z-scored with each refit's scaler: the same scale for both models
    metrics = table.attrs["metrics"]
    assert (metrics.groupby(["model", "level"]).size().to_dict() ==
            {(m, lvl): n for m in ("dlinear", "seasonalnaive") for lvl, n in (("cutoff", 4), ("overall", 1), ("step", H))})


def test_refit_every_three_of_seven_cutoffs_trains_three_times_on_rows_before_each(series):
    table = api.backtest(*series["common"], "trainer.max_epochs=1", windows=7, refit=3)
    (parent,) = runs(series["uri"], kind="backtest")
    assert parent.data.tags["backtest_refit"] == "3" and parent.data.tags["windows"] == "7"
    children = sorted(runs(series["uri"], kind="refit"), key=lambda r: int(r.data.tags["refit_index"]))
    assert [c.data.tags["mlflow.parentRunId"] for c in children] == [parent.info.run_id] * 3
    cutoffs = [TEST_BORDER + k * H for k in range(7)]
    assert [int(c.data.params["data.cutoff"]) for c in children] == [cutoffs[0], cutoffs[3], cutoffs[6]]
    client = MlflowClient(series["uri"])
    for child, cutoff in zip(children, (cutoffs[0], cutoffs[3], cutoffs[6])):
        assert "val/loss" in child.data.metrics and child.info.status == "FINISHED"  # trained, with early stopping's split
        lineage = client.download_artifacts(child.info.run_id, "data.json", str(series["tmp"] / child.info.run_id))
        data = json.loads(Path(lineage).read_text())
        assert data["val_rows"] == f"{cutoff - VAL_ROWS}-{cutoff - 1}"      # validation: the last rows before it
        assert data["train_rows"] == f"0-{cutoff - VAL_ROWS - 1}"
    assert table["cutoff"].nunique() == 7


def test_warm_start_starts_each_refit_from_the_previous_weights(series):
    api.backtest(*series["common"], "trainer.max_epochs=1", windows=3, refit=True, warm_start=True)
    children = sorted(runs(series["uri"], kind="refit"), key=lambda r: int(r.data.tags["refit_index"]))
    starts = [c.data.params["init_from"] for c in children]
    assert starts[0] == "None"
    client = MlflowClient(series["uri"])
    for child, start in zip(children, starts[1:]):
        assert start.endswith(f"refit-{child.data.tags['refit_index']}/network.pt")  # the previous refit's weights
        assert "network.pt" in {a.path for a in client.list_artifacts(child.info.run_id)}


def test_a_resumed_backtest_trains_only_the_refits_left_and_gives_the_same_table(series, monkeypatch):
    overrides = [*series["common"], "trainer.max_epochs=1"]
    fits = []
    real_fit = train_steps.fit

    def fit_then_die(cfg, *args, **kwargs):
        fits.append(int(cfg.data.cutoff))
        if len(fits) == 3:
            raise KeyboardInterrupt  # killed during the third refit's training
        return real_fit(cfg, *args, **kwargs)

    monkeypatch.setattr(train_steps, "fit", fit_then_die)
    with pytest.raises(KeyboardInterrupt):
        api.backtest(*overrides, windows=4, refit=True)
    (parent,) = runs(series["uri"], kind="backtest")
    assert parent.info.status == "FAILED"
    assert sorted(r.info.status for r in runs(series["uri"], kind="refit")) == ["FAILED", "FINISHED", "FINISHED"]

    fits.clear()
    monkeypatch.setattr(train_steps, "fit", lambda cfg, *a, **k: (fits.append(int(cfg.data.cutoff)), real_fit(cfg, *a, **k))[1])
    resumed = api.backtest(*overrides, "resume=true", windows=4, refit=True)
    assert fits == [TEST_BORDER + 2 * H, TEST_BORDER + 3 * H]  # only the two refits left
    assert resumed.attrs["refits"]["dlinear"] == {"trained": 2, "resumed": 2}
    (again,) = runs(series["uri"], kind="backtest")
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"

    fits.clear()
    fresh = api.backtest(*overrides, windows=4, refit=True)  # resume=false: a new run, every refit trained
    assert len(fits) == 4
    pd.testing.assert_frame_equal(resumed, fresh)


# ------------------------------------------------------------------ bad input: clear, nothing logged
@pytest.mark.parametrize("settings,error,match", [
    (dict(windows=0), ConfigError, r"backtest.windows=0 must be a positive integer"),
    (dict(step=0), ConfigError, r"backtest.step=0 must be a positive integer"),
    (dict(start=20), DataError, r"row 20 .* fewer than the 48 of the longest look-back"),
    (dict(start=130), DataError, r"130 rows before the cutoff .* too few to train with early stopping"),
    (dict(windows=20), DataError, r"run past the end of the data .*: 13 fit"),
    (dict(refit=0), ConfigError, r"backtest.refit=0 must be false, true or a positive integer"),
    (dict(models=["dlinear", "model=seasonalnaive data.pred_len=6"]), ConfigError,
     r"seasonalnaive forecasts with data.pred_len=6, the backtest's first model with 12"),
    (dict(refit=2, train=False, ckpt_path="x.ckpt"), ConfigError, r"train=false with backtest.refit=2"),
])
def test_bad_input_is_a_clear_error_and_nothing_is_logged(series, settings, error, match):
    with pytest.raises(error, match=match) as caught:
        api.backtest(*series["common"], "trainer.max_epochs=1", **settings)
    assert "Fix:" in str(caught.value)
    db = series["tmp"] / "mlflow.db"
    assert not db.exists() or not [r for e in MlflowClient(series["uri"]).search_experiments()
                                   for r in MlflowClient(series["uri"]).search_runs([e.experiment_id])]


def test_cli_refuses_bad_input_in_one_line_and_runs_a_classical_backtest(series):
    env_cmd = [sys.executable, str(REPO / "backtest.py"), *series["common"]]
    bad = subprocess.run([*env_cmd, "backtest.windows=0"], cwd=series["tmp"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: backtest.windows=0 must be a positive integer")
    good = subprocess.run([*env_cmd, "model=seasonalnaive", "backtest.windows=3", "hydra.run.dir=out"],
                          cwd=series["tmp"], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr[-2000:]
    table = pd.read_parquet(series["tmp"] / "out" / "backtest.parquet")
    bands = [f"seasonalnaive-{side}-{level}" for level in (80, 95) for side in ("lo", "hi")]  # the default intervals
    assert list(table.columns) == ["series", "ds", "cutoff", "y", "seasonalnaive", *bands] and len(table) == 3 * H * 2
    # seasonal naive repeats the last 24 values before each cutoff
    values = series["frame"].set_index("date")
    first = table[table["cutoff"] == table["cutoff"].min()]
    ot = first[first["series"] == "OT"]["seasonalnaive"].to_numpy()
    assert np.allclose(ot, values["OT"].to_numpy()[TEST_BORDER - 24 : TEST_BORDER - 24 + H])
    (parent,) = runs(series["uri"], kind="backtest")
    assert parent.data.tags["command"].startswith("python backtest.py")


# ------------------------------------------------------------------ leaderboard and debug runs
def test_leaderboard_ranks_backtests_on_the_same_cutoffs_and_never_debug_ones(series):
    from omegaconf import OmegaConf

    from forecast.leaderboard import compare

    api.backtest(*series["common"], "models=[dlinear,seasonalnaive]", "trainer.max_epochs=1", windows=3)
    api.backtest(*series["common"], "model=naive", "trainer=debug", windows=3)                  # a smoke run
    api.backtest(*series["common"], "model=drift", windows=2)                                  # other cutoffs
    assert runs(series["uri"], "syn-debug", kind="backtest")[0].data.tags["debug"] == "true"
    cfg = OmegaConf.create({"data": {"name": "syn", "features": "M"}, "pred_len": None, "paper_compat": False,
                            "published": None, "out_dir": str(series["tmp"] / "lb"), "log": False,
                            "tracking_uri": series["uri"], "source": "backtest", "experiment_name": "leaderboard"})
    table = compare(cfg)["table"]
    assert sorted(table["model"]) == ["dlinear", "seasonalnaive"]
    scores = {r.data.tags["model"]: r.data.metrics["backtest/mse"] for r in runs(series["uri"], kind="backtest")
              if r.data.tags["windows"] == "3"}
    assert table.sort_values("rank")["mse"].tolist() == sorted(scores.values())
