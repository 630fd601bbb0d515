"""Cross-family candidates in scheduled retraining: the best of several model families becomes
the challenger; failures and the time budget skip a candidate, never the retrain's safety.

A synthetic hourly series (``load`` and target ``OT``): first a pure daily pattern (period 24,
little noise), the regime where seasonal naive is all but exact; then a strong linear trend
with a faint daily ripple, where repeating the last day lags the trend by 24 steps and the
drift line (a linear trend family) follows it. Look-back 96, horizon 24, 4 evaluation windows.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from forecast.errors import ConfigError, DataError, ForecastError, exit_on_error
from forecast.pipelines import retrain as rt
from forecast.registry import retrain_history

from tests.helpers import compose

SEQ, H, WINDOWS = 96, 24, 4
TRAIN = ["data=csv", f"data.seq_len={SEQ}", f"data.pred_len={H}", "num_threads=1", "plot_windows=1"]
DLINEAR_1_EPOCH = "model=dlinear trainer.max_epochs=1"


def seasonal(start: int, n: int) -> pd.DataFrame:
    t = np.arange(start, start + n)
    noise = np.random.default_rng(start).standard_normal((n, 2)) * 0.05
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=start + n, freq="h")[start:],
                         "load": 5 + np.sin(2 * np.pi * t / 24) + noise[:, 0],
                         "OT": 10 + 3 * np.sin(2 * np.pi * t / 24 + 1.0) + noise[:, 1]})


def trending(start: int, n: int, level: tuple[float, float]) -> pd.DataFrame:
    """A steep line (0.5 and 1.0 a step) from ``level``, with a faint daily ripple."""
    frame = seasonal(start, n)
    steps = np.arange(1, n + 1)
    frame["load"] = level[0] + 0.5 * steps + 0.1 * (frame["load"] - 5)
    frame["OT"] = level[1] + 1.0 * steps + 0.1 * (frame["OT"] - 10)
    return frame


def config(tmp, source, name: str, *overrides: str):
    cfg = compose("retrain", overrides=[f"name={name}", f"source={source}", f"tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
                                        f"work_dir={tmp / 'work' / name}", f"eval_windows={WINDOWS}", *overrides])
    return OmegaConf.merge(cfg, OmegaConf.create({"train": TRAIN}))


def candidates(*entries: str) -> str:
    return "candidates=[" + ",".join(f"'{e}'" for e in entries) + "]"


def versions(client, name: str) -> list[int]:
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def candidates_csv(client, run_id: str, tmp) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run_id, "candidates.csv", str(tmp)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("candidates")
    source = tmp / "series.csv"
    seasonal(0, 720).to_csv(source, index=False)
    return tmp, source, MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")


def test_a_seasonal_regime_picks_seasonal_naive_and_a_trend_regime_switches_family(store, tmp_path):
    tmp, source, client = store
    chosen = candidates("model=drift", "seasonalnaive", DLINEAR_1_EPOCH)
    first = rt.retrain(config(tmp, source, "syn-cross", chosen))
    assert first["decision"] == "first" and first["chosen_candidate"] == "seasonalnaive", first["scores"]
    assert first["challenger_model"] == "seasonalnaive"
    by_label = {c.label: c for c in first["candidates"]}
    assert {c.status for c in by_label.values()} == {"ok"}
    # on a pure daily pattern, repeating the last day is far better than a line through the look-back
    assert by_label["seasonalnaive"].scores["mse"] < 0.1 * by_label["drift"].scores["mse"]
    # classical candidates run before the deep one; the ranking is logged with every score
    assert [c.label for c in first["candidates"]][-1] == "dlinear"
    run = client.get_run(first["retrain_run_id"])
    assert run.data.tags["candidates_ranking"].split(",")[0] == "seasonalnaive"
    assert run.data.metrics["candidate/drift/mse"] == pytest.approx(by_label["drift"].scores["mse"])
    assert "candidate/dlinear/seconds" in run.data.metrics
    table = candidates_csv(client, first["retrain_run_id"], tmp_path)
    assert table.set_index("candidate").loc["seasonalnaive", "rank"] == 1 and set(table["status"]) == {"ok"}
    figures = [a.path for a in client.list_artifacts(first["retrain_run_id"], "plots")]
    assert "plots/candidates_by_window.png" in figures
    version = client.get_model_version("syn-cross", first["challenger_version"])
    assert version.tags["model"] == "seasonalnaive" and version.tags["candidate"] == "seasonalnaive"

    grown = tmp_path / "series.csv"
    grown.write_bytes(source.read_bytes())
    last = pd.read_csv(source).iloc[-1]
    trending(720, 720, (float(last["load"]), float(last["OT"]))).to_csv(grown, mode="a", header=False, index=False)
    second = rt.retrain(config(tmp, grown, "syn-cross", chosen))
    assert second["decision"] == "promoted", second["scores"]
    assert second["challenger_model"] != "seasonalnaive"
    # the seasonal champion lags the trend by a day: the new family is far better on the same windows
    assert second["scores"]["challenger"]["mse"] < 0.2 * second["scores"]["champion"]["mse"]

    cfg = OmegaConf.create({"history": "syn-cross", "retrain_experiment": "retrain", "out_dir": str(tmp_path / "out"),
                            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"})
    history = retrain_history(cfg)["table"]
    assert history["champion_model"].tolist() == ["seasonalnaive", second["challenger_model"]]
    assert history["challenger_model"].tolist() == ["seasonalnaive", second["challenger_model"]]
    assert history["decision"].tolist() == ["first", "promoted"]
    markdown = (tmp_path / "out" / "retrain-history-syn-cross.md").read_text()
    assert "| seasonalnaive |" in markdown and f"| {second['challenger_model']} |" in markdown


def test_failing_candidates_are_logged_and_skipped_while_the_others_compete(store, tmp_path, capsys):
    tmp, source, client = store
    bad = ["model=seasonalnaive model.no_such_setting=1",   # refused when composed
           "model=dlinear module.optimizer.lr=-1.0",        # the optimiser raises inside the training
           "not_a_model"]                                     # names no model
    result = rt.retrain(config(tmp, source, "syn-fail", candidates(*bad, "model=drift")))
    assert result["decision"] == "first" and result["chosen_candidate"] == "drift"
    status = {c.label: (c.status, c.reason) for c in result["candidates"]}
    assert status["drift"][0] == "ok"
    assert status["seasonalnaive"][0] == "failed" and "no_such_setting" in status["seasonalnaive"][1]
    assert status["dlinear"][0] == "failed" and "learning rate" in status["dlinear"][1].lower()
    assert status["not_a_model"][0] == "failed" and "candidates:" in status["not_a_model"][1]
    run = client.get_run(result["retrain_run_id"])
    assert sorted(run.data.tags["candidates_failed"].split(",")) == ["dlinear", "not_a_model", "seasonalnaive"]
    assert run.data.tags["candidates_ranking"] == "drift"
    table = candidates_csv(client, result["retrain_run_id"], tmp_path).set_index("candidate")
    assert table.loc["dlinear", "status"] == "failed" and "learning rate" in table.loc["dlinear", "reason"].lower()
    # the failed training is a FAILED child run of the retrain; the registry holds only drift
    children = client.search_runs([run.info.experiment_id], f"tags.retrain_id = '{run.info.run_id}'")
    assert sorted((r.data.tags["candidate"], r.info.status) for r in children) == [("dlinear", "FAILED"),
                                                                                   ("drift", "FINISHED")]
    assert versions(client, "syn-fail") == [1]

    # every candidate failing: the retrain fails, nothing is registered, the champion stays
    grown = tmp_path / "series.csv"
    grown.write_bytes(source.read_bytes())
    seasonal(720, 48).to_csv(grown, mode="a", header=False, index=False)
    with pytest.raises(SystemExit) as stopped, exit_on_error():  # scripts/retrain.py's own exit: status 1
        rt.retrain(config(tmp, grown, "syn-fail", candidates(*bad)))
    assert stopped.value.code == 1 and "no candidate could be evaluated" in capsys.readouterr().err
    assert versions(client, "syn-fail") == [1]
    assert str(client.get_model_version_by_alias("syn-fail", "champion").version) == "1"
    failed = client.search_runs([run.info.experiment_id], "tags.retrain_of = 'syn-fail' and tags.kind = 'retrain'",
                                order_by=["attributes.start_time DESC"])[0]
    assert failed.info.status == "FAILED" and failed.data.tags["decision"] == "failed"
    assert "dlinear failed" in failed.data.tags["error"]


def test_a_candidate_that_cannot_finish_in_max_minutes_is_skipped_and_the_retrain_finishes(store, tmp_path):
    tmp, source, client = store
    slow = "model=dlinear trainer.max_epochs=1000 callbacks.early_stopping.patience=1000"
    budget = 0.3  # minutes: seasonal naive takes seconds; a thousand epochs would take minutes
    started = time.monotonic()
    result = rt.retrain(config(tmp, source, "syn-budget", candidates(slow, "seasonalnaive"), f"max_minutes={budget}"))
    took = time.monotonic() - started
    status = {c.label: c for c in result["candidates"]}
    assert [c.label for c in result["candidates"]] == ["seasonalnaive", "dlinear"]  # the cheap one first
    assert result["decision"] == "first" and result["chosen_candidate"] == "seasonalnaive"
    assert status["dlinear"].status == "skipped" and "max_minutes" in status["dlinear"].reason
    assert took < budget * 60 + 20, took  # stopped at the deadline, then only registering and logging
    run = client.get_run(result["retrain_run_id"])
    assert run.data.tags["candidates_skipped"] == "dlinear"

    # the next retrain knows how long the slow candidate ran, and skips it before it starts
    grown = tmp_path / "series.csv"
    grown.write_bytes(source.read_bytes())
    seasonal(720, 24).to_csv(grown, mode="a", header=False, index=False)
    again = rt.retrain(config(tmp, grown, "syn-budget", candidates(slow, "seasonalnaive"), "max_minutes=0.2"))
    skipped = {c.label: c for c in again["candidates"]}["dlinear"]
    assert skipped.status == "skipped" and "at the last retrain" in skipped.reason and np.isnan(skipped.seconds)
    children = client.search_runs([run.info.experiment_id], f"tags.retrain_id = '{again['retrain_run_id']}'")
    assert [r.data.tags["candidate"] for r in children] == ["seasonalnaive"]


def test_order_puts_classical_first_then_the_last_retrains_seconds():
    c = rt.Candidate
    ordered = rt.order_candidates([c("karma", "karma", estimate=700.0), c("dlinear", "dlinear", estimate=20.0),
                                   c("new", "new"), c("ets", "ets", deep=False, estimate=9.0),
                                   c("naive", "naive", deep=False, estimate=1.0)])
    assert [x.label for x in ordered] == ["naive", "ets", "dlinear", "karma", "new"]


def test_corrupt_data_with_candidates_fails_and_keeps_the_champion(store, tmp_path):
    tmp, source, client = store
    name = "syn-corrupt"
    rt.retrain(config(tmp, source, name, candidates("seasonalnaive")))
    bad = tmp_path / "series.csv"
    bad.write_bytes(source.read_bytes())
    seasonal(722, 3).to_csv(bad, mode="a", header=False, index=False)  # a missing hour
    with pytest.raises(DataError, match="not spaced by the inferred frequency"):
        rt.retrain(config(tmp, bad, name, candidates("seasonalnaive", "model=drift")))
    assert versions(client, name) == [1]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"


def test_bad_budget_and_metric_are_refused(store):
    tmp, source, _ = store
    with pytest.raises(ForecastError, match="max_minutes=0"):
        rt.retrain(config(tmp, source, "syn-x", "max_minutes=0"))
    with pytest.raises(ForecastError, match="metric=crps"):
        rt.retrain(config(tmp, source, "syn-x", "metric=crps"))


def test_interval_metrics_rank_candidates_and_a_model_without_intervals_ranks_last(store):
    tmp, source, client = store
    result = rt.retrain(config(tmp, source, "syn-wql", candidates("model=drift intervals.method=null", "seasonalnaive"),
                               "metric=wql"))
    by_label = {c.label: c for c in result["candidates"]}
    assert result["chosen_candidate"] == "seasonalnaive" and by_label["seasonalnaive"].rank == 1
    assert by_label["drift"].rank == 2 and np.isnan(by_label["drift"].scores["wql"])
    scores = by_label["seasonalnaive"].scores
    assert 0 < scores["wql"] < 0.1 and 0 < scores["msis_80"] < np.inf  # conformal bands around a near-exact forecast
    assert 0.6 <= scores["coverage_80"] <= 1.0 and scores["coverage_95"] >= scores["coverage_80"]
    run = client.get_run(result["retrain_run_id"])
    assert run.data.metrics["challenger/wql"] == pytest.approx(scores["wql"])


def test_a_stop_request_during_a_candidates_training_stops_the_retrain_not_just_the_candidate(store, monkeypatch):
    """SIGTERM's flag raised while the deep candidate trains ends the whole retrain (status
    128 + 15), not only that candidate: nothing registered, the champion kept."""
    import signal

    tmp, source, client = store
    name = "syn-stop"
    rt.retrain(config(tmp, source, name, candidates("seasonalnaive")))
    monkeypatch.setattr(rt, "_stop_signal", None)
    batches = []

    class SignalAtBatch3(rt.StopOnRequest):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            batches.append(batch_idx)
            if len(batches) == 3:
                rt.request_stop(signal.SIGTERM)
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    monkeypatch.setattr(rt, "StopOnRequest", SignalAtBatch3)
    with pytest.raises(SystemExit) as stopped:
        rt.retrain(config(tmp, source, name, "force=true", candidates("model=drift", DLINEAR_1_EPOCH)))
    assert stopped.value.code == 128 + signal.SIGTERM and len(batches) == 3
    assert versions(client, name) == [1] and str(client.get_model_version_by_alias(name, "champion").version) == "1"
    experiment = client.get_experiment_by_name("retrain").experiment_id
    last = client.search_runs([experiment], f"tags.retrain_of = '{name}' and tags.kind = 'retrain'",
                              order_by=["attributes.start_time DESC"])[0]
    assert last.info.status == "FAILED" and last.data.tags["error"] == "interrupted (SIGTERM)"


# ------------------------------------------------------------------ the candidates' ensemble
def ripple_on_a_slope(n: int) -> pd.DataFrame:
    """A gentle trend (0.09 a step on OT, half on load) under a daily wave (amplitude 3, 1.5):
    seasonal naive misses the day's rise (error +24·0.09 everywhere), drift and naive miss the
    wave (errors of either sign by hour); seasonal naive's and drift's squared errors are about
    equal (4.7 and 4.6 on OT, phase 3.25 rad at the first row), not correlated, so their mean
    has well under half of either (about 1.8). Naive, missing the trend too, is third."""
    t = np.arange(n)
    noise = np.random.default_rng(7).standard_normal((n, 2)) * 0.05
    wave = np.sin(2 * np.pi * t / 24 + 3.25)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"),
                         "load": 5 + 0.045 * t + 1.5 * wave + noise[:, 0], "OT": 10 + 0.09 * t + 3 * wave + noise[:, 1]})


def test_the_mean_ensemble_of_the_top_two_wins_and_serves_the_mean_of_its_members(tmp_path):
    from forecast.pipelines.predict import load_model

    source = tmp_path / "ripple.csv"
    ripple_on_a_slope(720).to_csv(source, index=False)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = rt.retrain(config(tmp_path, source, "syn-ens", candidates("seasonalnaive", "model=drift", "model=naive"),
                               "ensemble.method=mean", "ensemble.top_k=2"))
    by_label = {c.label: c for c in result["candidates"]}
    contender = by_label["ensemble_mean_top2"]
    assert contender.status == "ok" and contender.family == "ensemble"
    # the logged ranking is the order of the logged scores, and the ensemble is first
    run = client.get_run(result["retrain_run_id"])
    ranking = run.data.tags["candidates_ranking"].split(",")
    logged = [run.data.metrics[f"candidate/{label}/mse"] for label in ranking]
    assert logged == sorted(logged) and set(ranking) == set(by_label)
    assert ranking[0] == "ensemble_mean_top2" and result["chosen_candidate"] == "ensemble_mean_top2"
    assert logged[0] < 0.8 * min(logged[1:]), dict(zip(ranking, logged))
    table = candidates_csv(client, result["retrain_run_id"], tmp_path).set_index("candidate")
    assert table.loc["ensemble_mean_top2", "rank"] == 1 and table.loc["ensemble_mean_top2", "family"] == "ensemble"
    # members and weights chosen on the selection windows: naive (no trend, no wave) is left out
    chosen = client.download_artifacts(result["retrain_run_id"], "ensemble.json", str(tmp_path))
    spec = pd.read_json(chosen, typ="series")
    assert sorted(spec["members"]) == ["drift", "seasonalnaive"]
    assert spec["weights"]["naive"] == 0 and spec["weights"]["drift"] == pytest.approx(0.5)
    assert max(pd.Timestamp(w) for w in spec["windows"]) < pd.Timestamp(run.data.tags["last_timestamp"]) \
        - pd.Timedelta(hours=WINDOWS * H - 1)
    # the ensemble's child run is the registered version; ACI ran on its bands; it serves
    child = client.get_run(result["challenger_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == result["retrain_run_id"] and child.data.tags["model"] == "ensemble"
    assert child.data.tags["candidate"] == "ensemble_mean_top2" and "model_uri_unadapted" in child.data.tags
    version = client.get_model_version("syn-ens", result["challenger_version"])
    assert version.tags["model"] == "ensemble" and result["decision"] == "first"
    served = load_model("models:/syn-ens@champion", f"sqlite:///{tmp_path / 'mlflow.db'}")[1]
    members = [load_model(by_label[m].run.data.tags["model_uri"], f"sqlite:///{tmp_path / 'mlflow.db'}")[1]
               for m in ("seasonalnaive", "drift")]
    frame = pd.read_csv(source, parse_dates=["date"])
    dates, values = pd.DatetimeIndex(frame["date"])[-SEQ:], frame[["load", "OT"]].to_numpy()[-SEQ:]  # a request
    mean = sum(m.forecast(dates, values)["OT"].to_numpy() for m in members) / 2
    np.testing.assert_allclose(served.forecast(dates, values)["OT"].to_numpy(), mean, atol=1e-6)
    assert served.calibration is not None and served.calibration.alphas  # the adapted bands are served
    # its evaluation forecasts are the mean of the members' ones, scored like theirs
    np.testing.assert_allclose(contender.pred, (by_label["seasonalnaive"].pred + by_label["drift"].pred) / 2, atol=1e-6)


def test_the_ensembles_weights_come_from_windows_before_the_evaluation_windows(tmp_path):
    """Seasonal until the evaluation windows, a steep trend on them: before, seasonal naive is
    all but exact and drift poor; on them, the reverse. Weights fitted on the evaluation windows
    would favour drift; the retrain's, from the windows before, favour seasonal naive."""
    from forecast import ensemble

    source = tmp_path / "switch.csv"
    before = seasonal(0, 720 - WINDOWS * H)
    last = before.iloc[-1]
    pd.concat([before, trending(720 - WINDOWS * H, WINDOWS * H, (float(last["load"]), float(last["OT"])))]) \
        .to_csv(source, index=False)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = rt.retrain(config(tmp_path, source, "syn-leak", candidates("seasonalnaive", "model=drift"),
                               "ensemble.method=inverse_error"))
    by_label = {c.label: c for c in result["candidates"]}
    assert result["chosen_candidate"] == "drift"  # the trend decides on the evaluation windows
    spec = pd.read_json(client.download_artifacts(result["retrain_run_id"], "ensemble.json", str(tmp_path)), typ="series")
    assert spec["weights"]["seasonalnaive"] > 0.99, spec.to_dict()
    assert spec["mse"]["seasonalnaive"] < 0.01 * spec["mse"]["drift"]
    members = np.stack([by_label["seasonalnaive"].pred, by_label["drift"].pred])
    actual = pd.read_csv(source)[["load", "OT"]].to_numpy()[-WINDOWS * H:].reshape(WINDOWS, H, 2)
    leaked = ensemble.fit_weights("inverse_error", members, actual)
    assert leaked[1] > 0.75  # what the evaluation windows would have chosen: mostly drift
    weights = [spec["weights"]["seasonalnaive"], spec["weights"]["drift"]]
    contender = by_label["ensemble_inverse_error"]
    np.testing.assert_allclose(contender.pred, ensemble.combine(members, np.array(weights), "inverse_error"), atol=1e-6)
    assert contender.rank == 2 and contender.scores["mse"] > 3 * by_label["drift"].scores["mse"]


@pytest.mark.parametrize("overrides,match", [
    ([candidates("seasonalnaive", "model=drift"), "ensemble.method=vote"], r"ensemble.method='vote' is not one of"),
    ([candidates("seasonalnaive", "model=drift"), "ensemble.method=mean", "ensemble.top_k=3"],
     r"ensemble.top_k=3: .* of its 2 members .* from 1 to 2"),
    ([candidates("seasonalnaive"), "ensemble.method=mean"], r"this retrain's candidates=\[…\] has 1 .* candidates=\["),
    (["ensemble.method=median"], r"without candidates"),
    ([candidates("seasonalnaive", "model=drift"), "ensemble.top_k=1"], r"top_k=1 without ensemble.method"),
])
def test_bad_ensemble_settings_are_refused_before_anything_trains(store, overrides, match):
    tmp, source, client = store
    with pytest.raises(ConfigError, match=match):
        rt.retrain(config(tmp, source, "syn-ens-bad", *overrides))
    experiment = client.get_experiment_by_name("retrain")
    assert experiment is None or not client.search_runs([experiment.experiment_id], "tags.retrain_of = 'syn-ens-bad'")


def test_no_ensemble_with_a_single_finished_candidate(store):
    tmp, source, client = store
    result = rt.retrain(config(tmp, source, "syn-ens-one", candidates("seasonalnaive", "not_a_model"),
                               "ensemble.method=mean"))
    assert result["chosen_candidate"] == "seasonalnaive"
    assert [c.label for c in result["candidates"]] == ["seasonalnaive", "not_a_model"]  # no ensemble contender
    run = client.get_run(result["retrain_run_id"])
    assert run.data.tags["ensemble"] == "none: 1 candidate(s) finished" and run.data.params["ensemble"] == "ensemble_mean"
    assert [a.path for a in client.list_artifacts(result["retrain_run_id"]) if a.path == "ensemble.json"] == []
